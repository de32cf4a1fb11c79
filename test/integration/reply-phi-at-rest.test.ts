/**
 * Replies to patients leave no PHI in plaintext at rest or in the logs: a patient (name and phone
 * number as unique markers) writes on WhatsApp, the care team answers in the EHR with a marker
 * text, the reply goes out through fhir_subscription -> the shipped reply mapping ->
 * whatsapp_cloud_send to the sandbox Graph API and its statuses come back; a second reply is
 * refused by the provider with an error that echoes the reply's text and the patient's number.
 * The gateway runs on embedded PostgreSQL under DATA_DIR, logs at debug level into a file under
 * DATA_DIR, and queues on a redis-server of its own. Afterwards no file under DATA_DIR (the
 * database, the log, media) and no Redis file holds the reply texts, the patient's message, name
 * or number, while plaintext controls (the channel id; the queue names) are found.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import type { GraphSandbox } from '../../src/sandbox/graph-api-sandbox.js';
import { whatsappTextEvent } from '../../src/sandbox/whatsapp-sample-events.js';
import { atRestGateway, filesContaining, marker, markerPhone, newDataDir, startPrivateRedis } from '../support/at-rest.js';
import { waitFor } from '../support/gateway.js';
import { ehrRepliesChannel, inboundWhatsAppChannel, startReplyGraphSandbox } from '../support/outbound.js';
import { TEST_APP_SECRET, newWamid, postWebhook } from '../support/whatsapp-webhook.js';

type Json = Record<string, unknown>;
const redisBinary = inject('redisServerBinary');
const WAMID_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

describe.skipIf(redisBinary === null)('replies to patients: no PHI in plaintext at rest or in the logs', () => {
  let fhir: FhirSandbox;
  let graph: GraphSandbox;
  let gatewayUrl: string | undefined;
  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    graph = await startReplyGraphSandbox(() => gatewayUrl);
  });
  afterAll(async () => {
    await graph?.close();
    await fhir?.close();
  });

  const fhirJson = async (p: string, init?: RequestInit): Promise<Json> => {
    const res = await fetch(`${fhir.baseUrl}/${p}`, { ...init, headers: { 'content-type': 'application/fhir+json' } });
    expect(res.ok).toBe(true);
    return (await res.json()) as Json;
  };
  const communication = (id: unknown) => fhirJson(`Communication/${String(id)}`);

  it('the reply text and the patient number are in no file under DATA_DIR, no log line and no Redis file', async () => {
    const m = { patientText: marker('MKPAT'), reply: marker('MKREPLY'), refused: marker('MKREFUSED'), name: marker('MKNAME'), phone: markerPhone() };
    const patient = await fhirJson('Patient', {
      method: 'POST',
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: m.name }], telecom: [{ system: 'phone', value: `+${m.phone}` }] }),
    });

    const dataDir = await newDataDir('switchboard-reply-at-rest-');
    const channelsDir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-reply-channels-'));
    await writeFile(path.join(channelsDir, 'wa-in.yaml'), inboundWhatsAppChannel('wa-in'));
    await writeFile(path.join(channelsDir, 'ehr-replies.yaml'), ehrRepliesChannel('ehr-replies'));
    const redis = await startPrivateRedis(redisBinary!);
    const logStream = createWriteStream(path.join(dataDir, 'gateway.log'));
    const app = atRestGateway({
      dataDir,
      channelsDir,
      redisUrl: redis.url,
      fhirBaseUrl: fhir.baseUrl,
      env: {
        GRAPH_URL: graph.url,
        WHATSAPP_ACCESS_TOKEN: 'sandbox-token',
        WHATSAPP_PHONE_NUMBER_ID: '100555000000002',
        FHIR_SUBSCRIPTION_SECRET: 'reply-at-rest-subscription-secret-0123456789',
      },
      logStream,
    });
    try {
      const started = await app.start();
      gatewayUrl = `http://127.0.0.1:${started.port}`;
      await waitFor('the active Subscription', async () => (((await fhirJson('Subscription?status=active')).entry as Json[] | undefined) ?? []).length > 0);

      // The patient writes; the message becomes a Communication about their Patient.
      const wamid = newWamid();
      const event = whatsappTextEvent({ wamid, from: m.phone, profileName: `Patient ${m.name}`, text: `Question ${m.patientText}` });
      expect((await postWebhook(`${gatewayUrl}/webhooks/wa-in`, event)).status).toBe(200);
      const inbound = await waitFor('the patient message in the EHR', async () => {
        const b = await fhirJson(`Communication?identifier=${encodeURIComponent(`${WAMID_SYSTEM}|${wamid}`)}`);
        return ((b.entry as Json[] | undefined) ?? [])[0]?.resource as Json | undefined;
      });
      const reply = (text: string) =>
        fhirJson('Communication', {
          method: 'POST',
          body: JSON.stringify({
            resourceType: 'Communication',
            status: 'in-progress',
            recipient: [{ reference: `Patient/${String(patient.id)}` }],
            inResponseTo: [{ reference: `Communication/${String(inbound.id)}` }],
            payload: [{ contentString: text }],
          }),
        });

      // A reply sent, its statuses written back.
      const sent = await reply(`Answer ${m.reply}`);
      const send = await waitFor('the send', async () => graph.sends.find((s) => JSON.stringify(s.body).includes(m.reply)));
      expect(send.to).toBe(m.phone);
      await waitFor('read on the reply', async () => JSON.stringify(await communication(sent.id)).includes('"read"'), 30_000);

      // A reply refused, the provider's error echoing its text and the number.
      graph.inject({ kind: 'error', httpStatus: 400, code: 131026, message: `Message "${m.refused}" undeliverable to +${m.phone}`, details: `${m.name} +${m.phone}` });
      const refused = await reply(`Answer ${m.refused}`);
      const notDone = await waitFor('not-done on the refused reply', async () => {
        const c = await communication(refused.id);
        return c.status === 'not-done' ? c : undefined;
      }, 30_000);
      // The reason written back is PHI-free: not the provider's words, which echo text and number.
      expect(notDone.statusReason).toMatchObject({ coding: [{ code: 'WHATSAPP_RECIPIENT_UNAVAILABLE' }], text: expect.any(String) });
      for (const n of [m.refused, m.phone, m.name]) expect(JSON.stringify(notDone.statusReason)).not.toContain(n);
    } finally {
      gatewayUrl = undefined;
      await app.stop();
      await new Promise<void>((r) => logStream.end(r));
      await redis.stop();
    }

    const needles = [m.reply, m.refused, m.patientText, m.name, m.phone];
    expect(await filesContaining(dataDir, needles)).toEqual({});
    expect(await filesContaining(redis.dir, needles)).toEqual({});
    // Controls: the scan reads the database files, the log and the Redis files.
    const controls = await filesContaining(dataDir, ['ehr-replies']);
    expect(controls['ehr-replies']?.some((f) => f.startsWith('postgres'))).toBe(true);
    expect(controls['ehr-replies']).toContain('gateway.log');
    expect(Object.keys(await filesContaining(redis.dir, ['deliver'])).length).toBeGreaterThan(0);
  }, 240_000);
});
