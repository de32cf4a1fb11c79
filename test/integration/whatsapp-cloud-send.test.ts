/**
 * whatsapp_cloud_send through the whole pipeline (in-process gateway, real PostgreSQL, Redis when
 * installed, the real FHIR sandbox) against the sandbox Graph API (src/sandbox/graph-api-sandbox.ts),
 * which answers in Meta's formats, injects faults and posts signed status webhooks back to the
 * patient's whatsapp_cloud channel. The care team's reply comes in through a stand-in for the
 * EHR trigger (test/support/outbound.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { capturedIo } from '../support/cli-io.js';
import type { GraphSandbox } from '../../src/sandbox/graph-api-sandbox.js';
import type { DeliveryRecord } from '../../src/store/message-store.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { EHR_REPLY_TOKEN, RecordingStatusListener, deliveryOf as settledDelivery, inboundWhatsAppChannel, postEhrReply, replyChannel, startReplyGraphSandbox, writeReplyMappings } from '../support/outbound.js';
import { DEMO_WA_ID, TEST_APP_SECRET, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const PHONE_NUMBER_ID = '100555000000002';

function whatsappDestination(mapping: string, extra: string[] = []): string {
  return [
    '  - name: whatsapp',
    '    kind: whatsapp_cloud_send',
    `    mapping: ${mapping}`,
    '    phone_number_id: ${WHATSAPP_PHONE_NUMBER_ID}',
    '    access_token: ${WHATSAPP_ACCESS_TOKEN}',
    '    graph_url: ${GRAPH_URL}',
    '    timeout_ms: 1000',
    '    reconcile_ms: 4000',
    '    pair_interval_ms: 0',
    '    retry: { attempts: 8, initial_delay_ms: 100, max_delay_ms: 1000 }',
    '    circuit_breaker: { enabled: false }',
    ...extra,
  ].join('\n');
}

let dir: string;
let fhir: FhirSandbox;
let graph: GraphSandbox;
let gw: TestGateway | undefined;
let patientRef: string;
let databaseUrl: string;
const listener = new RecordingStatusListener();
let seq = 0;

const reply = (channel: string, text: string, extra: { phone?: string } = {}) => {
  const communication = `Communication/reply-${++seq}-${Date.now()}`;
  return postEhrReply(gw!.url, channel, { communication, patient: patientRef, text, ...extra }).then((r) => {
    expect(r.status).toBe(200);
    return communication;
  });
};

const deliveryOf = (channel: string, sourceId: string, settled?: (d: DeliveryRecord) => boolean) => settledDelivery(gw!, channel, sourceId, settled);

async function patientWrites(opts: { from?: string; timestamp?: number } = {}): Promise<string> {
  const wamid = newWamid();
  const r = await postWebhook(`${gw!.url}/webhooks/wa-in`, textEvent({ wamid, ...opts, text: 'When is my appointment?' }));
  expect(r.status).toBe(200);
  await deliveryOf('wa-in', wamid, (d) => d.state === 'delivered');
  return wamid;
}

const sendsTo = (digits: string) => graph.sends.filter((s) => s.to === digits);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-wa-send-'));
  const maps = await writeReplyMappings(dir);
  graph = await startReplyGraphSandbox(() => gw?.url);
  fhir = await startFhirSandbox({ port: 0, seed: true });
  await writeFile(path.join(dir, 'wa-in.yaml'), inboundWhatsAppChannel('wa-in'));
  await writeFile(path.join(dir, 'reply-text.yaml'), replyChannel('reply-text', whatsappDestination(maps.text)));
  await writeFile(path.join(dir, 'reply-auto.yaml'), replyChannel('reply-auto', whatsappDestination(maps.auto)));
  await writeFile(path.join(dir, 'reply-broken.yaml'), replyChannel('reply-broken', whatsappDestination(maps.broken)));
  await writeFile(path.join(dir, 'reply-paced.yaml'), replyChannel('reply-paced', whatsappDestination(maps.text).replace('pair_interval_ms: 0', 'pair_interval_ms: 1500')));
  databaseUrl = await createTestDatabase();
  gw = await startGateway({
    databaseUrl,
    redisUrl: redisUrl(),
    fhirBaseUrl: fhir.baseUrl,
    channelsDir: dir,
    outboundStatusListener: listener,
    env: { EHR_REPLY_TOKEN, GRAPH_URL: graph.url, WHATSAPP_ACCESS_TOKEN: 'sandbox-token', WHATSAPP_PHONE_NUMBER_ID: PHONE_NUMBER_ID },
  });
  // The patient writes first: delivered to the EHR with the demo Patient matched by phone.
  await patientWrites();
  const search = (await (await fetch(`${fhir.baseUrl}/Patient?phone=${encodeURIComponent(`+${DEMO_WA_ID}`)}`)).json()) as { entry: { resource: { id: string } }[] };
  patientRef = `Patient/${search.entry[0]!.resource.id}`;
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await graph?.close();
  await fhir?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('whatsapp_cloud_send', () => {
  it('sends a reply to the number the patient last wrote from, quoting their message, and passes sent, delivered, read on in order', async () => {
    const lastWamid = await patientWrites();
    const c = await reply('reply-text', 'Your appointment is on Monday at 9:00.');
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('delivered');
    expect(d.outcome).toMatchObject({ provider: 'whatsapp_cloud', via: 'sent', requests: 1, window_open: true, recipient_from: 'conversation' });
    const sent = graph.sends.filter((s) => s.wamid === d.outcome!['provider_message_id']);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.phoneNumberId).toBe(PHONE_NUMBER_ID);
    expect(sent[0]!.body).toMatchObject({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: DEMO_WA_ID,
      type: 'text',
      text: { body: 'Your appointment is on Monday at 9:00.', preview_url: false },
      context: { message_id: lastWamid },
    });
    const ledger = await gw!.app.internals.outbound!.get(d.id);
    expect(sent[0]!.callbackData).toBe(ledger!.callbackRef);
    await waitFor('read status', async () => listener.of(c).length === 3);
    expect(listener.of(c)).toEqual(['sent', 'delivered', 'read']);
    expect(listener.events.filter((e) => e.correlationId === c).map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(listener.events.find((e) => e.correlationId === c)!.origin).toMatchObject({ resource_type: 'Communication', id: c.split('/')[1] });
  });

  it('a listener that fails is called again: no status is lost or reordered', async () => {
    listener.failNext = 2;
    const c = await reply('reply-text', 'The listener will fail twice');
    expect((await deliveryOf('reply-text', c)).state).toBe('delivered');
    await waitFor('all three statuses', async () => listener.of(c).length === 3);
    expect(listener.of(c)).toEqual(['sent', 'delivered', 'read']);
    expect(listener.failNext).toBe(0);
  });

  it('statuses are recorded in order and only those moving forward are passed on (a late sent after read is not)', async () => {
    graph.inject({ kind: 'accept_silently' });
    const c = await reply('reply-text', 'Statuses out of order');
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('delivered');
    const send = graph.sends.find((s) => s.wamid === d.outcome!['provider_message_id'])!;
    await graph.postStatus(send, 'read');
    await graph.postStatus(send, 'sent');
    await graph.postStatus(send, 'read'); // Meta re-delivers a webhook: recorded once
    const recorded = await waitFor('two statuses', async () => {
      const all = await gw!.app.internals.outbound!.statuses(d.id);
      return all.length === 2 && all.every((x) => x.notified) ? all : undefined;
    });
    expect(recorded.map((x) => [x.seq, x.status.status, x.forward])).toEqual([
      [1, 'read', true],
      [2, 'sent', false],
    ]);
    expect(listener.of(c)).toEqual(['read']);
  });

  it('one EHR Communication is one message: the same reply posted again is not sent again', async () => {
    const c = await reply('reply-text', 'Only once, please.');
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('delivered');
    const r = await postEhrReply(gw!.url, 'reply-text', { communication: c, patient: patientRef, text: 'Only once, please. (edited)' });
    expect(r.status).toBe(200);
    await new Promise((res) => setTimeout(res, 300));
    const m = await gw!.app.internals.store!.findMessage('reply-text', c);
    expect(m!.deliveries).toHaveLength(1);
    expect(graph.sends.filter((s) => JSON.stringify(s.body).includes('Only once, please.'))).toHaveLength(1);
  });

  it('outside the 24-hour window a free-form reply is dead-lettered before Meta is called; a template goes', async () => {
    const stale = '15557654321';
    await patientWrites({ from: stale, timestamp: Math.floor(Date.now() / 1000) - 25 * 3600 });
    const before = sendsTo(stale).length;
    const c = await reply('reply-text', 'Free-form, too late', { phone: `+${stale}` });
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('dead_lettered');
    expect(d.lastErrorCode).toBe('WHATSAPP_WINDOW_CLOSED');
    expect(d.attempts).toBe(1);
    expect(sendsTo(stale).length).toBe(before);
    // The EHR hears of it: a failed status with the code, no provider id.
    await waitFor('failed status', async () => listener.of(c).length === 1);
    expect(listener.events.find((e) => e.correlationId === c)!.status).toMatchObject({ status: 'failed', error: { code: 'WHATSAPP_WINDOW_CLOSED' } });

    const t = await reply('reply-auto', 'We have news for you', { phone: `+${stale}` });
    const td = await deliveryOf('reply-auto', t);
    expect(td.state).toBe('delivered');
    expect(td.outcome).toMatchObject({ content_type: 'template', window_open: false });
    const body = graph.sends.find((s) => s.wamid === td.outcome!['provider_message_id'])!.body;
    expect(body).toMatchObject({ type: 'template', template: { name: 'care_team_reply', language: { code: 'en_US' }, components: [{ type: 'body', parameters: [{ type: 'text', text: 'your care team' }] }] } });
  });

  it('Meta\'s 131047 is the same permanent code; 130429 and 131056 are retried and the message is sent once', async () => {
    graph.inject({ kind: 'error', httpStatus: 400, code: 131047, message: '(#131047) Re-engagement message', details: 'Message failed to send because more than 24 hours have passed since the customer last replied to this number.' });
    const c = await reply('reply-text', 'Meta thinks the window is closed');
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('dead_lettered');
    expect(d.lastErrorCode).toBe('WHATSAPP_WINDOW_CLOSED');

    graph.inject(
      { kind: 'error', httpStatus: 400, code: 130429, message: '(#130429) Rate limit hit' },
      { kind: 'error', httpStatus: 400, code: 131056, message: '(#131056) (Business Account, Consumer Account) pair rate limit hit' },
    );
    const before = graph.sends.length;
    const r = await reply('reply-text', 'Throttled, then sent');
    const rd = await deliveryOf('reply-text', r);
    expect(rd.state).toBe('delivered');
    expect(rd.attempts).toBe(3);
    expect(graph.sends.length - before).toBe(1);
    const history = (await gw!.app.internals.store!.getDelivery(rd.id))!.history.map((h) => h.errorCode);
    expect(history).toEqual(['WHATSAPP_THROUGHPUT_LIMITED', 'WHATSAPP_PAIR_RATE_LIMITED', null]);
  });

  it('a 5xx is retried and the message sent once', async () => {
    graph.inject({ kind: 'error', httpStatus: 500, code: 131000, message: 'Something went wrong' });
    const c = await reply('reply-text', 'After a 500');
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('delivered');
    expect(d.attempts).toBe(2);
    expect(graph.sends.filter((s) => s.wamid === d.outcome!['provider_message_id'])).toHaveLength(1);
  });

  it('a timeout after Meta accepted the send is reconciled from the status webhook: delivered, sent once', async () => {
    graph.inject({ kind: 'accept_then_hang' });
    const before = graph.sends.length;
    const c = await reply('reply-text', 'The answer to this one is lost');
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('delivered');
    expect(d.outcome).toMatchObject({ via: 'reconciled', requests: 1 });
    expect(graph.sends.length - before).toBe(1);
    expect(d.outcome!['provider_message_id']).toBe(graph.sends.at(-1)!.wamid);
    const history = (await gw!.app.internals.store!.getDelivery(d.id))!.history.map((h) => h.errorCode);
    expect(history[0]).toBe('OUTBOUND_SEND_INTERRUPTED');
  });

  it('when nothing confirms an interrupted send it is dead-lettered as uncertain, never resent; only an explicit, audited replay resends', async () => {
    // Meta takes the message, the answer is lost, and no status webhook ever names it.
    graph.inject({ kind: 'accept_then_hang', statuses: false });
    const before = graph.sends.length;
    const c = await reply('reply-text', 'Did this reach the patient?');
    const d = await deliveryOf('reply-text', c);
    expect(d.state).toBe('dead_lettered');
    expect(d.lastErrorCode).toBe('OUTBOUND_SEND_UNCERTAIN');
    expect(graph.sends.length - before).toBe(1);
    // No failed status for the EHR: it is not known to have failed.
    expect(listener.of(c)).toEqual([]);

    // A plain replay reconciles again (nothing new) and does not resend.
    let r = await gw!.admin(`/admin/dead-letters/${d.id}/replay`, { method: 'POST', body: JSON.stringify({ reason: 'try again' }) });
    expect(r.status).toBe(202);
    const again = await deliveryOf('reply-text', c, (x) => x.state !== 'pending' && x.generation === 1);
    expect(again.lastErrorCode).toBe('OUTBOUND_SEND_UNCERTAIN');
    expect(graph.sends.length - before).toBe(1);

    // resend_uncertain on another code is refused.
    r = await gw!.admin(`/admin/dead-letters/00000000-0000-4000-8000-000000000000/replay`, { method: 'POST', body: JSON.stringify({ resend_uncertain: true }) });
    expect(r.status).toBe(409);

    // The operator's explicit choice (here with the CLI): sent again, once, and recorded in the audit trail.
    const io = capturedIo({ ADMIN_TOKEN: gw!.adminToken });
    expect(await runCli(['dlq', 'replay', d.id, '--resend-uncertain', '--url', gw!.url, '--no-wait'], io)).toBe(2);
    expect(io.err).toContain('--resend-uncertain needs --reason');
    expect(await runCli(['dlq', 'replay', d.id, '--resend-uncertain', '--reason', 'patient says nothing arrived', '--url', gw!.url, '--no-wait'], io)).toBe(0);
    const resent = await deliveryOf('reply-text', c, (x) => x.state !== 'pending' && x.generation === 2);
    expect(resent.state).toBe('delivered');
    expect(resent.outcome).toMatchObject({ via: 'resent_by_operator', requests: 2 });
    expect(graph.sends.length - before).toBe(2);
    const trail = (await (await gw!.admin(`/admin/audit?action=delivery.replayed&resource=${d.id}`)).json()) as { items: { detail: Record<string, unknown> }[] };
    expect(trail.items.map((e) => e.detail['resend_uncertain'] ?? false)).toEqual([true, false]);
  });

  it('two replies to the same patient from the same number are at least pair_interval_ms apart (Meta\'s pair rate)', async () => {
    const [a, b] = [await reply('reply-paced', 'First of two'), await reply('reply-paced', 'Second of two')];
    const [da, db] = [await deliveryOf('reply-paced', a), await deliveryOf('reply-paced', b)];
    expect([da.state, db.state]).toEqual(['delivered', 'delivered']);
    const at = [da, db].map((d) => graph.sends.find((s) => s.wamid === d.outcome!['provider_message_id'])!.at.getTime()).sort((x, y) => x - y);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(1400);
  });

  it('the ledger and the conversations hold no phone number, Patient reference, wamid or reply text in plaintext', async () => {
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const dump = async (table: string) => (await db.query(`SELECT * FROM ${table}`)).rows.map((row) => Object.values(row as Record<string, unknown>).map((v) => (Buffer.isBuffer(v) ? v.toString('latin1') : String(v))).join('|')).join('\n');
      const all = [await dump('outbound_sends'), await dump('outbound_statuses'), await dump('patient_conversations')].join('\n');
      expect(all.length).toBeGreaterThan(0);
      for (const secret of [DEMO_WA_ID, '15557654321', patientRef, patientRef.split('/')[1]!, graph.sends[0]!.wamid, 'Your appointment is on Monday']) expect(all).not.toContain(secret);
    } finally {
      await db.end();
    }
  });

  it('an operator\'s resend is one request: if it is interrupted too, it is reconciled, not sent a third time', async () => {
    graph.inject({ kind: 'accept_then_hang', statuses: false });
    const before = graph.sends.length;
    const c = await reply('reply-text', 'Uncertain twice');
    const d = await deliveryOf('reply-text', c);
    expect(d.lastErrorCode).toBe('OUTBOUND_SEND_UNCERTAIN');
    graph.inject({ kind: 'accept_then_hang', statuses: false });
    const r = await gw!.admin(`/admin/dead-letters/${d.id}/replay`, { method: 'POST', body: JSON.stringify({ reason: 'resend', resend_uncertain: true }) });
    expect(r.status).toBe(202);
    const again = await deliveryOf('reply-text', c, (x) => x.state !== 'pending' && x.generation === 1);
    expect(again.lastErrorCode).toBe('OUTBOUND_SEND_UNCERTAIN');
    expect(graph.sends.length - before).toBe(2);
    expect((await gw!.app.internals.outbound!.get(d.id))!.requests).toBe(2);
  });

  it('a mapping output that is not an OutboundMessage is a permanent MAPPING_OUTPUT_INVALID with file:line:column', async () => {
    const c = await reply('reply-broken', 'ignored');
    const d = await deliveryOf('reply-broken', c);
    expect(d.state).toBe('dead_lettered');
    expect(d.lastErrorCode).toBe('MAPPING_OUTPUT_INVALID');
    expect(d.lastErrorMessage).toMatch(/reply-broken\.jsonata:4:5: OutboundMessage\.content\.body: /);
  });
});
