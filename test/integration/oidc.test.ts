/**
 * Single sign-on against a real OpenID provider (`oidc-provider`, started here on port 0): access
 * tokens it issues through the client_credentials grant with a resource indicator authenticate
 * at the gateway as the OIDC subject, with the role the `roles` claim maps to; a wrong audience,
 * an expired or not-yet-valid token, a forged or HMAC-signed one, and a key the issuer no longer
 * publishes are refused; a rotated key is picked up without a restart.
 */
import type { AddressInfo } from 'node:net';
import { SignJWT, decodeProtectedHeader } from 'jose';
import Koa from 'koa';
import { guard } from '../../src/http/access-control.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedAuditEntry } from '../../src/core/audit.js';
import { SwitchboardError } from '../../src/core/errors.js';
import { oidcAuthenticator, parseRoleMap, roleFrom } from '../../src/http/oidc-authenticator.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { API_AUDIENCE, OTHER_AUDIENCE, startOpenIdProvider, type TestOpenIdProvider } from '../support/openid-provider.js';
import { createTestDatabase, redisUrl } from '../support/services.js';

const redis = redisUrl();
const roleMap = 'sb-viewers=viewer, sb-operators=operator, sb-admins=admin';

describe.skipIf(redis === null)('OpenID Connect bearer tokens', () => {
  let idp: TestOpenIdProvider;
  let fhir: FhirSandbox;
  let gw: TestGateway;
  beforeAll(async () => {
    idp = await startOpenIdProvider([
      { id: 'ops-bot', secret: 'ops-bot-secret-0123456789', roles: ['sb-operators'] },
      { id: 'audit-bot', secret: 'audit-bot-secret-0123456789', roles: ['sb-viewers', 'sb-admins'] },
      { id: 'other-bot', secret: 'other-bot-secret-0123456789', roles: ['payroll'] },
      { id: 'short-bot', secret: 'short-bot-secret-0123456789', roles: ['sb-viewers'], ttl: 1 },
      { id: 'future-bot', secret: 'future-bot-secret-0123456789', roles: ['sb-viewers'], notBeforeIn: 3600 },
    ]);
    fhir = await startFhirSandbox({ port: 0, seed: true });
    gw = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redis,
      fhirBaseUrl: fhir.baseUrl,
      oidc: { issuer: idp.issuer, audience: API_AUDIENCE, roleClaim: 'roles', roleMap: parseRoleMap(roleMap), clockToleranceSeconds: 0, jwksCooldownMs: 0 },
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await fhir?.close();
    await idp?.close();
  });

  const as = (token: string, p: string, body?: unknown) =>
    fetch(`${gw.url}${p}`, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }) });
  const whoami = async (token: string) => (await (await as(token, '/admin/whoami')).json()) as { principal: { kind: string; display: string; role: string | null } };

  it('maps the roles claim to a role and names the subject in the audit trail', async () => {
    const ops = await idp.accessToken('ops-bot');
    expect((await whoami(ops)).principal).toEqual({ kind: 'oidc', display: 'ops-bot', role: 'operator' });
    expect((await as(ops, '/admin/stats')).status).toBe(200);
    expect((await as(ops, '/admin/tokens')).status).toBe(403);
    expect((await as(ops, '/admin/destinations/whatsapp-to-ehr/ehr/pause', { reason: 'EHR maintenance' })).status).toBe(200);
    expect((await as(ops, '/admin/destinations/whatsapp-to-ehr/ehr/resume', {})).status).toBe(200);

    // The strongest mapped role wins; a token without a mapped role is known but may do nothing.
    const admin = await idp.accessToken('audit-bot');
    expect((await whoami(admin)).principal.role).toBe('admin');
    expect((await as(admin, '/admin/tokens')).status).toBe(200);
    const other = await idp.accessToken('other-bot');
    const refused = await as(other, '/admin/stats');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain('role none');

    const entries: RecordedAuditEntry[] = [];
    for await (const e of gw.app.internals.audit!.entries()) entries.push(e);
    expect(entries.find((e) => e.action === 'destination.paused')?.principal).toEqual({ kind: 'oidc', id: `${idp.issuer}|ops-bot`, display: 'ops-bot', role: 'operator' });
    expect(entries.find((e) => e.action === 'auth.failed' && e.principal?.display === 'other-bot')?.detail).toMatchObject({ reason: 'forbidden', permission: 'status.read' });
  });

  it('reads the discovery document and the key set once, not for every request', async () => {
    // A fresh gateway of its own, so the counts start at its first JWT.
    const own = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: fhir.baseUrl, oidc: { issuer: idp.issuer, audience: API_AUDIENCE, roleClaim: 'roles', roleMap: parseRoleMap(roleMap) } });
    try {
      const tokens = await Promise.all([idp.accessToken('ops-bot'), idp.accessToken('audit-bot'), idp.accessToken('ops-bot')]);
      const before = idp.fetches();
      for (let i = 0; i < 4; i++) for (const t of tokens) expect((await fetch(`${own.url}/admin/stats`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
      const after = idp.fetches();
      expect(after.discovery - before.discovery).toBe(1);
      expect(after.jwks - before.jwks).toBe(1);
    } finally {
      await own.stop();
    }
  });

  it('refuses a token for another audience, an expired one, one not yet valid, and forged ones with 401', async () => {
    const unauthenticated = async (token: string, message: RegExp) => {
      const r = await as(token, '/admin/stats');
      expect(r.status).toBe(401);
      const { error } = (await r.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe('UNAUTHENTICATED');
      expect(error.message).toMatch(message);
    };
    await unauthenticated(await idp.accessToken('ops-bot', OTHER_AUDIENCE), /another audience/);

    const short = await idp.accessToken('short-bot');
    expect((await as(short, '/admin/stats')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2100));
    await unauthenticated(short, /expired/);

    await unauthenticated(await idp.accessToken('future-bot'), /not valid yet/);

    // The provider's token with a changed payload: the signature no longer matches.
    const [h, p, sig] = (await idp.accessToken('ops-bot')).split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    await unauthenticated(`${h}.${Buffer.from(JSON.stringify({ ...payload, roles: ['sb-admins'] })).toString('base64url')}.${sig}`, /signature does not verify/);
    // Right claims, but HMAC-signed (with the public key's kid): only asymmetric algorithms are accepted.
    const { kid } = decodeProtectedHeader(`${h}.${p}.${sig}`);
    const hmac = await new SignJWT({ roles: ['sb-admins'] })
      .setProtectedHeader({ alg: 'HS256', kid: kid! })
      .setIssuer(idp.issuer)
      .setAudience(API_AUDIENCE)
      .setSubject('intruder')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('a-secret-anyone-could-pick-0123456789'));
    await unauthenticated(hmac, /algorithm that is not accepted/);

    const reasons: unknown[] = [];
    for await (const e of gw.app.internals.audit!.entries()) if (e.action === 'auth.failed' && e.principal === null) reasons.push(e.detail?.['reason']);
    expect(reasons).toEqual(['jwt_audience', 'jwt_expired', 'jwt_not_yet_valid', 'jwt_signature', 'jwt_algorithm']);
  });

  it('follows a key rotation at the provider: new tokens work at once, tokens under the withdrawn key stop', async () => {
    const before = await idp.accessToken('ops-bot');
    expect((await as(before, '/admin/stats')).status).toBe(200);
    await idp.rotateKeys();
    const after = await idp.accessToken('ops-bot');
    expect(decodeProtectedHeader(after).kid).not.toBe(decodeProtectedHeader(before).kid);
    expect((await as(after, '/admin/stats')).status).toBe(200);
    const withdrawn = await as(before, '/admin/stats');
    expect(withdrawn.status).toBe(401);
    expect(((await withdrawn.json()) as { error: { message: string } }).error.message).toContain('a key the issuer does not publish');
  });

  it('answers 503 OIDC_UNAVAILABLE (not 401) when the provider cannot be reached', async () => {
    const down = oidcAuthenticator({ issuer: 'http://127.0.0.1:9', audience: API_AUDIENCE, roleClaim: 'roles' });
    const jwt = await idp.accessToken('ops-bot');
    await expect(down.authenticate(jwt)).rejects.toSatisfy((e) => e instanceof SwitchboardError && e.code === 'OIDC_UNAVAILABLE');
    expect(await down.authenticate('sbt_not-a-jwt')).toBeNull();
    // At the edge: the route's guard answers 503 with Retry-After, so clients retry instead of re-authenticating.
    const app = new Koa();
    app.use(guard('status.read', 'GET /admin/stats', { authenticators: [down], audit: { record: async () => {} } }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/stats`, { headers: { authorization: `Bearer ${jwt}` } });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('5');
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('OIDC_UNAVAILABLE');
    } finally {
      server.close();
    }
  });
});

describe('OIDC role mapping', () => {
  it('reads strings, arrays, space-separated lists and nested claims; without a map, role names map to themselves', () => {
    const map = parseRoleMap(roleMap);
    expect(roleFrom({ roles: 'sb-viewers sb-operators' }, { roleClaim: 'roles', roleMap: map })).toBe('operator');
    expect(roleFrom({ realm_access: { roles: ['x', 'sb-admins'] } }, { roleClaim: 'realm_access.roles', roleMap: map })).toBe('admin');
    expect(roleFrom({ groups: ['analyst', 'viewer'] }, { roleClaim: 'groups' })).toBe('analyst');
    expect(roleFrom({ roles: ['sb-viewers'] }, { roleClaim: 'groups', roleMap: map })).toBeNull();
    expect(() => parseRoleMap('sb-root=root')).toThrow(/role must be one of/);
    expect(() => oidcAuthenticator({ issuer: 'http://x', audience: 'a', roleClaim: 'roles', algorithms: ['HS256'] })).toThrow(/asymmetric/);
  });
});
