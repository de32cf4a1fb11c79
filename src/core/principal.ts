/**
 * Who is acting. Every admin request, audit entry and delivery action names a principal: a named
 * API token, an OpenID Connect subject, the bootstrap ADMIN_TOKEN, a signed media link, or the
 * system itself (sweeper, retention). Never just "admin".
 */

export const roleNames = ['viewer', 'operator', 'analyst', 'admin'] as const;
export type RoleName = (typeof roleNames)[number];

export type PrincipalKind = 'bootstrap' | 'token' | 'oidc' | 'media_link' | 'system';

export interface Principal {
  kind: PrincipalKind;
  /** Stable identifier: the token name, the OIDC `iss|sub`, `ADMIN_TOKEN`, or a system component. */
  id: string;
  /** What people read in the audit trail: the token name, the OIDC subject (or preferred name). */
  display: string;
  role: RoleName | null;
}

/** The name recorded for a principal in audit entries and delivery actions: `kind:id`. */
export function principalLabel(p: Principal): string {
  return `${p.kind}:${p.id}`;
}

export function systemPrincipal(component: string): Principal {
  return { kind: 'system', id: component, display: component, role: null };
}
