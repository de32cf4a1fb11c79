/**
 * What the signed-in principal may do, in one place: the permissions the gateway reports for the
 * token (GET /admin/whoami), narrowed by any 403 the gateway answers. Controls for what a role
 * may not do are not offered. The gateway enforces every permission; this only hides controls.
 */
import type { RoleName } from './api-types.js';

/** Console capability -> the gateway permission it needs (src/http/permissions.ts). */
const needs = {
  /** Replay dead letters. */
  replay: 'deliveries.replay',
  /** Discard dead letters. */
  discard: 'deliveries.discard',
  /** Pause and resume destinations. */
  pause: 'destinations.pause',
  /** Reload channel files. */
  reload: 'channels.reload',
  /** Message content: the dead-letter list and inspection, refused output, servers' answers. */
  content: 'content.read',
  /** Browse the audit log and verify its chain. */
  auditRead: 'audit.read',
  /** Export the audit log. */
  auditExport: 'audit.export',
} as const;
type Capability = keyof typeof needs;

export type Access = { role: RoleName | null } & Record<Capability, boolean>;

export function accessFor(role: RoleName | null, permissions: readonly string[]): Access {
  const held = new Set(permissions);
  const a = { role } as Access;
  for (const [cap, permission] of Object.entries(needs) as [Capability, string][]) a[cap] = held.has(permission);
  return a;
}

/** After a 403 on an admin path: stop offering what that path does. */
export function narrowed(a: Access, path: string): Access {
  const p = path.split('?')[0] ?? path;
  if (/\/replay$/.test(p)) return { ...a, replay: false };
  if (/\/discard$/.test(p)) return { ...a, discard: false };
  if (/\/(pause|resume)$/.test(p)) return { ...a, pause: false };
  if (p.startsWith('/channels/reload')) return { ...a, reload: false };
  if (p.startsWith('/audit/export')) return { ...a, auditExport: false };
  if (p.startsWith('/audit')) return { ...a, auditRead: false };
  if (p.includes('/rejected-output') || p.startsWith('/dead-letters') || p.startsWith('/deliveries/')) return { ...a, content: false };
  return a;
}
