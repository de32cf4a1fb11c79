/**
 * The gateway killed with SIGKILL mid-flight, then started again: every webhook that got a 2xx is
 * delivered exactly once. Real processes, real Redis, real PostgreSQL, a real FHIR server behind a
 * proxy that slows Communication writes so work is in flight when the process dies.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { createTestDatabase, redisUrl, uniquePrefix } from '../support/services.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { spawnGateway, type GatewayProcess } from '../support/gateway-process.js';
import { waitFor } from '../support/gateway.js';
import { TEST_APP_SECRET, TEST_VERIFY_TOKEN, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';
const redis = redisUrl();

async function countByIdentifier(fhirBase: string, wamids: readonly string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let url: string | undefined = `${fhirBase}/Communication?_count=1000`;
  while (url) {
    const b = (await (await fetch(url, { headers: { accept: 'application/fhir+json' } })).json()) as {
      entry?: { resource: { identifier?: { system?: string; value?: string }[] } }[];
      link?: { relation: string; url: string }[];
    };
    for (const e of b.entry ?? []) {
      const v = e.resource.identifier?.find((i) => i.system === SYSTEM)?.value;
      if (v && wamids.includes(v)) counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    url = b.link?.find((l) => l.relation === 'next')?.url;
  }
  return counts;
}

describe.skipIf(redis === null)('restart of the gateway mid-flight', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: GatewayProcess | undefined;

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
  });
  afterAll(async () => {
    if (gw) await gw.kill('SIGKILL');
    await proxy?.close();
    await fhir?.close();
  });

  it('loses nothing and duplicates nothing when the process is killed with SIGKILL', async () => {
    const env = {
      DATABASE_URL: await createTestDatabase(),
      REDIS_URL: redis!,
      QUEUE_PREFIX: uniquePrefix(),
      FHIR_BASE_URL: proxy.url,
      WHATSAPP_APP_SECRET: TEST_APP_SECRET,
      WHATSAPP_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
      ADMIN_TOKEN: 'restart-test-admin-token',
      SWITCHBOARD_ENV: 'production',
      ENCRYPTION_KEYS: `restart-test:${randomBytes(32).toString('base64')}`,
      // Recover a dead process's jobs in seconds rather than the default half-minute.
      JOB_LOCK_MS: '3000',
    };
    // Slow down Communication writes through a real server so deliveries are in flight.
    const slow = { ms: 1500 };
    proxy.setRule((req) => (req.method === 'POST' && req.url.startsWith('/fhir/R4/Communication') ? { kind: 'pass', delayMs: slow.ms } : { kind: 'pass' }));

    gw = await spawnGateway(env);
    const acknowledged: string[] = [];
    const unacknowledged: string[] = [];
    const send = async (wamid: string) => {
      try {
        const r = await postWebhook(`${gw!.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid }));
        (r.status === 200 ? acknowledged : unacknowledged).push(wamid);
      } catch {
        unacknowledged.push(wamid);
      }
    };
    for (let i = 0; i < 40; i++) await send(newWamid());
    expect(acknowledged.length).toBe(40);
    // Kill while deliveries are in flight (each write takes 1.5 s at the FHIR server): prove it.
    const before = await countByIdentifier(fhir.baseUrl, acknowledged);
    expect(before.size).toBeLessThan(acknowledged.length);
    await gw.kill('SIGKILL');
    const firstOutput = gw.output();
    gw = undefined;
    expect(firstOutput).toContain('Switchboard is running');

    slow.ms = 0;
    gw = await spawnGateway(env);
    for (let i = 0; i < 10; i++) await send(newWamid());
    // Senders retry what was not acknowledged; here nothing was left unacknowledged, but keep the rule.
    for (const w of [...unacknowledged]) await send(w);

    const all = [...new Set(acknowledged)];
    // Jobs that were active when the process died are recovered by BullMQ's stalled-job check
    // once their lock expires (JOB_LOCK_MS).
    const counts = await waitFor(
      'every acknowledged message delivered',
      async () => {
        const c = await countByIdentifier(fhir.baseUrl, all);
        return all.every((w) => (c.get(w) ?? 0) >= 1) ? c : undefined;
      },
      90_000,
    );
    // The store agrees: every acknowledged message's delivery ended 'delivered'.
    for (const w of all) {
      const d = await waitFor(`store state of ${w}`, async () => {
        const r = await fetch(`${gw!.url}/admin/messages?channel=whatsapp-to-ehr&source_id=${encodeURIComponent(w)}`, { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } });
        const m = (await r.json()) as { deliveries: { state: string }[] };
        return m.deliveries[0]?.state === 'delivered' ? m.deliveries[0] : undefined;
      }, 60_000);
      expect(d.state).toBe('delivered');
    }
    const duplicated = all.filter((w) => (counts.get(w) ?? 0) > 1);
    expect(duplicated).toEqual([]);
    expect(all.filter((w) => !counts.has(w))).toEqual([]);
  }, 150_000);
});
