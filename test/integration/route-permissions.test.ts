/**
 * Every route the real gateway registers declares a permission: without credentials it answers
 * 401, for each role lacking the permission 403, and for roles holding it neither.
 */
import Router from '@koa/router';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardRouters, identityOf, staticTokenAuthenticator } from '../../src/http/access-control.js';
import { rolePermissions, routePermissions } from '../../src/http/permissions.js';
import { roleNames, type RoleName } from '../../src/core/principal.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl, uniquePrefix } from '../support/services.js';

const redis = redisUrl();
const tokens = Object.fromEntries(roleNames.map((r) => [r, `test-${r}-${uniquePrefix()}`])) as Record<RoleName, string>;
const samples: Record<string, string> = { id: '00000000-0000-4000-8000-000000000000', key: 'a'.repeat(64), channel: 'whatsapp-to-ehr', destination: 'ehr' };
const concrete = (p: string) => p.replace(/:(\w+)/g, (_, name: string) => samples[name] ?? name);

describe.skipIf(redis === null)('permissions on every route', () => {
  let fhir: FhirSandbox;
  let gw: TestGateway;
  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    gw = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redis,
      fhirBaseUrl: fhir.baseUrl,
      // Every route is called with a wrong token: no throttling here (auth-throttle.test.ts has it).
      authThrottle: { limit: 10_000, windowMs: 60_000, lockoutMs: 1000 },
      authenticators: [
        staticTokenAuthenticator(roleNames.map((role) => ({ token: tokens[role], identity: identityOf({ kind: 'token', id: `test-${role}`, display: `test-${role}`, role }) }))),
      ],
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await fhir?.close();
  });

  const call = (route: string, token?: string) => {
    const [method, p] = route.split(' ') as [string, string];
    return fetch(`${gw.url}${concrete(p)}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
      ...(method === 'POST' && { body: '{}' }),
    });
  };

  it('declares exactly the registered routes', () => {
    expect([...gw.started.routes].sort()).toEqual(Object.keys(routePermissions).sort());
    expect(gw.started.routes.length).toBeGreaterThan(20);
  });

  it('answers 401 without credentials, 403 for each role lacking the permission, and lets the others through', async () => {
    for (const route of gw.started.routes) {
      const need = routePermissions[route]!;
      const anonymous = await call(route);
      if (need === 'public') {
        expect(anonymous.status, route).not.toBe(401);
        continue;
      }
      expect(anonymous.status, route).toBe(401);
      expect(anonymous.headers.get('www-authenticate'), route).toContain('Bearer');
      expect((await call(route, 'not-a-token')).status, route).toBe(401);
      for (const role of roleNames) {
        const res = await call(route, tokens[role]);
        if (rolePermissions[role].has(need)) expect([401, 403], `${route} as ${role}`).not.toContain(res.status);
        else {
          expect(res.status, `${route} as ${role}`).toBe(403);
          expect(((await res.json()) as { error: { message: string } }).error.message).toContain(need);
        }
      }
    }
  });

  it('keeps message content from viewers and operators, and media from everyone but analysts, admins and MEDIA_TOKEN', () => {
    const content = Object.entries(routePermissions).filter(([, p]) => p === 'content.read').map(([r]) => r);
    expect(content).toEqual(expect.arrayContaining(['GET /admin/deliveries/:id', 'GET /admin/deliveries/:id/rejected-output', 'GET /admin/messages', 'GET /admin/dead-letters']));
    for (const role of ['viewer', 'operator'] as const) {
      expect(rolePermissions[role].has('content.read')).toBe(false);
      expect(rolePermissions[role].has('media.fetch')).toBe(false);
    }
  });

  it('refuses to start a router with a route that declares no permission', () => {
    const r = new Router();
    r.get('/admin/undeclared', (ctx) => {
      ctx.body = 'x';
    });
    expect(() => guardRouters([r], { authenticators: [], audit: { record: async () => {} } })).toThrow(/GET \/admin\/undeclared/);
  });
});
