/**
 * fhir_poll against the real FHIR sandbox (Medplum's router and repository over HTTP): the care
 * team's Communications to a Patient become outbound canonical messages; the Communications
 * Switchboard itself writes for patient messages (through the real fhir_r4 destination and the
 * shipped mapping) never do; the cursor is durable, moves only after a durable emit, and handles
 * resources sharing one lastUpdated instant across page boundaries (followed by `next` links).
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { PollingContext, SourceCursorStore, SourceInstance } from '../../src/connectors/types.js';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { createLogger } from '../../src/core/logger.js';
import { loadMapping } from '../../src/mapping/jsonata-mapping.js';
import { fhirR4ConfigSchema, fhirR4Destination } from '../../src/connectors/destinations/fhir-r4.js';
import { fhirPollConfigSchema, fhirPollSource } from '../../src/connectors/sources/fhir-poll.js';
import { outboundIdempotencyKey } from '../../src/core/outbound.js';
import { DEMO_PATIENT_PHONE, startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { syncResult } from '../support/sync-parse.js';
import { passAll, startFaultProxy } from '../support/fault-proxy.js';

const logger = createLogger({ level: 'silent' });
const INBOUND_MAPPING = fileURLToPath(new URL('../../mappings/whatsapp-to-communication.jsonata', import.meta.url));
const PARSE_CTX = { channelId: 'ehr-replies', receivedAt: new Date('2026-03-01T12:00:00.000Z') };

let sandbox: FhirSandbox;
let patientId: string;

type Json = Record<string, unknown>;

async function fhir(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${sandbox.baseUrl}/${path}`, {
    method,
    headers: { 'content-type': 'application/fhir+json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Json) };
}

function reply(text: string, extra: Json = {}): Json {
  return {
    resourceType: 'Communication',
    status: 'in-progress',
    recipient: [{ reference: `Patient/${patientId}` }],
    sender: { reference: 'Practitioner/dr-who', display: 'Dr Example' },
    payload: [{ contentString: text }],
    ...extra,
  };
}

async function create(resource: Json): Promise<Json> {
  const res = await fhir('POST', String(resource.resourceType), resource);
  expect(res.status).toBe(201);
  return res.body;
}

function memoryCursor(): SourceCursorStore & { values: Map<string, string>; reads: Map<string, number> } {
  const values = new Map<string, string>();
  const reads = new Map<string, number>();
  return {
    values,
    reads,
    get: async (k) => (reads.set(k, (reads.get(k) ?? 0) + 1), values.get(k) ?? null),
    set: async (k, v) => void values.set(k, v),
  };
}

/**
 * Runs one whole polling round and returns what it emitted, parsed. A round starts by reading the
 * cursor of the first resource type: the round is over when the next one starts.
 */
async function pollOnce(source: SourceInstance, cursor: ReturnType<typeof memoryCursor>, emitHook?: (n: number) => void, firstType = 'Communication'): Promise<CanonicalMessage[]> {
  const abort = new AbortController();
  const raws: Buffer[] = [];
  const key = `fhir:${firstType}`;
  const before = cursor.reads.get(key) ?? 0;
  const ctx: PollingContext = {
    signal: abort.signal,
    logger,
    cursor,
    emit: async (raw) => {
      emitHook?.(raws.length);
      raws.push(raw);
    },
  };
  const done = source.poll!(ctx);
  await vi.waitFor(() => {
    if ((cursor.reads.get(key) ?? 0) < before + 2) throw new Error('the round is not over');
  }, { timeout: 20_000, interval: 5 });
  abort.abort();
  await done;
  return raws.flatMap((raw) => syncResult(source.parse(raw, PARSE_CTX)).messages);
}

function pollSource(overrides: Json = {}): SourceInstance {
  const config = fhirPollConfigSchema.parse({ kind: 'fhir_poll', base_url: sandbox.baseUrl, start_at: 'beginning', interval_ms: 10, ...overrides });
  return fhirPollSource.create(config, { channelId: 'ehr-replies' });
}

