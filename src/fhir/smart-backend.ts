/**
 * SMART Backend Services (SMART App Launch 2, "client-confidential-asymmetric"): a system client
 * authenticates to the EHR's authorization server with a JWT it signs with its own private key,
 * and gets a short-lived access token by the client_credentials grant.
 *
 * - The token endpoint comes from `<fhir base>/.well-known/smart-configuration` or is given.
 * - The client assertion: iss = sub = client id, aud = token endpoint, a fresh jti, exp in five
 *   minutes, header kid + alg (RS384 or ES384, the two the specification requires servers to
 *   accept).
 * - The access token is cached until shortly before it expires and shared by concurrent callers
 *   (one request in flight); `invalidate()` drops it after a 401 so the next call fetches anew.
 * - Several keys: the first signs, all are published (`publicJwks`), so the EHR can be given the
 *   new key before it is used, and the old one is withdrawn later.
 *
 * Assertions, tokens and keys are never put in errors or logs.
 */
import { createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { z } from 'zod';
import { SwitchboardError, parseRetryAfter } from '../core/errors.js';

export type SmartSigningAlgorithm = 'RS384' | 'ES384';

export interface SmartClientKey {
  kid: string;
  alg: SmartSigningAlgorithm;
  /** PEM (PKCS#8 or PKCS#1/SEC1) private key. */
  privateKeyPem: string;
}

export interface SmartBackendOptions {
  clientId: string;
  /** The FHIR base URL: discovery reads `<base>/.well-known/smart-configuration`. */
  fhirBaseUrl: string;
  /** Explicit token endpoint; when given, no discovery. */
  tokenUrl?: string;
  /** Space-separated system scopes, e.g. `system/Communication.c system/Patient.rs`. */
  scope: string;
  /** Newest first: the first key signs, every key is published. */
  keys: readonly SmartClientKey[];
  /** Refresh this long before the token's expiry (default 60 s). */
  refreshMarginMs?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

/** A public key as published at /.well-known/jwks.json. */
export interface PublicJwk {
  kty: string;
  kid: string;
  alg: SmartSigningAlgorithm;
  use: 'sig';
  key_ops: ['verify'];
  [member: string]: unknown;
}

export interface SmartBackendClient {
  /** A valid access token (cached, or fetched now). */
  accessToken(signal: AbortSignal): Promise<string>;
  /** Forgets `token` (after the FHIR server answered 401 to it); a newer token is kept. */
  invalidate(token: string): void;
  publicJwks(): PublicJwk[];
  /** Token requests made so far (for health output and tests). */
  readonly tokenRequests: number;
}

const smartConfigurationSchema = z.looseObject({
  token_endpoint: z.url(),
  token_endpoint_auth_methods_supported: z.array(z.string()).optional(),
  token_endpoint_auth_signing_alg_values_supported: z.array(z.string()).optional(),
});

const tokenResponseSchema = z.looseObject({
  access_token: z.string().min(1),
  token_type: z.string().refine((t) => t.toLowerCase() === 'bearer', 'token_type must be Bearer'),
  expires_in: z.number().positive().optional(),
  scope: z.string().optional(),
});

const oauthErrorSchema = z.looseObject({ error: z.string(), error_description: z.string().optional() });

/** OAuth errors that another try will not fix (RFC 6749 §5.2). */
const PERMANENT_OAUTH_ERRORS: ReadonlySet<string> = new Set(['invalid_client', 'unauthorized_client', 'invalid_scope', 'invalid_grant', 'unsupported_grant_type', 'invalid_request']);

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ASSERTION_LIFETIME_S = 300;

interface LoadedKey {
  kid: string;
  alg: SmartSigningAlgorithm;
  privateKey: KeyObject;
  publicJwk: PublicJwk;
}

function loadKey(key: SmartClientKey): LoadedKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key.privateKeyPem);
  } catch {
    throw new SwitchboardError('CONFIG_INVALID', `SMART key "${key.kid}": the private key is not a PEM private key`);
  }
  const type = privateKey.asymmetricKeyType;
  if (key.alg === 'RS384' && type !== 'rsa') throw new SwitchboardError('CONFIG_INVALID', `SMART key "${key.kid}": RS384 needs an RSA key, this one is ${type}`);
  if (key.alg === 'ES384') {
    const curve = privateKey.asymmetricKeyDetails?.namedCurve;
    if (type !== 'ec' || (curve !== 'secp384r1' && curve !== 'P-384')) throw new SwitchboardError('CONFIG_INVALID', `SMART key "${key.kid}": ES384 needs an EC P-384 key`);
  }
  if (type === 'rsa' && (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw new SwitchboardError('CONFIG_INVALID', `SMART key "${key.kid}": an RSA key needs at least 2048 bits`);
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' }) as Record<string, unknown>;
  return { kid: key.kid, alg: key.alg, privateKey, publicJwk: { ...jwk, kty: String(jwk['kty']), kid: key.kid, alg: key.alg, use: 'sig', key_ops: ['verify'] } };
}

function tokenError(code: 'SMART_TOKEN_UNAVAILABLE' | 'SMART_TOKEN_REFUSED', message: string, details: Record<string, unknown>, retryAfterMs?: number, cause?: unknown): SwitchboardError {
  return new SwitchboardError(code, message, { details, ...(retryAfterMs !== undefined && { retryAfterMs }), ...(cause !== undefined && { cause }) });
}

export function createSmartBackendClient(options: SmartBackendOptions): SmartBackendClient {
  if (options.keys.length === 0) throw new SwitchboardError('CONFIG_INVALID', 'SMART backend services need at least one key');
  const keys = options.keys.map(loadKey);
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const margin = options.refreshMarginMs ?? 60_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let tokenUrl: string | undefined = options.tokenUrl;
  let cached: { token: string; until: number } | undefined;
  let inFlight: Promise<string> | undefined;
  let requests = 0;

  const withTimeout = (signal: AbortSignal) => AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);

  async function call(url: string, init: RequestInit, what: string): Promise<Response> {
    try {
      return await doFetch(url, init);
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      throw tokenError('SMART_TOKEN_UNAVAILABLE', `SMART ${what} at ${url} could not be reached${timedOut ? ' in time' : ''}`, { url, stage: what }, undefined, err);
    }
  }

  async function discover(signal: AbortSignal): Promise<string> {
    if (tokenUrl !== undefined) return tokenUrl;
    const url = `${options.fhirBaseUrl.replace(/\/$/, '')}/.well-known/smart-configuration`;
    const res = await call(url, { headers: { accept: 'application/json' }, signal: withTimeout(signal) }, 'discovery');
    if (!res.ok) {
      const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
      throw tokenError(retryable ? 'SMART_TOKEN_UNAVAILABLE' : 'SMART_TOKEN_REFUSED', `SMART discovery at ${url} answered ${res.status}; set auth.token_url if the server has no smart-configuration`, { url, status: res.status, stage: 'discovery' }, parseRetryAfter(res.headers.get('retry-after')));
    }
    const parsed = smartConfigurationSchema.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success) throw tokenError('SMART_TOKEN_REFUSED', `SMART discovery at ${url} did not return a smart-configuration with a token_endpoint`, { url, stage: 'discovery' });
    const methods = parsed.data.token_endpoint_auth_methods_supported;
    if (methods !== undefined && !methods.includes('private_key_jwt')) {
      throw tokenError('SMART_TOKEN_REFUSED', `the authorization server does not accept private_key_jwt (it offers ${methods.join(', ')})`, { url, stage: 'discovery' });
    }
    tokenUrl = parsed.data.token_endpoint;
    return tokenUrl;
  }

  async function assertion(audience: string): Promise<string> {
    const key = keys[0]!;
    const issuedAt = Math.floor(now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(options.clientId)
      .setSubject(options.clientId)
      .setAudience(audience)
      .setJti(randomUUID())
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + ASSERTION_LIFETIME_S)
      .sign(key.privateKey);
  }

  async function fetchToken(signal: AbortSignal): Promise<string> {
    const url = await discover(signal);
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      scope: options.scope,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(url),
    });
    requests++;
    const res = await call(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body, signal: withTimeout(signal) }, 'token request');
    const json: unknown = await res.json().catch(() => undefined);
    if (!res.ok) {
      const oauth = oauthErrorSchema.safeParse(json);
      const error = oauth.success ? oauth.data.error : undefined;
      const retryable = error === undefined ? res.status === 408 || res.status === 429 || res.status >= 500 : !PERMANENT_OAUTH_ERRORS.has(error);
      const detail = { url, status: res.status, stage: 'token', ...(error !== undefined && { oauth_error: error }) };
      const description = oauth.success && oauth.data.error_description ? ` (${oauth.data.error_description.slice(0, 200)})` : '';
      throw tokenError(
        retryable ? 'SMART_TOKEN_UNAVAILABLE' : 'SMART_TOKEN_REFUSED',
        `the SMART token endpoint answered ${res.status}${error !== undefined ? ` ${error}` : ''}${description}${retryable ? '' : `: check the client id "${options.clientId}", its registered JWKS and scopes at the EHR`}`,
        detail,
        parseRetryAfter(res.headers.get('retry-after')),
      );
    }
    const parsed = tokenResponseSchema.safeParse(json);
    if (!parsed.success) throw tokenError('SMART_TOKEN_UNAVAILABLE', `the SMART token endpoint answered ${res.status} without a bearer access_token`, { url, status: res.status, stage: 'token' });
    // Without expires_in, keep it for five minutes (the lifetime the specification recommends).
    const lifetimeMs = (parsed.data.expires_in ?? 300) * 1000;
    cached = { token: parsed.data.access_token, until: now() + Math.max(lifetimeMs - margin, lifetimeMs / 2) };
    return parsed.data.access_token;
  }

  return {
    async accessToken(signal) {
      if (cached && cached.until > now()) return cached.token;
      inFlight ??= fetchToken(signal).finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    },
    invalidate(token) {
      if (cached?.token === token) cached = undefined;
    },
    publicJwks() {
      return keys.map((k) => k.publicJwk);
    },
    get tokenRequests() {
      return requests;
    },
  };
}
