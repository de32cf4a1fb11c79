/**
 * Authentication and authorisation at the HTTP edge. Each registered route gets a guard that
 * resolves the bearer credential to a principal (through the configured authenticators, in
 * order), checks the permission `routePermissions` declares for the route, and puts the
 * principal on `ctx.state.principal` for handlers, the audit trail and delivery actions.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { AuditRecorder } from '../core/audit.js';
import type { Principal } from '../core/principal.js';
import { rolePermissions, routeKey, routePermissions, type Permission, type RouteRequirement } from './permissions.js';
import { errorBody } from './webhook-route.js';
import type { AuthThrottle } from './auth-throttle.js';
import type { ApiTokenStore } from '../store/api-token-store.js';
import { SwitchboardError, type ErrorCode } from '../core/errors.js';

/** A principal and what it may do (its role's permissions, or a narrower grant such as MEDIA_TOKEN's). */
export interface Identity {
  principal: Principal;
  permissions: ReadonlySet<Permission>;
}

/** A credential this authenticator recognised as its kind and refused: why, in a PHI-free code and words. */
export interface Rejection {
  rejected: string;
  message: string;
}

export interface Authenticator {
  /** The identity a bearer credential stands for; a Rejection when it is of this kind but invalid; null when this authenticator does not know it. */
  authenticate(bearer: string): Promise<Identity | Rejection | null>;
}

