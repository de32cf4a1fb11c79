/** Start-up behaviour a user meets first: refusal on invalid channels, outbox recovery, no PHI in logs. */
import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { MessageStore } from '../../src/store/message-store.js';
import { runMigrations } from '../../src/store/migrations.js';
import { createPlaintextCodec } from '../../src/store/payload-codec.js';
import { runGatewayToExit } from '../support/gateway-process.js';
import { startGateway, waitFor } from '../support/gateway.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { metaSerialise, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();

describe('start-up refusal', () => {
  it('refuses to start on an invalid channel and names file:line:column and the reason', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-bad-channel-'));
    await writeFile(
      path.join(dir, 'broken.yaml'),
      ['id: broken', 'source:', '  kind: whatsapp_cloud', '  app_secret: ${WHATSAPP_APP_SECRET}', '  verify_token: ${WHATSAPP_VERIFY_TOKEN}', '  colour: blue', 'destinations: []', ''].join('\n'),
    );
    const r = await runGatewayToExit({ CHANNELS_DIR: dir, FHIR_BASE_URL: 'http://127.0.0.1:9/fhir', DATA_DIR: path.join(dir, 'data') });
    expect(r.code).toBe(1);
    expect(r.output).toContain('refusing to start');
    expect(r.output).toMatch(/broken\.yaml:6:3: .*colour/);
  });

  it('refuses to start in production when a secret is not set, naming the variable', async () => {
    const r = await runGatewayToExit({ SWITCHBOARD_ENV: 'production', FHIR_BASE_URL: 'http://127.0.0.1:9/fhir', DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'sb-')) });
    expect(r.code).toBe(1);
    expect(r.output).toMatch(/whatsapp-to-ehr\.yaml:\d+:\d+: .*WHATSAPP_APP_SECRET/);
  });

  it('refuses to start in production without encryption keys, naming the variables', async () => {
    const r = await runGatewayToExit({
      SWITCHBOARD_ENV: 'production',
      FHIR_BASE_URL: 'http://127.0.0.1:9/fhir',
      WHATSAPP_APP_SECRET: 'x'.repeat(20),
      WHATSAPP_VERIFY_TOKEN: 'y'.repeat(20),
      DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'sb-')),
    });
    expect(r.code).toBe(1);
    expect(r.output).toContain('refusing to start: SWITCHBOARD_ENV=production needs encryption keys: set ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE');
  });

  it('refuses to start on a Redis Cluster with a QUEUE_PREFIX without a hash tag, in one line, before connecting anywhere', async () => {
    // Nothing listens on port 1: the refusal comes before any connection is tried.
    const r = await runGatewayToExit({ REDIS_CLUSTER_NODES: '127.0.0.1:1,127.0.0.1:2', QUEUE_PREFIX: 'clinic-eu', FHIR_BASE_URL: 'http://127.0.0.1:9/fhir', DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'sb-')) });
    expect(r.code).toBe(1);
    const said = r.output.split('\n').filter((l) => l.startsWith('switchboard:'));
    expect(said).toEqual(['switchboard: refusing to start: QUEUE_PREFIX "clinic-eu" has no hash tag: on a Redis Cluster every key of a queue must hash to one slot; put the part that names this deployment in braces, e.g. QUEUE_PREFIX={clinic-eu}']);
  });
});

describe.skipIf(redis === null)('outbox and logs', () => {
  let fhir: FhirSandbox;
  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
  });
  afterAll(async () => {
    await fhir?.close();
  });

  it('delivers an event that was stored but never enqueued (a crash between the two) at start-up', async () => {
    const dbUrl = await createTestDatabase();
    const pool = new pg.Pool({ connectionString: dbUrl });
    const wamid = newWamid();
    try {
      await runMigrations(pool);
      const store = new MessageStore(pool, createPlaintextCodec());
      await store.recordInboundEvent({ channelId: 'whatsapp-to-ehr', receivedAt: new Date(Date.now() - 60_000), contentType: 'application/json', raw: Buffer.from(metaSerialise(textEvent({ wamid }))) });
    } finally {
      await pool.end();
    }
    const gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redis, fhirBaseUrl: fhir.baseUrl });
    try {
      const d = await waitFor('outbox event delivered', async () => {
        const r = await gw.admin(`/admin/messages?channel=whatsapp-to-ehr&source_id=${encodeURIComponent(wamid)}`);
        const m = r.ok ? ((await r.json()) as { deliveries: { state: string }[] }) : undefined;
        return m?.deliveries[0]?.state === 'delivered' ? m.deliveries[0] : undefined;
      });
      expect(d.state).toBe('delivered');
    } finally {
      await gw.stop();
    }
  });

  it('never writes message text, phone numbers or names to the logs, on success or failure', async () => {
    let logs = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs += chunk.toString();
        cb();
      },
    });
    const proxy = await startFaultProxy(fhir.baseUrl);
    const gw = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: proxy.url, logStream: sink });
    try {
      const secretText = 'My HIV test result worries me, call 0612345678';
      const good = newWamid();
      const bad = newWamid();
      const unknownSender = newWamid();
      const failNext = { value: false };
      proxy.setRule((req) =>
        failNext.value && req.method === 'POST' && req.url.includes('Communication')
          ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: `rejected: ${secretText}` }] }) }
          : { kind: 'pass' },
      );
      expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: good, text: secretText }))).status).toBe(200);
      expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: unknownSender, text: secretText, from: '447700900123' }))).status).toBe(200);
      const settledState = async (w: string) =>
        waitFor(`settled ${w}`, async () => {
          const r = await gw.admin(`/admin/messages?channel=whatsapp-to-ehr&source_id=${encodeURIComponent(w)}`);
          const m = r.ok ? ((await r.json()) as { deliveries: { state: string }[] }) : undefined;
          return m?.deliveries[0] && m.deliveries[0].state !== 'pending' ? m.deliveries[0].state : undefined;
        });
      expect(await settledState(good)).toBe('delivered');
      expect(await settledState(unknownSender)).toBe('delivered');
      failNext.value = true;
      expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: bad, text: secretText }))).status).toBe(200);
      expect(await settledState(bad)).toBe('dead_lettered');
      await new Promise((r) => setTimeout(r, 200));
      // The logs do say what happened, by id and code...
      expect(logs).toContain('delivery dead-lettered');
      expect(logs).toContain('FHIR_HTTP_PERMANENT');
      // ...and nothing about the patient.
      for (const phi of [secretText, 'HIV', '0612345678', '15551234567', '447700900123', 'Jane Demo']) {
        expect(logs, `logs contain "${phi}"`).not.toContain(phi);
      }
    } finally {
      await gw.stop();
      await proxy.close();
    }
  });
});