beforeAll(async () => {
  sandbox = await startFhirSandbox({ port: 0, seed: true });
  const patients = await fhir('GET', 'Patient');
  patientId = String(((patients.body.entry as Json[])[0]!.resource as Json).id);
});

afterAll(async () => {
  await sandbox?.close();
});

describe('fhir_poll', () => {
  it('turns a care-team Communication to a Patient into one outbound message; never the Communications Switchboard writes for patient messages', async () => {
    // A patient message, written by the real inbound path (fhir_r4 destination, shipped mapping).
    const inbound = fhirR4Destination.create(fhirR4ConfigSchema.parse({ kind: 'fhir_r4', name: 'ehr', mapping: 'x.jsonata', base_url: sandbox.baseUrl }), {
      channelId: 'whatsapp-to-ehr',
      logger,
      mapping: await loadMapping(INBOUND_MAPPING),
    });
    const wamid = 'wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQ0NOLOOP=';
    const delivered = await inbound.deliver(
      canonicalMessageSchema.parse({
        schema_version: 1,
        source: { kind: 'whatsapp_cloud' },
        id: wamid,
        dedup_key: wamid,
        kind: 'text',
        sent_at: '2026-03-01T09:15:00Z',
        received_at: '2026-03-01T09:15:02Z',
        sender: { phone: DEMO_PATIENT_PHONE, platform_id: DEMO_PATIENT_PHONE.slice(1) },
        conversation_id: DEMO_PATIENT_PHONE.slice(1),
        text: 'Can I take ibuprofen with my new prescription?',
      }),
      { deliveryId: 'd1', messageId: wamid, attempt: 1, signal: new AbortController().signal, logger, now: new Date() },
    );
    const inboundId = String(delivered.detail.resource_id);
    // Even if an EHR workflow reopened it and addressed it to the Patient, it is never sent back.
    const stored = (await fhir('GET', `Communication/${inboundId}`)).body;
    expect((await fhir('PUT', `Communication/${inboundId}`, { ...stored, status: 'in-progress', recipient: [{ reference: `Patient/${patientId}` }] })).status).toBe(200);

    // Not triggers: completed, to a Practitioner, no payload.
    await create(reply('already sent', { status: 'completed' }));
    await create(reply('to a colleague', { recipient: [{ reference: 'Practitioner/dr-who' }] }));
    // The care team's reply, answering the patient's Communication.
    const answer = await create(reply('Yes, with food.', { inResponseTo: [{ reference: `Communication/${inboundId}` }] }));

    const out = await pollOnce(pollSource(), memoryCursor());
    expect(out).toHaveLength(1);
    const msg = out[0]!;
    expect(canonicalMessageSchema.parse(msg)).toEqual(msg);
    expect(msg).toMatchObject({
      kind: 'text',
      author_role: 'staff',
      text: 'Yes, with food.',
      conversation_id: `Patient/${patientId}`,
      id: `Communication/${String(answer.id)}`,
      source: { kind: 'fhir_poll', endpoint_id: sandbox.baseUrl },
      // The wamid of the patient message it answers, resolved from the Switchboard-made Communication.
      reply_to: { id: wamid },
      ehr: { resource_type: 'Communication', id: answer.id, version_id: (answer.meta as Json).versionId, base_url: sandbox.baseUrl },
    });
    expect(msg.dedup_key).toBe(outboundIdempotencyKey({ resource_type: 'Communication', id: String(answer.id), version_id: 'any', base_url: sandbox.baseUrl }));
    expect(msg.ehr?.resource).toMatchObject({ resourceType: 'Communication', id: answer.id, payload: [{ contentString: 'Yes, with food.' }] });
  });

  it('keeps a durable cursor: a restart repeats nothing, a later version keeps the same dedup key, new replies follow', async () => {
    const cursor = memoryCursor();
    const first = await create(reply('first'));
    const before = await pollOnce(pollSource({ start_at: new Date(Date.parse(String((first.meta as Json).lastUpdated)) - 1).toISOString() }), cursor);
    expect(before.map((m) => m.text)).toEqual(['first']);

    // A status write-back makes a new version that still matches the search: same dedup key.
    const current = (await fhir('GET', `Communication/${String(first.id)}`)).body;
    await fhir('PUT', `Communication/${String(first.id)}`, { ...current, note: [{ text: 'edited' }] });
    await create(reply('second'));
    const after = await pollOnce(pollSource(), cursor);
    expect(after.map((m) => m.text)).toEqual(['first', 'second']);
    expect(after[0]!.dedup_key).toBe(before[0]!.dedup_key);
    expect(after[0]!.ehr?.version_id).not.toBe(before[0]!.ehr?.version_id);

    // Nothing new: a restart on the same cursor emits nothing.
    expect(await pollOnce(pollSource(), cursor)).toEqual([]);
  });

  it('moves the cursor only after the emit is durable: a failed emit is retried next round', async () => {
    const cursor = memoryCursor();
    const start = new Date().toISOString();
    await create(reply('one'));
    await create(reply('two'));
    let fail = true;
    const source = pollSource({ start_at: start });
    const first = await pollOnce(source, cursor, (n) => {
      if (n === 1 && fail) {
        fail = false;
        throw new Error('store unavailable');
      }
    });
    const later = await pollOnce(source, cursor);
    // 'two' failed once and came again in a later round; nothing twice, nothing lost.
    expect(fail).toBe(false);
    expect([...first, ...later].map((m) => m.text)).toEqual(['one', 'two']);
  });

  it('an EHR answering 503, or not answering at all, loses nothing: the cursor stays, a later round finds the reply', async () => {
    const proxy = await startFaultProxy(sandbox.baseUrl);
    try {
      const cursor = memoryCursor();
      const start = new Date().toISOString();
      await create(reply('while the EHR was down'));
      const viaProxy = (o: Json = {}) => pollSource({ base_url: proxy.url, start_at: start, timeout_ms: 500, ...o });
      proxy.setRule(() => ({ kind: 'respond', status: 503, body: '' }));
      expect(await pollOnce(viaProxy(), cursor)).toEqual([]);
      proxy.setRule(() => ({ kind: 'hang' }));
      expect(await pollOnce(viaProxy(), cursor)).toEqual([]);
      expect(JSON.parse(cursor.values.get('fhir:Communication')!)).toEqual({ ts: start, ids: [] });
      proxy.setRule(passAll);
      expect((await pollOnce(viaProxy(), cursor)).map((m) => m.text)).toEqual(['while the EHR was down']);
    } finally {
      await proxy.close();
    }
  });

  it('polls CommunicationRequests when asked to', async () => {
    const start = new Date().toISOString();
    await create({
      resourceType: 'CommunicationRequest',
      status: 'active',
      recipient: [{ reference: `Patient/${patientId}` }],
      payload: [{ contentString: 'Please book your follow-up visit.' }],
    });
    const out = await pollOnce(pollSource({ start_at: start, resource_types: ['Communication', 'CommunicationRequest'] }), memoryCursor());
    expect(out.map((m) => [m.ehr?.resource_type, m.text])).toEqual([['CommunicationRequest', 'Please book your follow-up visit.']]);
  });
  it('pages through resources sharing one lastUpdated instant across page boundaries, each exactly once', async () => {
    const start = new Date(Date.now() + 60_000);
    vi.useFakeTimers({ toFake: ['Date'], now: start });
    try {
      // All seven share one instant (Date is frozen, the server is in this process).
      for (let i = 0; i < 7; i++) await create(reply(`tie ${i}`));
    } finally {
      vi.useRealTimers();
    }
    const out = await pollOnce(pollSource({ start_at: start.toISOString(), page_size: 3 }), memoryCursor());
    expect(out.map((m) => m.text).sort()).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `tie ${i}`));
  });
});
