/**
 * The round trip through a whole gateway (in-process, real PostgreSQL, Redis when installed):
 * a patient's WhatsApp message becomes a Communication in the FHIR sandbox; the care team's
 * reply written there (inResponseTo it) reaches Switchboard by the R4 Subscription Switchboard
 * created (the sandbox's rest-hook notifications), goes out through the shipped reply mapping
 * and whatsapp_cloud_send to the sandbox Graph API exactly once, quoting the patient's message;
 * the Graph sandbox's status webhooks come back and are written onto the reply Communication
 * (sent, delivered, read; a failure as not-done with its code). The patient's own Communication
 * never becomes a message to the patient. Outbound deliveries show in the admin API.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OUTBOUND_DELIVERY_EXTENSION, OUTBOUND_ERROR_CODE_SYSTEM } from '../../src/fhir/communication-status-writeback.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import type { GraphSandbox } from '../../src/sandbox/graph-api-sandbox.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { ehrRepliesChannel, inboundWhatsAppChannel, startReplyGraphSandbox } from '../support/outbound.js';
import { DEMO_WA_ID, TEST_APP_SECRET, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const SECRET = 'round-trip-subscription-secret-0123456789';
const WAMID_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

type Json = Record<string, unknown>;

let dir: string;
let fhir: FhirSandbox;
let graph: GraphSandbox;
let gw: TestGateway | undefined;
let patientRef: string;

async function fhirGet(p: string): Promise<Json> {
  const res = await fetch(`${fhir.baseUrl}/${p}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Json;
}

async function fhirPost(resource: Json): Promise<Json> {
  const res = await fetch(`${fhir.baseUrl}/${String(resource.resourceType)}`, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(resource) });
  expect(res.status).toBe(201);
  return (await res.json()) as Json;
}

/** The patient writes on WhatsApp; resolves with the wamid and the Communication it became. */
async function patientWrites(text: string): Promise<{ wamid: string; communication: Json }> {
  const wamid = newWamid();
  const r = await postWebhook(`${gw!.url}/webhooks/wa-in`, textEvent({ wamid, text }));
  expect(r.status).toBe(200);
  const communication = await waitFor('the patient message in the EHR', async () => {
    const b = await fhirGet(`Communication?identifier=${encodeURIComponent(`${WAMID_SYSTEM}|${wamid}`)}`);
    return ((b.entry as Json[] | undefined) ?? [])[0]?.resource as Json | undefined;
  });
  return { wamid, communication };
}

/** The care team answers in the EHR. */
function careTeamReplies(text: string, answering?: Json): Promise<Json> {
  return fhirPost({
    resourceType: 'Communication',
    status: 'in-progress',
    recipient: [{ reference: patientRef }],
    sender: { display: 'Dr Example' },
    ...(answering ? { inResponseTo: [{ reference: `Communication/${String(answering.id)}` }] } : {}),
    payload: [{ contentString: text }],
  });
}

