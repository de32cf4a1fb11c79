/**
 * The one permission table: what each role may do, and the permission every HTTP route needs.
 * A route missing from `routePermissions` is refused at start-up (see `guardRouters`), so a new
 * route cannot ship without a declared permission.
 */
import type { RoleName } from '../core/principal.js';

export const permissions = [
  /** States, counts, codes, configuration without message content. */
  'status.read',
  /** Message content, mapping output, server answers that may echo content (every view audited). */
  'content.read',
  'deliveries.replay',
  'deliveries.discard',
  'destinations.pause',
  'channels.reload',
  /** GET /media/:key (also granted to MEDIA_TOKEN alone). */
  'media.fetch',
  'tokens.manage',
  'keys.manage',
  'audit.export',
  /** Browse the audit trail and check its chain (each view is itself audited). */
  'audit.read',
] as const;
export type Permission = (typeof permissions)[number];

/** `public`: no credentials (health probes, metrics, published keys); webhooks check their own signatures. */
export type RouteRequirement = Permission | 'public';

const viewer: readonly Permission[] = ['status.read'];
const operator: readonly Permission[] = [...viewer, 'deliveries.replay', 'deliveries.discard', 'destinations.pause'];
const analyst: readonly Permission[] = [...operator, 'channels.reload', 'content.read', 'media.fetch'];
const admin: readonly Permission[] = [...analyst, 'tokens.manage', 'keys.manage', 'audit.export', 'audit.read'];

export const rolePermissions: Readonly<Record<RoleName, ReadonlySet<Permission>>> = {
  viewer: new Set(viewer),
  operator: new Set(operator),
  analyst: new Set(analyst),
  admin: new Set(admin),
};

/** `METHOD path` as registered with the router (path parameters as `:name`). */
export const routePermissions: Readonly<Record<string, RouteRequirement>> = {
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /metrics': 'public',
  'GET /.well-known/jwks.json': 'public',
  'GET /admin/whoami': 'status.read',
  'GET /admin/stats': 'status.read',
  'GET /admin/channels': 'status.read',
  'GET /admin/queues': 'status.read',
  'GET /admin/destinations': 'status.read',
  'GET /admin/dead-letters/count': 'status.read',
  'GET /admin/dead-letters': 'content.read',
  'GET /admin/deliveries/:id': 'content.read',
  'GET /admin/deliveries/:id/rejected-output': 'content.read',
  'GET /admin/messages': 'content.read',
  'GET /admin/messages/search': 'status.read',
  'POST /admin/messages/search': 'status.read',
  'GET /admin/messages/:id/trace': 'status.read',
  'GET /admin/messages/:id/content': 'content.read',
  'GET /admin/messages/:id/conversation': 'status.read',
  'POST /admin/dead-letters/:id/replay': 'deliveries.replay',
  'POST /admin/dead-letters/replay': 'deliveries.replay',
  'POST /admin/dead-letters/:id/discard': 'deliveries.discard',
  'POST /admin/destinations/:channel/:destination/pause': 'destinations.pause',
  'POST /admin/destinations/:channel/:destination/resume': 'destinations.pause',
  'POST /admin/channels/reload': 'channels.reload',
  'GET /media/:key': 'media.fetch',
  'GET /admin/tokens': 'tokens.manage',
  'POST /admin/tokens': 'tokens.manage',
  'POST /admin/tokens/:name/revoke': 'tokens.manage',
  'GET /admin/audit': 'audit.read',
  'GET /admin/audit/verify': 'audit.read',
  'GET /admin/audit/export': 'audit.export',
};

export function routeKey(method: string, path: string): string {
  return `${method.toUpperCase()} ${path}`;
}

/** The README's permission table, one Markdown row per permission (a test keeps the README in step). */
export function permissionTableRows(): string[] {
  const roles = Object.keys(rolePermissions) as RoleName[];
  return permissions.map((p) => {
    const routes = Object.entries(routePermissions)
      .filter(([, need]) => need === p)
      .map(([route]) => `\`${route}\``);
    return `| \`${p}\` | ${roles.map((r) => (rolePermissions[r].has(p) ? 'yes' : '')).join(' | ')} | ${routes.join(', ')} |`;
  });
}
