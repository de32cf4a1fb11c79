/**
 * A real OpenID provider (`oidc-provider`) on 127.0.0.1, port 0, for SSO tests. Clients use the
 * client_credentials grant with a resource indicator, so the provider issues JWT access tokens
 * (RFC 9068) whose audience is the resource. Each client's roles go into the `roles` claim.
 * `rotateKeys()` swaps the signing key behind the same issuer, as a provider does on rotation.
 * For browser sign-in, `registerBrowserClient()` adds a public client (authorization code + PKCE,
 * no secret) once its redirect URI is known; people sign in on the provider's own login and
 * consent pages, and each account's roles (`accounts`) go into the `roles` claim.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { errors } from 'oidc-provider';

export const API_AUDIENCE = 'https://switchboard.test/api';
export const OTHER_AUDIENCE = 'https://other-service.test/api';

export interface TestClient {
  id: string;
  secret: string;
  roles: string[];
  /** Access token lifetime in seconds (default 300). */
  ttl?: number;
  /** Seconds from now put into the token's `nbf` (not valid before). */
  notBeforeIn?: number;
}

export interface TestOpenIdProvider {
  issuer: string;
  /** A real access token for the client, for the given resource (default API_AUDIENCE). */
  accessToken(clientId: string, resource?: string): Promise<string>;
  /** A new signing key (with a new kid); the old one is no longer published. */
  rotateKeys(): Promise<void>;
  /** How often the discovery document and the key set were fetched (by anyone). */
  fetches(): { discovery: number; jwks: number };
  /** A public browser client (code + PKCE) redirecting to this URI. */
  registerBrowserClient(clientId: string, redirectUri: string): void;
  close(): Promise<void>;
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...(privateKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

export async function startOpenIdProvider(clients: readonly TestClient[], accounts: Readonly<Record<string, readonly string[]>> = {}): Promise<TestOpenIdProvider> {
  let handler: http.RequestListener = (_req, res) => res.end();
  const fetched = { discovery: 0, jwks: 0 };
  const server = http.createServer((req, res) => {
    const p = (req.url ?? '').split('?')[0];
    if (p === '/.well-known/openid-configuration') fetched.discovery++;
    if (p === '/jwks') fetched.jwks++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const byId = new Map(clients.map((c) => [c.id, c]));
  const browserClients: { client_id: string; redirect_uris: string[] }[] = [];
  let currentKey: Record<string, unknown>;

  const build = (key: Record<string, unknown>) => {
    currentKey = key;
    const provider = new Provider(issuer, {
      clients: [
        ...clients.map((c) => ({ client_id: c.id, client_secret: c.secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] })),
        ...browserClients.map((c) => ({ ...c, token_endpoint_auth_method: 'none' as const, grant_types: ['authorization_code'], response_types: ['code' as const] })),
      ],
      jwks: { keys: [key] },
      findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
      clientBasedCORS: (_ctx, origin, client) => client.clientAuthMethod === 'none' && (client.redirectUris ?? []).some((uri) => new URL(uri).origin === origin),
      features: {
        // The provider's own login and consent pages, for browser sign-in (any password).
        devInteractions: { enabled: browserClients.length > 0 },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => API_AUDIENCE,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource, client) => {
            if (resource !== API_AUDIENCE && resource !== OTHER_AUDIENCE) throw new errors.InvalidTarget();
            return { scope: 'switchboard', audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: byId.get(client.clientId)?.ttl ?? 300, jwt: { sign: { alg: 'RS256' } } };
          },
        },
      },
      extraTokenClaims: (_ctx, token) => {
        const { clientId, accountId } = token as { clientId?: string; accountId?: string };
        if (accountId !== undefined) return { roles: [...(accounts[accountId] ?? [])] };
        const c = clientId ? byId.get(clientId) : undefined;
        if (!c) return undefined;
        return { roles: c.roles, ...(c.notBeforeIn !== undefined && { nbf: Math.floor(Date.now() / 1000) + c.notBeforeIn }) };
      },
    });
    handler = provider.callback();
  };
  build(signingKey());

  return {
    issuer,
    async accessToken(clientId, resource = API_AUDIENCE) {
      const c = byId.get(clientId)!;
      const r = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${c.id}:${c.secret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'switchboard' }),
      });
      const body = (await r.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!r.ok || !body.access_token) throw new Error(`token request failed: ${r.status} ${body.error}: ${body.error_description}`);
      return body.access_token;
    },
    async rotateKeys() {
      build(signingKey());
    },
    fetches: () => ({ ...fetched }),
    registerBrowserClient(clientId, redirectUri) {
      browserClients.push({ client_id: clientId, redirect_uris: [redirectUri] });
      build(currentKey);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
