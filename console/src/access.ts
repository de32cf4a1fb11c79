/**
 * What the signed-in principal may do, in one place: from the role the gateway reports for the
 * token (GET /admin/whoami), narrowed by any 403 the gateway answers. Controls for what a role
 * may not do are not offered. The gateway enforces every permission; this only hides buttons.
 */
import type { RoleName } from './api-types.js';

export interface Access {
  role: RoleName | null;
  /** Replay and discard dead letters, pause and resume destinations. */
  act: boolean;
  /** Reload channel files. */
  reload: boolean;
  /** See message content (the output a destination refused). */
  content: boolean;
}

const byRole: Record<RoleName, Omit<Access, 'role'>> = {
  viewer: { act: false, reload: false, content: false },
  operator: { act: true, reload: false, content: false },
  analyst: { act: true, reload: true, content: true },
  admin: { act: true, reload: true, content: true },
};

export function accessFor(role: RoleName | null): Access {
  return { role, ...(role ? byRole[role] : { act: false, reload: false, content: false }) };
}

/** After a 403 on an admin path: stop offering what that path does. */
export function narrowed(a: Access, path: string): Access {
  if (/\/(replay|discard|pause|resume)(\?|$)/.test(path)) return { ...a, act: false };
  if (path.startsWith('/channels/reload')) return { ...a, reload: false };
  if (path.includes('/rejected-output')) return { ...a, content: false };
  return a;
}
