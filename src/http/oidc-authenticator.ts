/**
 * Single sign-on: bearer JWT access tokens from an OpenID Connect provider. The issuer's discovery
 * document names the JWKS; `jose` fetches it, caches it, and refetches when a token carries a key
 * id it does not know (key rotation). Each token is checked for an allowed asymmetric algorithm,
 * the issuer, the audience (this API), expiry and not-before; its role comes from one claim
 * through a mapping (OIDC_ROLE_CLAIM, OIDC_ROLE_MAP). The principal is the subject at the issuer.
 */
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { z } from 'zod';
import { SwitchboardError } from '../core/errors.js';
import { roleNames, type Principal, type RoleName } from '../core/principal.js';
import { identityOf, type Authenticator, type Rejection } from './access-control.js';

/** Asymmetric only: an HMAC algorithm would let anyone holding a shared secret mint tokens. */
export const DEFAULT_OIDC_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;
const ASYMMETRIC = /^(RS|PS|ES)(256|384|512)$|^EdDSA$|^Ed25519$/;

export interface OidcOptions {
  issuer: string;
  audience: string;
  /** Claim holding the role(s): a string, an array of strings or a space-separated list; dots reach into objects (`realm_access.roles`). */
  roleClaim: string;
  /** Claim value → role; unset: values that are role names map to themselves. */
  roleMap?: ReadonlyMap<string, RoleName> | undefined;
  algorithms?: readonly string[];
  /** Seconds of clock skew allowed for exp and nbf (default 30). */
  clockToleranceSeconds?: number;
  /** No JWKS refetch for this long after one (jose's cooldown; default 30 s). */
  jwksCooldownMs?: number;
  fetch?: typeof fetch;
}

/** OIDC_ROLE_MAP `value=role,value=role` (e.g. `sb-viewers=viewer,sb-admins=admin`). */
export function parseRoleMap(text: string): Map<string, RoleName> {
  const map = new Map<string, RoleName>();
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.lastIndexOf('=');
    const value = item.slice(0, eq).trim();
    const role = item.slice(eq + 1).trim();
    if (eq <= 0 || value === '') throw new Error(`OIDC_ROLE_MAP: "${item}" is not value=role`);
    if (!(roleNames as readonly string[]).includes(role)) throw new Error(`OIDC_ROLE_MAP: "${item}": the role must be one of ${roleNames.join(', ')}`);
    map.set(value, role as RoleName);
  }
  return map;
}

const discoverySchema = z.object({ issuer: z.string(), jwks_uri: z.url() });

function claimValues(payload: JWTPayload, path: string): string[] {
  let v: unknown = payload;
  for (const part of path.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  if (typeof v === 'string') return v.split(' ').filter(Boolean);
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

/** The strongest role the claim grants (admin > analyst > operator > viewer), or null. */
export function roleFrom(payload: JWTPayload, o: Pick<OidcOptions, 'roleClaim' | 'roleMap'>): RoleName | null {
  const granted = claimValues(payload, o.roleClaim)
    .map((v) => (o.roleMap ? o.roleMap.get(v) : (roleNames as readonly string[]).includes(v) ? (v as RoleName) : undefined))
    .filter((r): r is RoleName => r !== undefined);
  let best: RoleName | null = null;
  for (const r of granted) if (best === null || roleNames.indexOf(r) > roleNames.indexOf(best)) best = r;
  return best;
}

/** Why jose refused a token, as an audit reason and the answer's message (never the token itself). */
function rejectionOf(err: unknown): Rejection {
  const claim = err instanceof joseErrors.JWTClaimValidationFailed ? err.claim : undefined;
  if (err instanceof joseErrors.JWTExpired) return { rejected: 'jwt_expired', message: 'the bearer JWT has expired' };
  if (claim === 'aud') return { rejected: 'jwt_audience', message: 'the bearer JWT is for another audience than OIDC_AUDIENCE' };
  if (claim === 'iss') return { rejected: 'jwt_issuer', message: 'the bearer JWT is from another issuer than OIDC_ISSUER' };
  if (claim === 'nbf') return { rejected: 'jwt_not_yet_valid', message: 'the bearer JWT is not valid yet (nbf)' };
  if (claim !== undefined) return { rejected: 'jwt_claims', message: `the bearer JWT's ${claim} claim is missing or invalid` };
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return { rejected: 'jwt_algorithm', message: 'the bearer JWT is signed with an algorithm that is not accepted' };
  if (err instanceof joseErrors.JWKSNoMatchingKey) return { rejected: 'jwt_unknown_key', message: 'the bearer JWT is signed with a key the issuer does not publish' };
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return { rejected: 'jwt_signature', message: 'the bearer JWT signature does not verify' };
  return { rejected: 'jwt_invalid', message: 'the bearer JWT is malformed' };
}

const looksLikeJwt = (s: string) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(s);

export function oidcAuthenticator(o: OidcOptions): Authenticator {
  const algorithms = [...(o.algorithms ?? DEFAULT_OIDC_ALGORITHMS)];
  const weak = algorithms.filter((a) => !ASYMMETRIC.test(a));
  if (weak.length > 0) throw new Error(`OIDC_ALGORITHMS: ${weak.join(', ')} not allowed (asymmetric signatures only: RS256, PS256, ES256, EdDSA, ...)`);
  const doFetch = o.fetch ?? fetch;
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  let discovering: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;

  // Discovery once (again after a failure), when the first JWT arrives: the gateway starts while
  // the provider is down, and SSO works once it is up.
  const keySet = async () => {
    if (jwks) return jwks;
    discovering ??= (async () => {
      const url = `${o.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
      try {
        const r = await doFetch(url, { signal: AbortSignal.timeout(5000), headers: { accept: 'application/json' } });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const doc = discoverySchema.parse(await r.json());
        if (doc.issuer !== o.issuer) throw new Error(`the document's issuer is ${doc.issuer}, not OIDC_ISSUER ${o.issuer}`);
        jwks = createRemoteJWKSet(new URL(doc.jwks_uri), { cooldownDuration: o.jwksCooldownMs ?? 30_000, timeoutDuration: 5000 });
        return jwks;
      } catch (err) {
        throw new SwitchboardError('OIDC_UNAVAILABLE', `OpenID discovery at ${url} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      } finally {
        discovering = undefined;
      }
    })();
    return discovering;
  };

  return {
    async authenticate(bearer) {
      if (!looksLikeJwt(bearer)) return null;
      const keys = await keySet();
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(bearer, keys, {
          issuer: o.issuer,
          audience: o.audience,
          algorithms,
          requiredClaims: ['exp', 'sub'],
          clockTolerance: o.clockToleranceSeconds ?? 30,
        }));
      } catch (err) {
        if (err instanceof joseErrors.JWKSTimeout || (err instanceof Error && /fetch failed|Expected 200 OK/.test(err.message))) {
          throw new SwitchboardError('OIDC_UNAVAILABLE', `the issuer's key set could not be fetched: ${err.message}`, { cause: err });
        }
        return rejectionOf(err);
      }
      const sub = String(payload.sub);
      const name = typeof payload['preferred_username'] === 'string' ? payload['preferred_username'] : sub;
      const principal: Principal = { kind: 'oidc', id: `${o.issuer}|${sub}`, display: name, role: roleFrom(payload, o) };
      return identityOf(principal);
    },
  };
}
