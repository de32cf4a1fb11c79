/**
 * An EHR that requires SMART Backend Services, made of real parts:
 * - the authorization server is `oidc-provider` (127.0.0.1, port 0) with one client registered
 *   for `private_key_jwt` and the client_credentials grant; a resource indicator makes it issue
 *   JWT access tokens for the FHIR base;
 * - the FHIR server is the project's sandbox (Medplum), behind a gate that verifies every bearer
 *   token against the provider's JWKS with `jose` (issuer, audience, expiry) and serves the
 *   `.well-known/smart-configuration` document.
 * `register(jwks)` re-registers the client with another key set (rotation); `revoke()` removes
 * the client; `rejectNext()` makes the FHIR server answer 401 to the token in use (revoked early).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import Provider from 'oidc-provider';

export const SMART_SCOPE = 'system/Communication.c system/Patient.rs';
/** The same grants as an EHR that speaks SMART v1 writes them. */
export const SMART_V1_SCOPE = 'system/Communication.write system/Patient.read';

export interface SmartEhr {
  /** The FHIR base URL behind the gate (discovery: <fhirBase>/.well-known/smart-configuration). */
  fhirBase: string;
  tokenUrl: string;
  clientId: string;
  /** Token requests the provider answered with a token. */
  tokensIssued(): number;
  /** Assertion headers (kid, alg) seen at the token endpoint, in order. */
  assertions(): { kid: string | undefined; alg: string | undefined }[];
  /** The `scope` of each token request, in order. */
  scopesRequested(): string[];
  /** The claims of each client assertion received, in order. */
  assertionClaims(): Record<string, unknown>[];
  register(jwks: { keys: readonly Record<string, unknown>[] } | { uri: string }): void;
  revoke(): void;
  rejectNext(): void;
  close(): Promise<void>;
}

async function listen(handler: http.RequestListener): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function body(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export async function startSmartEhr(o: {
  sandboxBase: string;
  clientId: string;
  /** The client's keys, given inline (a JWK Set) or by URL (`jwks_uri`, fetched by the provider). */
  jwks: { keys: readonly Record<string, unknown>[] } | { uri: string };
  /** The scope syntax this EHR knows (default v2); it grants and checks only scopes written in it. */
  scopeSyntax?: 'v1' | 'v2';
}): Promise<SmartEhr> {
  const scopes = o.scopeSyntax === 'v1' ? SMART_V1_SCOPE : SMART_SCOPE;
  const createScope = scopes.split(' ')[0]!;
  let provider: Provider;
  let issued = 0;
  const seen: { kid: string | undefined; alg: string | undefined }[] = [];
  const requestedScopes: string[] = [];
  const claims: Record<string, unknown>[] = [];
  const auth = await listen((req, res) => {
    if (req.url === '/token' && req.method === 'POST') {
      // Record the assertion's header as the provider receives it, then let the provider judge.
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString());
        requestedScopes.push(form.get('scope') ?? '');
        const assertion = form.get('client_assertion');
        if (assertion) {
          const [h] = assertion.split('.');
          const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as { kid?: string; alg?: string };
          seen.push({ kid: header.kid, alg: header.alg });
          claims.push(decodeJwt(assertion) as Record<string, unknown>);
        }
      });
      res.on('finish', () => {
        if (res.statusCode === 200) issued++;
      });
    }
    provider.callback()(req, res);
  });
  const issuer = auth.url;
  let fhirBase = '';

  const build = (jwks: { keys: readonly Record<string, unknown>[] } | { uri: string } | null) => {
    provider = new Provider(issuer, {
      clients: jwks
        ? [{ client_id: o.clientId, token_endpoint_auth_method: 'private_key_jwt', ...('uri' in jwks ? { jwks_uri: jwks.uri } : { jwks: { keys: [...jwks.keys] } }), grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }]
        : [],
      enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384'] },
      // The provider refuses to fetch from special-use addresses (SSRF protection); the client's
      // jwks_uri is a gateway on loopback here, so its fetch goes without that dispatcher.
      fetch: (url, init) => {
        const { dispatcher: _loopbackAllowed, ...rest } = (init ?? {}) as RequestInit & { dispatcher?: unknown };
        return globalThis.fetch(url, rest);
      },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => fhirBase,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ scope: scopes, audience: fhirBase, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'RS256' } } }),
        },
      },
    });
  };

  const keySet = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const rejected = new Set<string>();
  let rejectNext = false;
  const gate = await listen((req, res) => {
    void (async () => {
      const url = req.url ?? '/';
      if (url === '/fhir/.well-known/smart-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token_endpoint: `${issuer}/token`, token_endpoint_auth_methods_supported: ['private_key_jwt'], token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'], grant_types_supported: ['client_credentials'], scopes_supported: scopes.split(' '), capabilities: ['client-confidential-asymmetric', o.scopeSyntax === 'v1' ? 'permission-v1' : 'permission-v2'] }));
        return;
      }
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const refuse = (why: string) => {
        res.writeHead(401, { 'content-type': 'application/fhir+json', 'www-authenticate': `Bearer error="invalid_token", error_description="${why}"` });
        res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', diagnostics: why }] }));
      };
      if (token === undefined) return refuse('no bearer token');
      try {
        await jwtVerify(token, keySet, { issuer, audience: fhirBase });
      } catch (err) {
        return refuse((err as Error).message);
      }
      if (rejectNext) {
        rejectNext = false;
        rejected.add(token);
      }
      if (rejected.has(token)) return refuse('token revoked');
      const scope = String(decodeJwt(token)['scope'] ?? '');
      if (!scope.split(' ').includes(createScope)) return refuse(`the token does not grant ${createScope}`);
      const payload = await body(req);
      const upstream = await fetch(`${o.sandboxBase}${url.replace(/^\/fhir/, '')}`, {
        method: req.method ?? 'GET',
        headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'authorization', 'content-length', 'connection'].includes(k)).map(([k, v]) => [k, String(v)])),
        ...(payload.length > 0 && { body: payload }),
      });
      const headers: Record<string, string> = {};
      upstream.headers.forEach((v, k) => {
        if (!['content-length', 'transfer-encoding', 'connection', 'content-encoding'].includes(k)) headers[k] = v;
      });
      res.writeHead(upstream.status, headers);
      res.end(Buffer.from(await upstream.arrayBuffer()));
    })().catch((err: unknown) => {
      res.writeHead(502);
      res.end(String(err));
    });
  });
  fhirBase = `${gate.url}/fhir`;
  build(o.jwks);

  return {
    fhirBase,
    tokenUrl: `${issuer}/token`,
    clientId: o.clientId,
    tokensIssued: () => issued,
    assertions: () => [...seen],
    scopesRequested: () => [...requestedScopes],
    assertionClaims: () => [...claims],
    register: (jwks) => build(jwks),
    revoke: () => build(null),
    rejectNext: () => {
      rejectNext = true;
    },
    async close() {
      await Promise.all([auth.server, gate.server].map((s) => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); })));
    },
  };
}
