/**
 * Encryption at rest, tried the way the issue was found: unique markers for text, sender name and
 * phone go through a whole gateway (embedded PostgreSQL under DATA_DIR, debug logs written under
 * DATA_DIR, a real FHIR server, sandbox MLLP peers), on success and failure paths, on Redis (its
 * own redis-server with its files in a temporary folder) and on BullMQ's PostgreSQL backend.
 * Afterwards no file under DATA_DIR and no Redis file contains any marker, while a plaintext
 * control (the channel id) is found, so the scan does read the files.
 */
import { createWriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { Redis } from 'ioredis';
import type { Switchboard } from '../../src/app.js';
import { runCli } from '../../src/cli/main.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { repoRoot, waitFor } from '../support/gateway.js';
import { atRestGateway, filesContaining, marker, markerPhone, newDataDir, startPrivateRedis } from '../support/at-rest.js';
import { capturedIo } from '../support/cli-io.js';
import { newWamid, postWebhook } from '../support/whatsapp-webhook.js';
import { whatsappTextEvent } from '../../src/sandbox/whatsapp-sample-events.js';

const redisBinary = inject('redisServerBinary');

interface Markers {
  text: string;
  failText: string;
  name: string;
  /** wa_id digits (the phone is +digits). */
  phone: string;
}

function newMarkers(): Markers {
  return { text: marker('MKTXT'), failText: marker('MKFAIL'), name: marker('MKNAME'), phone: markerPhone() };
}

async function runGateway(o: { redisUrl?: string; dataDir: string; fhir: FaultProxy; markers: Markers; whileRunning?: () => Promise<void> }): Promise<void> {
  const logFile = path.join(o.dataDir, 'gateway.log');
  const logStream = createWriteStream(logFile);
  const app: Switchboard = atRestGateway({ dataDir: o.dataDir, channelsDir: path.join(repoRoot, 'channels'), redisUrl: o.redisUrl, fhirBaseUrl: o.fhir.url, logStream });
  try {
    const started = await app.start();
    const base = `http://127.0.0.1:${started.port}`;
    const store = app.internals.store!;
    const m = o.markers;
    const send = async (channel: string, text: string) => {
      const wamid = newWamid();
      const event = whatsappTextEvent({ wamid, from: m.phone, profileName: `Patient ${m.name}`, text });
      expect((await postWebhook(`${base}/webhooks/${channel}`, event)).status).toBe(200);
      return wamid;
    };
    const settled = (channel: string, wamid: string) =>
      waitFor(`deliveries of ${wamid}`, async () => {
        const found = await store.findMessage(channel, wamid);
        return found && found.deliveries.length > 0 && found.deliveries.every((d) => d.state !== 'pending') ? found : undefined;
      }, 30_000);

    // Success: to the EHR, and through the care-routing channel to the lab and the insurer (HL7).
    const ok = await send('whatsapp-to-ehr', `Hello ${m.text}`);
    const routed = await send('whatsapp-care-routing', `lab results and insurance question ${m.text}`);
    expect((await settled('whatsapp-to-ehr', ok)).deliveries.map((d) => d.state)).toEqual(['delivered']);
    expect((await settled('whatsapp-care-routing', routed)).deliveries.map((d) => d.state).sort()).toEqual(['delivered', 'delivered', 'delivered']);

    // Failure: the FHIR server rejects with an OperationOutcome that echoes the message text.
    o.fhir.setRule((req) =>
      req.method === 'POST' && req.url.startsWith('/fhir/R4/Communication')
        ? {
            kind: 'respond',
            status: 422,
            headers: { 'content-type': 'application/fhir+json' },
            body: JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'business-rule', diagnostics: `rejected "${m.failText}" from ${m.name} +${m.phone}` }] }),
          }
        : { kind: 'pass' },
    );
    const failed = await send('whatsapp-to-ehr', `Please help ${m.failText}`);
    const dead = await settled('whatsapp-to-ehr', failed);
    expect(dead.deliveries[0]?.state).toBe('dead_lettered');
    // The store still reads its own ciphertext back: the answer and the error are there.
    const full = await store.getDelivery(dead.deliveries[0]!.id);
    expect(JSON.stringify(full?.history[0]?.response)).toContain(m.failText);
    o.fhir.setRule(() => ({ kind: 'pass' }));
    await o.whileRunning?.();
  } finally {
    await app.stop();
    await new Promise<void>((r) => logStream.end(r));
  }
}

describe('no PHI in plaintext at rest', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
  });
  afterAll(async () => {
    await proxy?.close();
    await fhir?.close();
  });

  it.skipIf(redisBinary === null)('on Redis: markers are in no file under DATA_DIR and in no Redis file', async () => {
    const markers = newMarkers();
    const dataDir = await newDataDir();
    const redis = await startPrivateRedis(redisBinary!);
    const url = redis.url;
    const redisDir = redis.dir;
    try {
      await runGateway({ redisUrl: url, dataDir, fhir: proxy, markers });
      const c = new Redis(url);
      // Queue jobs carry ids only.
      const jobFields = new Set<string>();
      for (const key of await c.keys('*')) {
        if ((await c.type(key)) !== 'hash') continue;
        const data = await c.hget(key, 'data');
        if (data !== null) for (const k of Object.keys(JSON.parse(data) as object)) jobFields.add(k);
      }
      expect(jobFields.size).toBeGreaterThan(0);
      for (const k of jobFields) expect(['eventId', 'deliveryId', 'generation', 'messageId', 'channelId', 'destination']).toContain(k);
      c.disconnect();
    } finally {
      await redis.stop(); // an RDB snapshot too, beside the AOF
    }
    const needles = [markers.text, markers.failText, markers.name, markers.phone];
    expect(await filesContaining(dataDir, needles)).toEqual({});
    expect(await filesContaining(redisDir, needles)).toEqual({});
    // Controls: the scan reads the database files and the Redis files.
    expect((await filesContaining(dataDir, ['whatsapp-to-ehr']))['whatsapp-to-ehr']?.some((f) => f.startsWith('postgres'))).toBe(true);
    expect(Object.keys(await filesContaining(redisDir, ['deliver'])).length).toBeGreaterThan(0);
  }, 180_000);

  it('on the PostgreSQL queue backend: markers are in no file under DATA_DIR', async () => {
    const markers = newMarkers();
    const dataDir = await newDataDir();
    // The store commands find the running gateway's embedded PostgreSQL and keyring from DATA_DIR.
    const cli = () => capturedIo({ DATA_DIR: dataDir }, { cwd: os.tmpdir() });
    const status = cli();
    await runGateway({ dataDir, fhir: proxy, markers, whileRunning: async () => void expect(await runCli(['keys', 'status'], status)).toBe(0) });
    expect(status.out).toMatch(/every value is under the active data key/);
    // With the gateway stopped, the command starts the embedded PostgreSQL itself.
    const verify = cli();
    expect(await runCli(['audit', 'verify'], verify)).toBe(0);
    expect(verify.out).toContain('audit trail intact');
    expect(await filesContaining(dataDir, [markers.text, markers.failText, markers.name, markers.phone])).toEqual({});
    expect((await filesContaining(dataDir, ['whatsapp-to-ehr']))['whatsapp-to-ehr']?.some((f) => f.startsWith('postgres'))).toBe(true);
  }, 180_000);
});
