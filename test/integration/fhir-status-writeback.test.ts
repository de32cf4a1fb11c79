/**
 * Statuses back to the EHR against the real FHIR sandbox: sent / delivered / read / failed are
 * written onto the originating Communication conditionally (If-Match with the version read; a
 * real 412 from a concurrent write is re-read and re-applied), idempotently (a repeated status
 * makes no new version) and in order (a late `sent` after `read` changes nothing).
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import type { OutboundStatus, OutboundStatusEvent } from '../../src/core/outbound.js';
import { FhirRestClient } from '../../src/fhir/fhir-rest-client.js';
import {
  OUTBOUND_DELIVERY_EXTENSION,
  OUTBOUND_ERROR_CODE_SYSTEM,
  createStatusWriteBack,
  writeBackStatus,
} from '../../src/fhir/communication-status-writeback.js';
import { validateFhirResource } from '../../src/fhir/validate-resource.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { operationOutcome, startFaultProxy, type Fault } from '../support/fault-proxy.js';

const logger = createLogger({ level: 'silent' });
let sandbox: FhirSandbox;
let client: FhirRestClient;
let seq = 0;

type Json = Record<string, unknown>;

async function fhir(method: string, path: string, body?: unknown): Promise<Json> {
  const res = await fetch(`${sandbox.baseUrl}/${path}`, { method, headers: { 'content-type': 'application/fhir+json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
  expect(res.ok).toBe(true);
  return (await res.json()) as Json;
}

async function reply(resourceType = 'Communication'): Promise<Json> {
  return fhir('POST', resourceType, {
    resourceType,
    status: resourceType === 'Communication' ? 'in-progress' : 'active',
    recipient: [{ reference: 'Patient/p1' }],
    payload: [{ contentString: 'Your results are ready.' }],
  });
}

function event(resource: Json, status: OutboundStatus): OutboundStatusEvent {
  return {
    deliveryId: 'd1',
    channelId: 'ehr-replies',
    destination: 'whatsapp',
    origin: { resource_type: resource.resourceType as 'Communication', id: String(resource.id), version_id: String((resource.meta as Json).versionId), base_url: sandbox.baseUrl },
    correlationId: 'c1',
    status,
    seq: ++seq,
  };
}

const sent: OutboundStatus = { status: 'sent', provider_message_id: 'wamid.OUT1', at: '2026-03-01T12:00:01.000Z' };
const delivered: OutboundStatus = { status: 'delivered', provider_message_id: 'wamid.OUT1', at: '2026-03-01T12:00:05.000Z' };
const read: OutboundStatus = { status: 'read', provider_message_id: 'wamid.OUT1', at: '2026-03-01T12:03:00.000Z' };

function delivery(resource: Json): Record<string, unknown> {
  const ext = ((resource.extension as Json[] | undefined) ?? []).find((e) => e.url === OUTBOUND_DELIVERY_EXTENSION);
  return Object.fromEntries(((ext?.extension as Json[] | undefined) ?? []).map((e) => [e.url, e.valueCode ?? e.valueDateTime ?? e.valueString]));
}

beforeAll(async () => {
  sandbox = await startFhirSandbox({ port: 0 });
  client = new FhirRestClient({ baseUrl: sandbox.baseUrl, timeoutMs: 5000 });
});

afterAll(async () => {
  await sandbox?.close();
});

describe('status write-back', () => {
  it('sent, delivered, read: completed with sent, received and the read time; every version valid', async () => {
    const c = await reply();
    const listener = createStatusWriteBack({ client, logger });
    await listener.onStatus(event(c, sent));
    let now = await fhir('GET', `Communication/${String(c.id)}`);
    expect(now).toMatchObject({ status: 'completed', sent: sent.at });
    expect(delivery(now)).toEqual({ status: 'sent', at: sent.at, 'provider-message-id': 'wamid.OUT1' });

    await listener.onStatus(event(c, delivered));
    await listener.onStatus(event(c, read));
    now = await fhir('GET', `Communication/${String(c.id)}`);
    expect(now).toMatchObject({ status: 'completed', sent: sent.at, received: delivered.at });
    expect(delivery(now)).toEqual({ status: 'read', at: read.at, 'provider-message-id': 'wamid.OUT1', 'read-at': read.at });
    expect(validateFhirResource(now as never)).toEqual({ ok: true });
  });

  it('is idempotent and never moves backwards: a repeated or late status makes no new version', async () => {
    const c = await reply();
    expect(await writeBackStatus(event(c, delivered), { client, logger })).toBe('updated');
    const after = await fhir('GET', `Communication/${String(c.id)}`);
    expect(await writeBackStatus(event(c, delivered), { client, logger })).toBe('unchanged');
    expect(await writeBackStatus(event(c, sent), { client, logger })).toBe('unchanged');
    const history = await fhir('GET', `Communication/${String(c.id)}/_history`);
    expect((await fhir('GET', `Communication/${String(c.id)}`)).meta).toEqual(after.meta);
    expect(history.entry).toHaveLength(2);
    expect(delivery(after).status).toBe('delivered');
  });

  it('failed: not-done with statusReason carrying the Switchboard code and the PHI-free reason', async () => {
    const c = await reply();
    await writeBackStatus(event(c, sent), { client, logger });
    const failed: OutboundStatus = {
      status: 'failed',
      provider_message_id: 'wamid.OUT1',
      at: '2026-03-01T12:00:09.000Z',
      error: { code: 'WHATSAPP_WINDOW_CLOSED', provider_code: '131047', reason: 'More than 24 hours since the patient last wrote: a template is required.' },
    };
    await writeBackStatus(event(c, failed), { client, logger });
    const now = await fhir('GET', `Communication/${String(c.id)}`);
    expect(now).toMatchObject({
      status: 'not-done',
      statusReason: {
        coding: [{ system: OUTBOUND_ERROR_CODE_SYSTEM, code: 'WHATSAPP_WINDOW_CLOSED', display: 'provider code 131047' }],
        text: 'More than 24 hours since the patient last wrote: a template is required.',
      },
    });
    // Terminal: a late delivered changes nothing.
    expect(await writeBackStatus(event(c, delivered), { client, logger })).toBe('unchanged');
  });

  it('writes with If-Match: a concurrent edit (a real 412) is re-read and the status re-applied over it', async () => {
    const c = await reply();
    let interfered = false;
    const racing = new (class extends FhirRestClient {
      override async update<T extends { resourceType: string; id: string }>(resource: T, ifMatch: string | undefined, signal?: AbortSignal) {
        if (!interfered) {
          interfered = true;
          // A clinician edits the Communication between our read and our write.
          const current = await fhir('GET', `Communication/${resource.id}`);
          await fhir('PUT', `Communication/${resource.id}`, { ...current, note: [{ text: 'Called the patient as well.' }] });
        }
        return super.update(resource, ifMatch, signal);
      }
    })({ baseUrl: sandbox.baseUrl, timeoutMs: 5000 });
    expect(await writeBackStatus(event(c, sent), { client: racing, logger })).toBe('updated');
    const now = await fhir('GET', `Communication/${String(c.id)}`);
    expect(now).toMatchObject({ status: 'completed', note: [{ text: 'Called the patient as well.' }] });
    expect(delivery(now).status).toBe('sent');
  });

  it('a stale If-Match is refused by the server as FHIR_VERSION_CONFLICT (retryable)', async () => {
    const c = await reply();
    await fhir('PUT', `Communication/${String(c.id)}`, { ...c, note: [{ text: 'edited' }] });
    await expect(client.update({ ...(c as { resourceType: string; id: string }) }, String((c.meta as Json).versionId))).rejects.toMatchObject({ code: 'FHIR_VERSION_CONFLICT', disposition: 'retryable' });
  });

  it('gives up, logging codes only, when the Communication is gone (404): later statuses are not blocked for ever; an unreachable EHR is retried', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) });
    const log = createLogger({ level: 'info', destination: sink });
    const gone = { resourceType: 'Communication', id: 'never-there', meta: { versionId: '1' } };
    await expect(createStatusWriteBack({ client, log: () => log }).onStatus(event(gone, sent))).resolves.toBeUndefined();
    expect(lines.join('')).toMatch(/"code":"FHIR_HTTP_PERMANENT".*"http_status":404/);
    expect(lines.join('')).not.toContain('never-there');
    const down = new FhirRestClient({ baseUrl: 'http://127.0.0.1:9/fhir/R4', timeoutMs: 2000 });
    await expect(createStatusWriteBack({ client: down }).onStatus({ ...event(gone, sent), origin: { ...event(gone, sent).origin, base_url: 'http://127.0.0.1:9/fhir/R4' } })).rejects.toMatchObject({ code: 'FHIR_NETWORK', disposition: 'retryable' });
  });

  it('an EHR answering 503 (with Retry-After) or an HTML error page to the update is retried later, and the status then lands once', async () => {
    const proxy = await startFaultProxy(sandbox.baseUrl);
    try {
      const viaProxy = new FhirRestClient({ baseUrl: proxy.url, timeoutMs: 5000 });
      const c = await reply();
      const listener = createStatusWriteBack({ client: viaProxy });
      const origin = { ...event(c, sent).origin, base_url: proxy.url };
      let puts = 0;
      const busy: Fault = { kind: 'respond', status: 503, headers: { 'retry-after': '7' }, body: operationOutcome('transient', 'busy') };
      const htmlPage: Fault = { kind: 'respond', status: 502, headers: { 'content-type': 'text/html' }, body: '<html>Bad gateway</html>' };
      proxy.setRule((req) => (req.method === 'PUT' && ++puts <= 2 ? (puts === 1 ? busy : htmlPage) : { kind: 'pass' }));
      await expect(listener.onStatus({ ...event(c, sent), origin })).rejects.toMatchObject({ code: 'FHIR_HTTP_RETRYABLE', retryAfterMs: 7000 });
      await expect(listener.onStatus({ ...event(c, sent), origin })).rejects.toMatchObject({ code: 'FHIR_HTTP_RETRYABLE', details: { http_status: 502 } });
      await listener.onStatus({ ...event(c, sent), origin });
      const now = await fhir('GET', `Communication/${String(c.id)}`);
      expect(delivery(now).status).toBe('sent');
      expect(((await fhir('GET', `Communication/${String(c.id)}/_history`)).entry as Json[]).length).toBe(2);
    } finally {
      await proxy.close();
    }
  });

  it('CommunicationRequest: completed once sent; a failure keeps its status and says why', async () => {
    const r = await reply('CommunicationRequest');
    await writeBackStatus(event(r, sent), { client, logger });
    expect(await fhir('GET', `CommunicationRequest/${String(r.id)}`)).toMatchObject({ status: 'completed' });
    const r2 = await reply('CommunicationRequest');
    await writeBackStatus(event(r2, { status: 'failed', at: '2026-03-01T12:00:09.000Z', error: { code: 'WHATSAPP_NO_CONVERSATION', reason: 'The patient never wrote on WhatsApp.' } }), { client, logger });
    expect(await fhir('GET', `CommunicationRequest/${String(r2.id)}`)).toMatchObject({ status: 'active', statusReason: { text: 'The patient never wrote on WhatsApp.' } });
  });
});
