/**
 * Reliability features with real parts: hot reload, routing, circuit breaker, per-conversation
 * ordering, operator pause, maximum age, and the Redis durability check at start.
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readFile, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { QueueDurabilityError } from '../../src/app.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { MessageStore } from '../../src/store/message-store.js';
import { runMigrations } from '../../src/store/migrations.js';
import { createPlaintextCodec } from '../../src/store/payload-codec.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { metaSerialise, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();
const SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

interface DeliveryView {
  id: string;
  destination: string;
  state: string;
  attempts: number;
  lastErrorCode: string | null;
  mappingVersion: string | null;
}

async function channelDir(yaml: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-rel-'));
  await mkdir(path.join(dir, 'channels'));
  await mkdir(path.join(dir, 'mappings'));
  await copyFile(path.join(repoRoot, 'mappings', 'whatsapp-to-communication.jsonata'), path.join(dir, 'mappings', 'whatsapp-to-communication.jsonata'));
  await writeFile(path.join(dir, 'channels', 'test.yaml'), yaml);
  return dir;
}

function channelYaml(destinations: string): string {
  return `id: test
source:
  kind: whatsapp_cloud
  path: /webhooks/test
  app_secret: \${WHATSAPP_APP_SECRET}
  verify_token: \${WHATSAPP_VERIFY_TOKEN}
destinations:
${destinations}`;
}

function fhirDest(name: string, extra = ''): string {
  return `  - name: ${name}
    kind: fhir_r4
    base_url: \${FHIR_BASE_URL}
    mapping: ../mappings/whatsapp-to-communication.jsonata
    identifier_system: https://switchboard.example/sid/${name}
    retry: { attempts: 6, initial_delay_ms: 200, max_delay_ms: 1000 }
${extra}`;
}

async function deliveries(gw: TestGateway, wamid: string): Promise<DeliveryView[]> {
  const r = await gw.admin(`/admin/messages?channel=test&source_id=${encodeURIComponent(wamid)}`);
  if (r.status !== 200) return [];
  return ((await r.json()) as { deliveries: DeliveryView[] }).deliveries;
}

async function settled(gw: TestGateway, wamid: string, n = 1, timeoutMs = 20_000): Promise<DeliveryView[]> {
  return waitFor(`delivery of ${wamid}`, async () => {
    const d = await deliveries(gw, wamid);
    return d.length === n && d.every((x) => x.state !== 'pending') ? d : undefined;
  }, timeoutMs);
}

async function countFor(fhirBase: string, system: string, wamid: string): Promise<number> {
  const r = await fetch(`${fhirBase}/Communication?identifier=${encodeURIComponent(`${system}|${wamid}`)}`, { headers: { accept: 'application/fhir+json' } });
  return ((await r.json()) as { entry?: unknown[] }).entry?.length ?? 0;
}

describe.skipIf(redis === null)('reliability', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  const gateways: TestGateway[] = [];

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
  });
  afterAll(async () => {
    for (const g of gateways) await g.stop();
    await proxy?.close();
    await fhir?.close();
  });

  async function gateway(dir: string, fhirBaseUrl = fhir.baseUrl, dbUrl?: string): Promise<TestGateway> {
    const gw = await startGateway({ databaseUrl: dbUrl ?? (await createTestDatabase()), redisUrl: redis, fhirBaseUrl, channelsDir: path.join(dir, 'channels') });
    gateways.push(gw);
    return gw;
  }

  it('hot-reloads an edited mapping, records the version per delivery, and refuses an invalid edit', async () => {
    const dir = await channelDir(channelYaml(fhirDest('ehr')));
    const gw = await gateway(dir);
    const w1 = newWamid();
    await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: w1 }));
    const [d1] = await settled(gw, w1);
    expect(d1!.state).toBe('delivered');

    const mappingFile = path.join(dir, 'mappings', 'whatsapp-to-communication.jsonata');
    const original = await readFile(mappingFile, 'utf8');
    const edited = original.replace("'Patient message'", "'Patient message (edited)'");
    expect(edited).not.toBe(original);
    await writeFile(mappingFile, edited);
    await waitFor('reload applied', async () => {
      const r = (await (await gw.admin('/admin/channels')).json()) as { reload: { ok: boolean; versions: Record<string, Record<string, string>> } };
      return r.reload.ok && r.reload.versions['test']?.['ehr'] !== d1!.mappingVersion ? r : undefined;
    });
    const w2 = newWamid();
    await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: w2 }));
    const [d2] = await settled(gw, w2);
    expect(d2!.mappingVersion).not.toBe(d1!.mappingVersion);
    const created = (await (await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`https://switchboard.example/sid/ehr|${w2}`)}`)).json()) as { entry: { resource: unknown }[] };
    expect(JSON.stringify(created.entry[0]!.resource)).toContain('Patient message (edited)');

    // An invalid edit is refused with file:line:column; the last good version keeps running.
    await writeFile(mappingFile, `${edited}\n  "broken": (`);
    const refused = await waitFor('reload refused', async () => {
      const r = (await (await gw.admin('/admin/channels')).json()) as { reload: { ok: boolean; issues: { file: string; line: number; column: number; message: string }[] } };
      return r.reload.ok === false ? r.reload : undefined;
    });
    expect(refused.issues[0]!.file).toContain('whatsapp-to-communication.jsonata');
    expect(refused.issues[0]!.line).toBeGreaterThan(1);
    const w3 = newWamid();
    await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: w3 }));
    const [d3] = await settled(gw, w3);
    expect(d3!.state).toBe('delivered');
    expect(d3!.mappingVersion).toBe(d2!.mappingVersion);
  });

  it('routes with `when`: a destination only receives the messages its predicate takes', async () => {
    const dir = await channelDir(channelYaml(fhirDest('ehr') + fhirDest('images', "    when: \"kind = 'image'\"\n")));
    const gw = await gateway(dir);
    const w = newWamid();
    await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: w }));
    const ds = await settled(gw, w, 1);
    expect(ds.map((d) => d.destination)).toEqual(['ehr']);
    expect(await countFor(fhir.baseUrl, 'https://switchboard.example/sid/images', w)).toBe(0);
  });

  it('opens the circuit on a failing destination instead of burning every message, then probes and recovers', async () => {
    const dir = await channelDir(channelYaml(fhirDest('ehr', '    circuit_breaker: { failure_threshold: 2, open_ms: 1500, max_open_ms: 3000 }\n')));
    const gw = await gateway(dir, proxy.url);
    let down = true;
    let refused = 0;
    proxy.setRule((req) => {
      if (down && req.method === 'POST' && req.url.includes('/Communication')) {
        refused++;
        return { kind: 'respond', status: 503 };
      }
      return { kind: 'pass' };
    });
    try {
      const ids = [newWamid(), newWamid(), newWamid(), newWamid(), newWamid()];
      for (const w of ids) await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: w }));
      const status = await waitFor('circuit open', async () => {
        const r = (await (await gw.admin('/admin/destinations')).json()) as { destinations: { destination: string; circuit: { state: string } | null }[] };
        const s = r.destinations.find((d) => d.destination === 'ehr');
        return s?.circuit?.state === 'open' ? s : undefined;
      });
      expect(status.circuit!.state).toBe('open');
      // While open, nothing reaches the server.
      const before = refused;
      await new Promise((r) => setTimeout(r, 1000));
      expect(refused - before).toBeLessThanOrEqual(1);
      down = false;
      for (const w of ids) {
        const [d] = await settled(gw, w, 1, 30_000);
        expect(d!.state).toBe('delivered');
        expect(await countFor(fhir.baseUrl, 'https://switchboard.example/sid/ehr', w)).toBe(1);
      }
      // Five messages against a dead server cost far fewer than 5 × 6 attempts.
      expect(refused).toBeLessThan(12);
    } finally {
      proxy.setRule(() => ({ kind: 'pass' }));
    }
  });

  it('keeps per-conversation order without holding up other conversations', async () => {
    const dir = await channelDir(channelYaml(fhirDest('ehr', '    ordering: per_conversation\n    circuit_breaker: { enabled: false }\n')));
    const gw = await gateway(dir, proxy.url);
    const a1 = newWamid();
    const a2 = newWamid();
    const b1 = newWamid();
    let failA1 = 3;
    const order: string[] = [];
    proxy.setRule((req) => {
      if (req.method !== 'POST' || !req.url.includes('/Communication')) return { kind: 'pass' };
      const ifNoneExist = decodeURIComponent(String(req.headers['if-none-exist'] ?? ''));
      const which = [a1, a2, b1].find((w) => ifNoneExist.includes(w));
      if (which === a1 && failA1 > 0) {
        failA1--;
        return { kind: 'respond', status: 503 };
      }
      if (which) order.push(which === a1 ? 'a1' : which === a2 ? 'a2' : 'b1');
      return { kind: 'pass' };
    });
    try {
      const now = Math.floor(Date.now() / 1000);
      await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: a1, timestamp: now }));
      await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: a2, timestamp: now + 1 }));
      await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: b1, timestamp: now, from: '447700900123' }));
      for (const w of [a1, a2, b1]) expect((await settled(gw, w, 1, 30_000))[0]!.state).toBe('delivered');
      expect(order.indexOf('a1')).toBeLessThan(order.indexOf('a2'));
      expect(order.indexOf('b1')).toBeLessThan(order.indexOf('a1'));
    } finally {
      proxy.setRule(() => ({ kind: 'pass' }));
    }
  });

  it('holds a destination paused by an operator and delivers once resumed', async () => {
    const dir = await channelDir(channelYaml(fhirDest('ehr')));
    const gw = await gateway(dir);
    const pause = await gw.admin('/admin/destinations/test/ehr/pause', { method: 'POST', body: JSON.stringify({ reason: 'EHR maintenance window' }) });
    expect(pause.status).toBe(200);
    const w = newWamid();
    await postWebhook(`${gw.url}/webhooks/test`, textEvent({ wamid: w }));
    await waitFor('delivery created', async () => ((await deliveries(gw, w)).length === 1 ? true : undefined));
    await new Promise((r) => setTimeout(r, 800));
    expect((await deliveries(gw, w))[0]!.state).toBe('pending');
    expect((await gw.admin('/admin/destinations/test/ehr/resume', { method: 'POST', body: '{}' })).status).toBe(200);
    expect((await settled(gw, w))[0]!.state).toBe('delivered');
  });

  it('dead-letters a message past its maximum age at its next failure instead of retrying it', async () => {
    const dir = await channelDir(channelYaml(fhirDest('ehr').replace('max_delay_ms: 1000 }', 'max_delay_ms: 1000, max_age_ms: 60000 }')));
    const dbUrl = await createTestDatabase();
    const pool = new pg.Pool({ connectionString: dbUrl });
    const w = newWamid();
    try {
      await runMigrations(pool);
      const store = new MessageStore(pool, createPlaintextCodec());
      await store.recordInboundEvent({ channelId: 'test', receivedAt: new Date(Date.now() - 3_600_000), contentType: 'application/json', raw: Buffer.from(metaSerialise(textEvent({ wamid: w }))) });
    } finally {
      await pool.end();
    }
    proxy.setRule((req) => (req.method === 'POST' && req.url.includes('/Communication') ? { kind: 'respond', status: 503 } : { kind: 'pass' }));
    try {
      const gw = await gateway(dir, proxy.url, dbUrl);
      const [d] = await settled(gw, w);
      expect(d!.state).toBe('dead_lettered');
      expect(d!.attempts).toBe(1);
      expect(d!.lastErrorCode).toBe('FHIR_HTTP_RETRYABLE');
    } finally {
      proxy.setRule(() => ({ kind: 'pass' }));
    }
  });

  it('refuses to start on a Redis that can lose jobs (no AOF, eviction allowed)', async () => {
    const bin = inject('redisServerBinary');
    expect(bin).toBeTruthy();
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'sb-redis-'));
    const child = spawn(bin!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'allkeys-lru', '--dir', tmp], { stdio: 'ignore' });
    try {
      await waitFor('redis up', async () => new Promise<boolean>((r) => {
        const s = net.connect(port, '127.0.0.1', () => { s.end(); r(true); });
        s.on('error', () => r(false));
      }));
      const dir = await channelDir(channelYaml(fhirDest('ehr')));
      const err = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: `redis://127.0.0.1:${port}`, fhirBaseUrl: fhir.baseUrl, channelsDir: path.join(dir, 'channels') }).then(
        (g) => {
          gateways.push(g);
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(QueueDurabilityError);
      expect((err as QueueDurabilityError).problems.join('\n')).toMatch(/maxmemory-policy is "allkeys-lru"[\s\S]*appendonly is "no"/);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
