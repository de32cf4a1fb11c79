/**
 * End to end through the whole gateway: a signed WhatsApp webhook on the routing channel
 * (channels/whatsapp-care-routing.yaml, mappings from the repository) -> store -> queues ->
 * FHIR sandbox (every message) and HL7 v2 over MLLP to in-test partners: the lab is @medplum/hl7's
 * MLLP server, the insurer our sandbox peer (which answers RPA^I08).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEr7, textOf, ftToText, valueOf } from '../../src/hl7/er7.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startMllpSandbox, type MllpSandbox } from '../../src/sandbox/mllp-sandbox.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { startMedplumPeer, type MedplumPeer } from '../support/medplum-hl7-peer.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { DEMO_WA_ID, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';
import { whatsappEvent } from '../../src/sandbox/whatsapp-sample-events.js';

const CHANNEL = 'whatsapp-care-routing';
const WEBHOOK = `/webhooks/${CHANNEL}`;
const SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

interface DeliveryView {
  id: string;
  state: string;
  destination: string;
  outcome: Record<string, unknown> | null;
}

function listReplyEvent(wamid: string, id: string, title: string): object {
  return whatsappEvent({ wamid }, { type: 'interactive', interactive: { type: 'list_reply', list_reply: { id, title, description: 'Questions about a lab order' } } });
}

describe('gateway: WhatsApp -> EHR (FHIR) + lab and insurer (HL7 v2 over MLLP)', () => {
  let fhir: FhirSandbox;
  let lab: MedplumPeer;
  let insurer: MllpSandbox;
  let gw: TestGateway;
  let dir: string;
  const insurerTexts: string[] = [];

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    lab = await startMedplumPeer();
    insurer = await startMllpSandbox({ role: 'insurer', onMessage: (t) => insurerTexts.push(t) });
    dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-hl7-e2e-'));
    const channel = (await readFile(path.join(repoRoot, 'channels', `${CHANNEL}.yaml`), 'utf8')).replaceAll('../mappings/', `${path.join(repoRoot, 'mappings')}/`);
    await writeFile(path.join(dir, `${CHANNEL}.yaml`), channel);
    gw = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redisUrl(),
      fhirBaseUrl: fhir.baseUrl,
      channelsDir: dir,
      env: { LAB_MLLP_URL: lab.url, INSURER_MLLP_URL: insurer.url },
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await lab?.close();
    await insurer?.close();
    await fhir?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function settledDeliveries(wamid: string, count: number): Promise<DeliveryView[]> {
    return waitFor(
      `${count} settled deliveries of ${wamid}`,
      async () => {
        const r = await gw.admin(`/admin/messages?channel=${CHANNEL}&source_id=${encodeURIComponent(wamid)}`);
        if (r.status !== 200) return undefined;
        const m = (await r.json()) as { deliveries: DeliveryView[] };
        return m.deliveries.length === count && m.deliveries.every((d) => d.state !== 'pending') ? m.deliveries : undefined;
      },
      30_000,
    );
  }

  async function communications(wamid: string): Promise<unknown[]> {
    const r = await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`${SYSTEM}|${wamid}`)}`);
    return ((await r.json()) as { entry?: unknown[] }).entry ?? [];
  }

  it('a menu choice "lab" reaches the lab as ORM^O01 AND the EHR as a Communication', async () => {
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, listReplyEvent(wamid, 'lab', 'Lab results'))).status).toBe(200);
    const deliveries = await settledDeliveries(wamid, 2);
    const by = Object.fromEntries(deliveries.map((d) => [d.destination, d]));
    expect(Object.keys(by).sort()).toEqual(['ehr', 'lab']);
    expect(by['ehr']!.state).toBe('delivered');
    expect(by['lab']!.state).toBe('delivered');
    const outcome = by['lab']!.outcome!;
    expect(outcome).toMatchObject({ ack_code: 'AA', message_type: 'ORM^O01^ORM_O01', ack_message_type: 'ACK^O01^ACK' });
    expect(outcome['msa_2']).toBe(outcome['control_id']);
    const receipts = lab.receipts.filter((r) => r.controlId === outcome['control_id']);
    expect(receipts).toHaveLength(1);
    const segments = parseEr7(receipts[0]!.text).segments;
    expect(segments.map((s) => s.name)).toEqual(['MSH', 'PID', 'ORC', 'OBR', 'NTE']);
    expect(valueOf(segments[0], 5)).toBe('LIS');
    expect(textOf(segments[1], 3, 1)).toBe(DEMO_WA_ID);
    expect(ftToText(valueOf(segments[4], 3))).toBe('Lab results');
    expect(await communications(wamid)).toHaveLength(1);
  });

  it('a plain message reaches only the EHR', async () => {
    const before = lab.receipts.length + insurer.received.length;
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid, text: 'Can I move my appointment to Friday?' }))).status).toBe(200);
    const deliveries = await settledDeliveries(wamid, 1);
    expect(deliveries.map((d) => [d.destination, d.state])).toEqual([['ehr', 'delivered']]);
    expect(await communications(wamid)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(lab.receipts.length + insurer.received.length).toBe(before);
  });

  it('an insurance question reaches the insurer as RQA^I08 (answered RPA^I08) and the EHR', async () => {
    const wamid = newWamid();
    const text = 'Does my insurance need prior auth for the MRI? | thanks 😀';
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid, text }))).status).toBe(200);
    const deliveries = await settledDeliveries(wamid, 2);
    const insurerDelivery = deliveries.find((d) => d.destination === 'insurer')!;
    expect(insurerDelivery.state).toBe('delivered');
    expect(insurerDelivery.outcome).toMatchObject({ ack_code: 'AA', message_type: 'RQA^I08^RQA_I08', ack_message_type: 'RPA^I08^RPA_I08' });
    expect(insurer.received.filter((r) => r.controlId === insurerDelivery.outcome!['control_id'])).toHaveLength(1);
    const sent = insurerTexts.map((t) => parseEr7(t).segments).find((s) => valueOf(s[0], 10) === insurerDelivery.outcome!['control_id'])!;
    expect(ftToText(valueOf(sent.find((s) => s.name === 'NTE'), 3))).toBe(text);
    expect(deliveries.find((d) => d.destination === 'ehr')!.state).toBe('delivered');
  });

  it('AE from the lab dead-letters the lab delivery with the ERR details (the EHR still gets it)', async () => {
    lab.reply = () => ({ code: 'AE', err: 'ERR||OBR^1^4|103^Table value not found^HL70357|E' });
    try {
      const wamid = newWamid();
      expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid, text: 'Where are my lab results?' }))).status).toBe(200);
      const deliveries = await settledDeliveries(wamid, 2);
      const labDelivery = deliveries.find((d) => d.destination === 'lab')!;
      expect(labDelivery.state).toBe('dead_lettered');
      const full = (await (await gw.admin(`/admin/deliveries/${labDelivery.id}`)).json()) as { history: { result: string; errorCode: string | null; detail: Record<string, unknown> }[] };
      expect(full.history.map((h) => [h.result, h.errorCode])).toEqual([['dead_lettered', 'HL7_ACK_AE']]);
      expect(full.history[0]!.detail).toMatchObject({ ack_code: 'AE', err: [{ location: 'OBR^1^4', code: '103', severity: 'E' }] });
      expect(deliveries.find((d) => d.destination === 'ehr')!.state).toBe('delivered');
    } finally {
      lab.reply = () => ({ code: 'AA' });
    }
  });

  it('AR 203 from the lab pauses the lab destination; after the fix and a resume it is delivered exactly once', async () => {
    lab.reply = () => ({ code: 'AR', err: 'ERR||MSH^1^12|203^Unsupported version id^HL70357|E' });
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}${WEBHOOK}`, textEvent({ wamid, text: 'Is my blood test ready?' }))).status).toBe(200);
    const paused = await waitFor('the lab destination paused', async () => {
      const r = (await (await gw.admin('/admin/destinations')).json()) as { destinations: { channel: string; destination: string; paused: boolean }[] };
      return r.destinations.find((d) => d.channel === CHANNEL && d.destination === 'lab' && d.paused);
    });
    expect(paused).toBeTruthy();
    const r = await gw.admin(`/admin/messages?channel=${CHANNEL}&source_id=${encodeURIComponent(wamid)}`);
    const pending = ((await r.json()) as { deliveries: DeliveryView[] }).deliveries.find((d) => d.destination === 'lab')!;
    expect(pending.state).toBe('pending'); // a pause never dead-letters the message

    lab.reply = () => ({ code: 'AA' });
    expect((await gw.admin(`/admin/destinations/${CHANNEL}/lab/resume`, { method: 'POST', body: '{}' })).status).toBe(200);
    const deliveries = await settledDeliveries(wamid, 2);
    const labDelivery = deliveries.find((d) => d.destination === 'lab')!;
    expect(labDelivery.state).toBe('delivered');
    const controlId = labDelivery.outcome!['control_id'];
    const accepted = lab.receipts.filter((x) => x.controlId === controlId);
    expect(accepted.length).toBeGreaterThanOrEqual(2); // refused, then accepted: always the same MSH-10
    expect(new Set(accepted.map((x) => x.controlId)).size).toBe(1);
  });
});