export function identityOf(principal: Principal): Identity {
  return { principal, permissions: principal.role ? rolePermissions[principal.role] : new Set() };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Fixed secrets from the environment (ADMIN_TOKEN, MEDIA_TOKEN), compared in constant time. */
export function staticTokenAuthenticator(tokens: readonly { token: string; identity: Identity }[]): Authenticator {
  const known = tokens.filter((t) => t.token.length > 0).map((t) => ({ digest: digest(t.token), identity: t.identity }));
  return {
    async authenticate(bearer) {
      const given = digest(bearer);
      let found: Identity | null = null;
      for (const t of known) if (timingSafeEqual(t.digest, given)) found = t.identity;
      return found;
    },
  };
}

/** Named API tokens from the store (`switchboard tokens create`). */
export function apiTokenAuthenticator(tokens: Pick<ApiTokenStore, 'authenticate'>): Authenticator {
  return {
    async authenticate(bearer) {
      const found = await tokens.authenticate(bearer);
      if (found === null) return null;
      if ('principal' in found) return identityOf(found.principal);
      return { rejected: `token_${found.refused}`, message: `the API token "${found.name}" ${found.refused === 'revoked' ? 'was revoked' : 'has expired'}` };
    },
  };
}

/**
 * A credential carried by the request itself instead of a bearer header (a signed media link),
 * for the routes it names. It answers null when the request carries none (the bearer is checked
 * then), an identity, or a refusal (403 with the reason; the bearer is not consulted).
 */
export interface RequestAuthenticator {
  routes: readonly string[];
  authenticate(ctx: Context): Promise<Identity | { refused: { code: ErrorCode; reason: string; message: string } } | null>;
}

export interface AccessControl {
  authenticators: readonly Authenticator[];
  requestAuthenticators?: readonly RequestAuthenticator[];
  audit: AuditRecorder;
  /** Repeated bad credentials from one address: 429 with Retry-After (unset: no throttling). */
  throttle?: AuthThrottle;
}

function refuse(ctx: Context, status: 401 | 403 | 429, code: string, message: string, retryAfterMs = 0): void {
  if (status === 401) ctx.set('WWW-Authenticate', 'Bearer realm="switchboard"');
  if (status === 429) ctx.set('Retry-After', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = errorBody(code, message);
}

/** The principal the guard put on the request; only called behind a non-public route. */
export function requestPrincipal(ctx: Context): Principal {
  const p = (ctx.state as { principal?: Principal }).principal;
  if (!p) throw new Error(`no principal on ${ctx.method} ${ctx.path}: the route is not guarded`);
  return p;
}

export function guard(requirement: RouteRequirement, route: string, ac: AccessControl) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (requirement === 'public') return next();
    const waitMs = ac.throttle?.blockedFor(ctx.ip) ?? 0;
    if (waitMs > 0) return refuse(ctx, 429, 'AUTH_THROTTLED', `too many failed authentications from this address: try again in ${Math.ceil(waitMs / 1000)} s`, waitMs);
    const m = /^Bearer (.+)$/.exec(ctx.get('authorization'));
    const bearer = m?.[1];
    let identity: Identity | null = null;
    for (const a of ac.requestAuthenticators ?? []) {
      if (identity || !a.routes.includes(route)) continue;
      const r = await a.authenticate(ctx);
      if (r && 'refused' in r) {
        await ac.audit.record({ action: 'auth.failed', principal: null, outcome: 'failure', resources: [{ type: 'route', id: route }], sourceAddress: ctx.ip, detail: { reason: r.refused.reason } });
        return refuse(ctx, 403, r.refused.code, r.refused.message);
      }
      identity = r;
    }
    if (!identity && !bearer) return refuse(ctx, 401, 'UNAUTHENTICATED', 'send Authorization: Bearer <token>');
    let rejection: Rejection | null = null;
    try {
      for (const a of identity || !bearer ? [] : ac.authenticators) {
        const r = await a.authenticate(bearer ?? '');
        if (r && 'rejected' in r) rejection = r;
        else identity = r;
        if (r) break;
      }
    } catch (err) {
      // The credential could not be checked (e.g. the OpenID provider is down): not the caller's fault.
      if (err instanceof SwitchboardError && err.disposition === 'retryable') {
        ctx.status = 503;
        ctx.set('Retry-After', '5');
        ctx.type = 'application/json';
        ctx.body = errorBody(err.code, err.message);
        return;
      }
      throw err;
    }
    if (!identity) {
      await ac.audit.record({ action: 'auth.failed', principal: null, outcome: 'failure', resources: [{ type: 'route', id: route }], sourceAddress: ctx.ip, detail: { reason: rejection?.rejected ?? 'invalid_credentials' } });
      const decision = ac.throttle?.failure(ctx.ip);
      if (decision) {
        await ac.audit.record({
          action: 'auth.throttled',
          principal: null,
          outcome: 'failure',
          resources: [{ type: 'route', id: route }],
          sourceAddress: ctx.ip,
          detail: { failures: decision.failures, retry_after_s: Math.ceil(decision.retryAfterMs / 1000), lockout: decision.lockoutNumber },
        });
        return refuse(ctx, 429, 'AUTH_THROTTLED', `too many failed authentications from this address: try again in ${Math.ceil(decision.retryAfterMs / 1000)} s`, decision.retryAfterMs);
      }
      return refuse(ctx, 401, 'UNAUTHENTICATED', rejection?.message ?? 'the bearer token is not valid, has expired or was revoked');
    }
    ac.throttle?.success(ctx.ip);
    if (!identity.permissions.has(requirement)) {
      await ac.audit.record({ action: 'auth.failed', principal: identity.principal, outcome: 'failure', resources: [{ type: 'route', id: route }], sourceAddress: ctx.ip, detail: { reason: 'forbidden', permission: requirement } });
      return refuse(ctx, 403, 'FORBIDDEN', `${identity.principal.display} (role ${identity.principal.role ?? 'none'}) lacks the permission ${requirement}`);
    }
    (ctx.state as { principal?: Principal }).principal = identity.principal;
    return next();
  };
}

/** Every route of these routers as `METHOD path` (HEAD, which Koa derives from GET, left out). */
export function registeredRoutes(routers: readonly Router[]): { key: string; method: string; path: string }[] {
  const out: { key: string; method: string; path: string }[] = [];
  for (const r of routers)
    for (const layer of r.stack)
      for (const method of layer.methods) if (method !== 'HEAD') out.push({ key: routeKey(method, String(layer.path)), method, path: String(layer.path) });
  return out;
}

/**
 * Puts a guard in front of every route's handlers. Throws when a route has no declared
 * permission, so the gateway does not start (and the route-enumeration test fails).
 */
export function guardRouters(routers: readonly Router[], ac: AccessControl): void {
  const undeclared = registeredRoutes(routers).filter((r) => routePermissions[r.key] === undefined);
  if (undeclared.length > 0) throw new Error(`routes without a declared permission in src/http/permissions.ts: ${undeclared.map((r) => r.key).join(', ')}`);
  for (const r of routers)
    for (const layer of r.stack) {
      const method = layer.methods.find((x) => x !== 'HEAD');
      if (!method) continue;
      const key = routeKey(method, String(layer.path));
      layer.stack.unshift(guard(routePermissions[key]!, key, ac));
    }
}
