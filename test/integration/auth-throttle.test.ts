/**
 * Guessing tokens: after the limit of bad credentials from one address the gateway answers 429
 * with Retry-After to that address (whatever it sends), audits the decision once however long
 * the flood, and lets the address in again when the lockout ends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedAuditEntry } from '../../src/core/audit.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';

const redis = redisUrl();

describe.skipIf(redis === null)('authentication failure throttling', () => {
  let fhir: FhirSandbox;
  let gw: TestGateway;
  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    gw = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redis,
      fhirBaseUrl: fhir.baseUrl,
      authThrottle: { limit: 5, windowMs: 60_000, lockoutMs: 1000 },
      trustProxy: true,
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await fhir?.close();
  });

  const from = (address: string, token: string | undefined, p = '/admin/stats') =>
    fetch(`${gw.url}${p}`, { headers: { 'x-forwarded-for': address, ...(token !== undefined && { authorization: `Bearer ${token}` }) } });
  const audited = async (action: string, address: string) => {
    const out: RecordedAuditEntry[] = [];
    for await (const e of gw.app.internals.audit!.entries()) if (e.action === action && e.sourceAddress === address) out.push(e);
    return out;
  };

  it('answers 429 with Retry-After once an address reaches the limit, audits that once, and lifts it after the lockout', async () => {
    const attacker = '198.51.100.7';
    for (let i = 0; i < 4; i++) expect((await from(attacker, `guess-${i}`)).status).toBe(401);
    const fifth = await from(attacker, 'guess-4');
    expect(fifth.status).toBe(429);
    expect(fifth.headers.get('retry-after')).toBe('1');
    expect(((await fifth.json()) as { error: { code: string } }).error.code).toBe('AUTH_THROTTLED');

    // A flood while locked out: refused without looking at the credential, even a valid one.
    const flood = await Promise.all(Array.from({ length: 30 }, (_, i) => from(attacker, i === 0 ? gw.adminToken : `flood-${i}`, i % 2 ? '/admin/tokens' : '/media/x')));
    expect(new Set(flood.map((r) => r.status))).toEqual(new Set([429]));
    // Another address is not affected; missing credentials are not counted as guesses.
    expect((await from('203.0.113.9', gw.adminToken)).status).toBe(200);
    for (let i = 0; i < 8; i++) expect((await from('203.0.113.10', undefined)).status).toBe(401);
    // Public routes stay open to everyone.
    expect((await from(attacker, undefined, '/healthz')).status).toBe(200);

    expect(await audited('auth.failed', attacker)).toHaveLength(5);
    const throttled = await audited('auth.throttled', attacker);
    expect(throttled).toHaveLength(1);
    expect(throttled[0]).toMatchObject({ outcome: 'failure', principal: null, detail: { failures: 5, retry_after_s: 1, lockout: 1 } });
    expect(JSON.stringify(throttled)).not.toContain('guess-');

    await new Promise((r) => setTimeout(r, 1100));
    expect((await from(attacker, gw.adminToken)).status).toBe(200);
    // A valid credential forgives the address's earlier lockouts.
    for (let i = 0; i < 4; i++) expect((await from(attacker, `again-${i}`)).status).toBe(401);
    expect((await from(attacker, 'again-4')).headers.get('retry-after')).toBe('1');
  });

  it('a repeated offender waits twice as long', async () => {
    const attacker = '198.51.100.8';
    for (let i = 0; i < 5; i++) await from(attacker, `x-${i}`);
    await new Promise((r) => setTimeout(r, 1100));
    for (let i = 0; i < 4; i++) expect((await from(attacker, `y-${i}`)).status).toBe(401);
    const second = await from(attacker, 'y-4');
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('2');
    expect((await audited('auth.throttled', attacker)).map((e) => e.detail?.['lockout'])).toEqual([1, 2]);
  });
});