function delivery(resource: Json): Record<string, unknown> {
  const ext = ((resource.extension as Json[] | undefined) ?? []).find((e) => e.url === OUTBOUND_DELIVERY_EXTENSION);
  return Object.fromEntries(((ext?.extension as Json[] | undefined) ?? []).map((e) => [e.url, e.valueCode ?? e.valueDateTime ?? e.valueString]));
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-round-trip-'));
  graph = await startReplyGraphSandbox(() => gw?.url);
  fhir = await startFhirSandbox({ port: 0, seed: true });
  await writeFile(path.join(dir, 'wa-in.yaml'), inboundWhatsAppChannel('wa-in'));
  await writeFile(path.join(dir, 'ehr-replies.yaml'), ehrRepliesChannel('ehr-replies'));
  gw = await startGateway({
    databaseUrl: await createTestDatabase(),
    redisUrl: redisUrl(),
    fhirBaseUrl: fhir.baseUrl,
    channelsDir: dir,
    env: { GRAPH_URL: graph.url, WHATSAPP_ACCESS_TOKEN: 'sandbox-token', WHATSAPP_PHONE_NUMBER_ID: '100555000000002', FHIR_SUBSCRIPTION_SECRET: SECRET },
  });
  const search = await fhirGet(`Patient?phone=${encodeURIComponent(`+${DEMO_WA_ID}`)}`);
  patientRef = `Patient/${String(((search.entry as Json[])[0]!.resource as Json).id)}`;
  // Switchboard created the Subscription at start, on its own webhook; the server activated it.
  await waitFor('the active Subscription', async () => {
    const subs = await fhirGet('Subscription?status=active');
    return ((subs.entry as Json[] | undefined) ?? []).length === 1;
  });
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await graph?.close();
  await fhir?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('two-way messaging, the round trip', () => {
  it('Switchboard created an authenticated rest-hook Subscription on its own webhook', async () => {
    const subs = await fhirGet('Subscription');
    const sub = ((subs.entry as Json[])[0]!.resource as Json);
    expect(sub).toMatchObject({
      status: 'active',
      criteria: 'Communication?status=preparation,in-progress',
      channel: { type: 'rest-hook', endpoint: `${gw!.url}/webhooks/ehr-replies`, payload: 'application/fhir+json', header: [`Authorization: Bearer ${SECRET}`] },
    });
  });

  it('patient message -> Communication -> the care team reply -> sent once on WhatsApp quoting it -> sent, delivered, read on the reply', async () => {
    const { wamid, communication: inbound } = await patientWrites('Can I take ibuprofen with my new prescription?');
    const answer = await careTeamReplies('Yes, with food. Call us if the pain continues.', inbound);

    const send = await waitFor('the send to WhatsApp', async () => graph.sends.find((s) => (s.body['text'] as Json | undefined)?.['body'] === 'Yes, with food. Call us if the pain continues.'));
    expect(send.to).toBe(DEMO_WA_ID);
    expect(send.body).toMatchObject({ type: 'text', context: { message_id: wamid } });

    const done = await waitFor('read written back onto the reply', async () => {
      const c = await fhirGet(`Communication/${String(answer.id)}`);
      return delivery(c)['status'] === 'read' ? c : undefined;
    });
    expect(done).toMatchObject({ status: 'completed', sent: expect.any(String), received: expect.any(String) });
    expect(delivery(done)).toMatchObject({ status: 'read', 'provider-message-id': send.wamid, 'read-at': expect.any(String) });

    // Sent exactly once, although every write-back made a new version that was notified again.
    const history = await fhirGet(`Communication/${String(answer.id)}/_history`);
    expect((history.entry as Json[]).length).toBeGreaterThanOrEqual(4);
    expect(graph.sends.filter((s) => s.wamid === send.wamid || (s.body['text'] as Json | undefined)?.['body'] === 'Yes, with food. Call us if the pain continues.')).toHaveLength(1);

    // The outbound delivery is in the admin API like any other; the patient's own Communication never became one.
    const m = await gw!.admin(`/admin/messages?channel=ehr-replies&source_id=${encodeURIComponent(`Communication/${String(answer.id)}`)}`);
    expect(m.status).toBe(200);
    expect((await m.json()) as Json).toMatchObject({ deliveries: [{ destination: 'whatsapp', state: 'delivered' }] });
    expect(await gw!.app.internals.store!.findMessage('ehr-replies', `Communication/${String(inbound.id)}`)).toBeFalsy();
  });

  it('a send WhatsApp refuses is dead-lettered and the reply becomes not-done with the Switchboard code and reason', async () => {
    await patientWrites('Are you open on Saturday?');
    graph.inject({ kind: 'error', httpStatus: 400, code: 131026, message: 'Message undeliverable' });
    const answer = await careTeamReplies('Yes, from 9 to 12.');
    const failed = await waitFor('failed written back', async () => {
      const c = await fhirGet(`Communication/${String(answer.id)}`);
      return c.status === 'not-done' ? c : undefined;
    });
    expect(failed).toMatchObject({ statusReason: { coding: [{ system: OUTBOUND_ERROR_CODE_SYSTEM, code: 'WHATSAPP_RECIPIENT_UNAVAILABLE' }], text: expect.any(String) } });
    expect(JSON.stringify(failed.statusReason)).not.toContain('Yes, from 9 to 12.');
    expect(delivery(failed).status).toBe('failed');
  });
});
