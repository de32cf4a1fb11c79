/**
 * End to end with real parts: a real redis-server (and, in the last block, BullMQ's PostgreSQL
 * backend), the embedded PostgreSQL, and Medplum's FHIR implementation. Faults are injected by a
 * proxy in front of the real FHIR server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { POSTGRES_QUEUE_POOL_MAX } from '../../src/queue/queue-backend.js';
import { STORE_POOL_MAX } from '../../src/app.js';
import { TEST_VERIFY_TOKEN, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';
const WEBHOOK = '/webhooks/whatsapp-to-ehr';

interface Bundle {
  total?: number;
  entry?: { resource: Record<string, unknown> }[];
}

async function communicationsFor(fhirBase: string, wamid: string): Promise<Record<string, unknown>[]> {
  const r = await fetch(`${fhirBase}/Communication?identifier=${encodeURIComponent(`${SYSTEM}|${wamid}`)}`, { headers: { accept: 'application/fhir+json' } });
  const b = (await r.json()) as Bundle;
  return (b.entry ?? []).map((e) => e.resource);
}

interface DeliveryView {
  id: string;
  state: string;
  destination: string;
  attempts: number;
  lastErrorCode: string | null;
  outcome: Record<string, unknown> | null;
  mappingVersion: string | null;
}

async function deliveryOf(gw: TestGateway, wamid: string): Promise<DeliveryView | undefined> {
  const r = await gw.admin(`/admin/messages?channel=whatsapp-to-ehr&source_id=${encodeURIComponent(wamid)}`);
  if (r.status !== 200) return undefined;
  const m = (await r.json()) as { deliveries: DeliveryView[] };
  return m.deliveries[0];
}

async function settled(gw: TestGateway, wamid: string, timeoutMs = 20_000): Promise<DeliveryView> {
  return waitFor(`delivery of ${wamid}`, async () => {
    const d = await deliveryOf(gw, wamid);
    return d && d.state !== 'pending' ? d : undefined;
  }, timeoutMs);
}

const redis = redisUrl();

describe.skipIf(redis === null)('gateway on Redis, embedded PostgreSQL and a real FHIR server', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let dbUrl: string;

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    dbUrl = await createTestDatabase();
    gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redis, fhirBaseUrl: proxy.url });
  });
  afterAll(async () => {
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
  });

  it('answers the verification handshake and reports ready', async () => {
    const ok = await fetch(`${gw.url}${WEBHOOK}?hub.mode=subscribe&hub.verify_token=${TEST_VERIFY_TOKEN}&hub.challenge=12345`);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('12345');
    const bad = await fetch(`${gw.url}${WEBHOOK}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=12345`);
    expect(bad.status).toBe(403);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { store: 'ok', queues: 'ok', workers: 'ok' } });
  });

  it('turns a signed webhook into one Communication linked to the Patient matched by phone', async () => {
    const wamid = newWamid();
    const res = await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid, text: 'Can I reschedule? café ✓ 🙏' }));
    expect(res.status).toBe(200);
    const d = await settled(gw, wamid);
    expect(d.state).toBe('delivered');
    expect(d.mappingVersion).toMatch(/^[0-9a-f]{12}$/);
    const comms = await communicationsFor(fhir.baseUrl, wamid);
    expect(comms).toHaveLength(1);
    const c = comms[0]!;
    expect(c['status']).toBe('completed');
    expect(c['subject']).toMatchObject({ reference: expect.stringMatching(/^Patient\//) });
    expect(JSON.stringify(c['payload'])).toContain('Can I reschedule? café ✓ 🙏');
    expect(String(c['sent'])).toMatch(/Z$/);
  });

  it('answers 200 only after the event, its message and its delivery are committed, with no ingest job', async () => {
    const pool = new pg.Pool({ connectionString: dbUrl });
    try {
      const wamid = newWamid();
      const res = await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid }));
      expect(res.status).toBe(200);
      const eventId = res.headers.get('x-switchboard-event-id');
      // Read right after the answer: everything the event parses into is already stored.
      const rows = await pool.query<{ state: string; ingested: boolean; destination: string }>(
        `SELECT e.state, e.ingested_at IS NOT NULL AS ingested, d.destination FROM inbound_events e
           JOIN messages m ON m.event_id = e.id JOIN deliveries d ON d.message_id = m.id WHERE e.id = $1`,
        [eventId],
      );
      expect(rows.rows).toEqual([{ state: 'ingested', ingested: true, destination: 'ehr' }]);
      expect((await settled(gw, wamid)).state).toBe('delivered');
      const q = (await (await gw.admin('/admin/queues')).json()) as { queues: Record<string, Record<string, number>> };
      // The ingest queue is only the outbox's: a webhook parsed at the edge never goes through it.
      expect(Object.values(q.queues['ingest'] ?? {}).reduce((a, b) => a + b, 0)).toBe(0);
    } finally {
      await pool.end();
    }
  });

  it('commits concurrent webhooks together, answering each only once its own rows are stored, and delivers each once', async () => {
    const pool = new pg.Pool({ connectionString: dbUrl });
    try {
      const wamids = Array.from({ length: 24 }, () => newWamid());
      // The same webhook twice in the burst: one message, one delivery.
      const events = [...wamids.map((wamid) => textEvent({ wamid })), textEvent({ wamid: wamids[0]! })];
      const answers = await Promise.all(
        events.map(async (event, i) => {
          const res = await postWebhook(`${gw.url}${WEBHOOK}`, event);
          const eventId = res.headers.get('x-switchboard-event-id');
          // Read right after this answer: its own event (and, unless it is the repeat, its message
          // and delivery) are committed.
          const rows = await pool.query<{ state: string; deliveries: string }>(
            `SELECT e.state, (SELECT count(*) FROM messages m JOIN deliveries d ON d.message_id = m.id WHERE m.event_id = e.id) AS deliveries
             FROM inbound_events e WHERE e.id = $1`,
            [eventId],
          );
          const row = rows.rows[0];
          return { status: res.status, eventId, stored: row?.state === 'ingested' && Number(row.deliveries) === (i < wamids.length ? 1 : 0) };
        }),
      );
      expect(answers.map((a) => `${a.status} ${a.stored}`)).toEqual(events.map(() => '200 true'));
      // Events that arrived together shared transactions (rows written by one transaction share xmin).
      const tx = await pool.query<{ n: string }>(`SELECT count(DISTINCT xmin::text) AS n FROM inbound_events WHERE id = ANY($1::uuid[])`, [answers.map((a) => a.eventId)]);
      expect(Number(tx.rows[0]?.n)).toBeLessThan(events.length);
      for (const wamid of wamids) expect((await settled(gw, wamid)).state).toBe('delivered');
      await new Promise((r) => setTimeout(r, 500));
      for (const wamid of wamids) expect(await communicationsFor(fhir.baseUrl, wamid)).toHaveLength(1);
    } finally {
      await pool.end();
    }
  });

  it('fails only the bad event when a shared transaction fails: the others are stored and delivered', async () => {
    const store = gw.app.internals.store!;
    const original = store.recordInboundIngestedMany.bind(store);
    // Fault injection: any transaction holding the poisoned event fails. The sizes of the failed
    // transactions show whether the poisoned event shared one with good events (the case the
    // event-by-event retry exists for) or was alone.
    const failedSizes: number[] = [];
    store.recordInboundIngestedMany = async (items) => {
      if (items.some((i) => i.event.raw.includes('poison-this-transaction'))) {
        failedSizes.push(items.length);
        throw new Error('fault injected: transaction failed');
      }
      return original(items);
    };
    try {
      const good = Array.from({ length: 12 }, () => newWamid());
      const bad = newWamid();
      const events = [...good.slice(0, 6).map((wamid) => textEvent({ wamid })), textEvent({ wamid: bad, text: 'poison-this-transaction' }), ...good.slice(6).map((wamid) => textEvent({ wamid }))];
      const statuses = await Promise.all(events.map(async (event) => (await postWebhook(`${gw.url}${WEBHOOK}`, event)).status));
      expect(statuses[6]).toBe(503);
      expect(statuses.filter((s, i) => i !== 6 && s === 200)).toHaveLength(12);
      // The poisoned event was committed together with good ones, which were then stored again
      // one by one (a run where it travelled alone would not test that).
      expect(Math.max(...failedSizes), `failed transactions held ${failedSizes.join(', ')} events`).toBeGreaterThan(1);
      for (const wamid of good) expect((await settled(gw, wamid)).state).toBe('delivered');
      expect(await deliveryOf(gw, bad)).toBeUndefined();
    } finally {
      store.recordInboundIngestedMany = original;
    }
  });

  it('delivers the same webhook posted twice exactly once', async () => {
    const wamid = newWamid();
    const event = textEvent({ wamid });
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, event)).status).toBe(200);
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, event)).status).toBe(200);
    await settled(gw, wamid);
    // Give a would-be duplicate time to appear.
    await new Promise((r) => setTimeout(r, 500));
    expect(await communicationsFor(fhir.baseUrl, wamid)).toHaveLength(1);
  });

  it('refuses bad signatures, bad JSON and oversized bodies, and stores none of them', async () => {
    const pool = new pg.Pool({ connectionString: dbUrl });
    const count = async () => Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM inbound_events')).rows[0]!.n);
    try {
      const before = await count();
      const event = textEvent({ wamid: newWamid() });
      expect((await postWebhook(`${gw.url}${WEBHOOK}`, event, { signature: null })).status).toBe(401);
      expect((await postWebhook(`${gw.url}${WEBHOOK}`, event, { secret: 'not-the-secret' })).status).toBe(403);
      const notJson = await postWebhook(`${gw.url}${WEBHOOK}`, '{"object": "whatsapp_business_account", ');
      expect(notJson.status).toBe(400);
      expect(await notJson.json()).toMatchObject({ error: { code: 'BODY_NOT_JSON' } });
      const notEvent = await postWebhook(`${gw.url}${WEBHOOK}`, '{"hello": "world"}');
      expect(notEvent.status).toBe(400);
      const huge = JSON.stringify({ object: 'whatsapp_business_account', entry: [], pad: 'x'.repeat(4 * 1024 * 1024) });
      expect((await postWebhook(`${gw.url}${WEBHOOK}`, huge)).status).toBe(413);
      expect(await count()).toBe(before);
    } finally {
      await pool.end();
    }
  });

  it('retries a FHIR 503 honouring Retry-After and delivers exactly once on recovery', async () => {
    const wamid = newWamid();
    let refused = 0;
    proxy.setRule((req) => {
      if (req.method === 'POST' && req.url.startsWith('/fhir/R4/Communication') && refused < 2) {
        refused++;
        return { kind: 'respond', status: 503, headers: { 'retry-after': '1', 'content-type': 'text/html' }, body: '<html>busy</html>' };
      }
      return { kind: 'pass' };
    });
    try {
      expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid }))).status).toBe(200);
      const d = await settled(gw, wamid, 30_000);
      expect(d.state).toBe('delivered');
      expect(refused).toBe(2);
      const full = (await (await gw.admin(`/admin/deliveries/${d.id}`)).json()) as { history: { result: string; errorCode: string | null; retryAfterMs: number | null }[] };
      expect(full.history.map((h) => h.result)).toEqual(['retry', 'retry', 'delivered']);
      expect(full.history[0]).toMatchObject({ errorCode: 'FHIR_HTTP_RETRYABLE', retryAfterMs: 1000 });
      expect(await communicationsFor(fhir.baseUrl, wamid)).toHaveLength(1);
    } finally {
      proxy.setRule(() => ({ kind: 'pass' }));
    }
  });

  it('dead-letters a 422 with the server OperationOutcome, lists it, and replays it once fixed', async () => {
    const wamid = newWamid();
    const outcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'business-rule', diagnostics: 'sender not allowed' }] };
    let rejecting = true;
    proxy.setRule((req) =>
      rejecting && req.method === 'POST' && req.url.startsWith('/fhir/R4/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(outcome) }
        : { kind: 'pass' },
    );
    try {
      expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid }))).status).toBe(200);
      const d = await settled(gw, wamid);
      expect(d.state).toBe('dead_lettered');
      expect(d.lastErrorCode).toBe('FHIR_HTTP_PERMANENT');
      expect(d.attempts).toBe(1); // permanent: never retried

      const list = (await (await gw.admin('/admin/dead-letters?channel=whatsapp-to-ehr&destination=ehr&code=FHIR_HTTP_PERMANENT')).json()) as { items: { id: string }[] };
      expect(list.items.map((i) => i.id)).toContain(d.id);
      const full = (await (await gw.admin(`/admin/deliveries/${d.id}`)).json()) as { history: { response: unknown; detail: Record<string, unknown> }[] };
      expect(full.history[0]!.response).toMatchObject(outcome);
      expect(full.history[0]!.detail).toMatchObject({ http_status: 422 });

      expect((await gw.admin('/admin/dead-letters', {})).status).toBe(200);
      expect((await fetch(`${gw.url}/admin/dead-letters`)).status).toBe(401);

      rejecting = false;
      const replay = await gw.admin(`/admin/dead-letters/${d.id}/replay`, { method: 'POST', body: JSON.stringify({ reason: 'partner fixed the rule' }) });
      expect(replay.status).toBe(202);
      const after = await settled(gw, wamid);
      expect(after.state).toBe('delivered');
      expect(await communicationsFor(fhir.baseUrl, wamid)).toHaveLength(1);
      // A second replay of a delivered message is refused, not duplicated.
      expect((await gw.admin(`/admin/dead-letters/${d.id}/replay`, { method: 'POST', body: '{}' })).status).toBe(409);
    } finally {
      proxy.setRule(() => ({ kind: 'pass' }));
    }
  });

  it('exposes Prometheus metrics for webhooks, deliveries, dead letters and queues, without PHI', async () => {
    const r = await fetch(`${gw.url}/metrics`);
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).toMatch(/switchboard_webhook_requests_total\{channel="whatsapp-to-ehr",status="200"\} [1-9]/);
    expect(text).toMatch(/switchboard_webhook_requests_total\{channel="whatsapp-to-ehr",status="403"\} [1-9]/);
    expect(text).toMatch(/switchboard_delivery_attempts_total\{channel="whatsapp-to-ehr",destination="ehr",result="delivered",code=""\} [1-9]/);
    expect(text).toMatch(/switchboard_delivery_attempts_total\{channel="whatsapp-to-ehr",destination="ehr",result="retry",code="FHIR_HTTP_RETRYABLE"\} [1-9]/);
    expect(text).toMatch(/switchboard_queue_jobs\{queue="deliver.whatsapp-to-ehr.ehr",state="completed"\}/);
    expect(text).toContain('switchboard_delivery_latency_seconds_bucket');
    expect(text).not.toContain('15551234567');
  });

  it('records statuses against their message and never turns them into Communications', async () => {
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid }))).status).toBe(200);
    await settled(gw, wamid);
    const status = {
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '1', phone_number_id: '1' }, statuses: [{ id: wamid, status: 'read', timestamp: '1749416400', recipient_id: '15551234567' }] } }] }],
    };
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, status)).status).toBe(200);
    const m = await waitFor('status recorded', async () => {
      const r = await gw.admin(`/admin/messages?channel=whatsapp-to-ehr&source_id=${encodeURIComponent(wamid)}`);
      const body = (await r.json()) as { statuses: { status: string }[]; deliveries: unknown[] };
      return body.statuses.length > 0 ? body : undefined;
    });
    expect(m.statuses.map((s) => s.status)).toEqual(['read']);
    expect(m.deliveries).toHaveLength(1);
    expect(await communicationsFor(fhir.baseUrl, wamid)).toHaveLength(1);
  });
});

describe('gateway on BullMQ\'s PostgreSQL backend (the zero-config queue)', () => {
  let fhir: FhirSandbox;
  let gw: TestGateway;
  let dbUrl: string;

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    dbUrl = await createTestDatabase();
    gw = await startGateway({ databaseUrl: dbUrl, redisUrl: null, fhirBaseUrl: fhir.baseUrl });
  });
  afterAll(async () => {
    await gw?.stop();
    await fhir?.close();
  });

  it('delivers a webhook to a Communication with no Redis at all', async () => {
    expect(gw.started.queues).toMatch(/^PostgreSQL/);
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid }))).status).toBe(200);
    const d = await settled(gw, wamid);
    expect(d.state).toBe('delivered');
    expect(await communicationsFor(fhir.baseUrl, wamid)).toHaveLength(1);
  });

  it('runs every queue and worker on one bounded set of database connections', async () => {
    const wamids = Array.from({ length: 40 }, () => newWamid());
    const statuses = await Promise.all(wamids.map(async (wamid) => (await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid }))).status));
    expect(statuses.every((s) => s === 200)).toBe(true);
    for (const wamid of wamids) expect((await settled(gw, wamid)).state).toBe('delivered');
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    try {
      const n = await c.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
      // The store's pool, the queues' shared pool and its one LISTEN connection; not one pool per queue and worker.
      expect(Number(n.rows[0]?.n)).toBeLessThanOrEqual(STORE_POOL_MAX + POSTGRES_QUEUE_POOL_MAX + 1);
    } finally {
      await c.end();
    }
  });
});
