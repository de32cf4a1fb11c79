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

export interface SmartEhr {
  /** The FHIR base URL behind the gate (discovery: <fhirBase>/.well-known/smart-configuration). */
  fhirBase: string;
  tokenUrl: string;
  clientId: string;
  /** Token requests the provider answered with a token. */
  tokensIssued(): number;
  /** Assertion headers (kid, alg) seen at the token endpoint, in order. */
  assertions(): { kid: string | undefined; alg: string | undefined }[];
  register(jwks: { keys: readonly Record<string, unknown>[] }): void;
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

export async function startSmartEhr(o: { sandboxBase: string; clientId: string; jwks: { keys: readonly Record<string, unknown>[] } }): Promise<SmartEhr> {
  let provider: Provider;
  let issued = 0;
  const seen: { kid: string | undefined; alg: string | undefined }[] = [];
  const auth = await listen((req, res) => {
    if (req.url === '/token' && req.method === 'POST') {
      // Record the assertion's header as the provider receives it, then let the provider judge.
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString());
        const assertion = form.get('client_assertion');
        if (assertion) {
          const [h] = assertion.split('.');
          const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as { kid?: string; alg?: string };
          seen.push({ kid: header.kid, alg: header.alg });
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

  const build = (jwks: { keys: readonly Record<string, unknown>[] } | null) => {
    provider = new Provider(issuer, {
      clients: jwks
        ? [{ client_id: o.clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [...jwks.keys] }, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }]
        : [],
      enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384'] },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => fhirBase,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ scope: SMART_SCOPE, audience: fhirBase, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'RS256' } } }),
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
        res.end(JSON.stringify({ token_endpoint: `${issuer}/token`, token_endpoint_auth_methods_supported: ['private_key_jwt'], token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'], grant_types_supported: ['client_credentials'], scopes_supported: SMART_SCOPE.split(' '), capabilities: ['client-confidential-asymmetric'] }));
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
      if (!scope.includes('system/Communication.c')) return refuse('scope');
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
