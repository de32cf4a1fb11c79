/**
 * twilio_send and rocketchat_send through the whole pipeline (in-process gateway, real PostgreSQL,
 * Redis when installed, the real FHIR sandbox) against stand-ins that follow Twilio's and
 * Rocket.Chat's documented formats (test/support/twilio-messages-standin.ts,
 * rocketchat-send-standin.ts). The patient writes first on each (linked to the demo Patient at
 * FHIR delivery), then the care team's reply comes in through the EHR stand-in.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { twilioSignature } from '../../src/connectors/sources/twilio-whatsapp-signature.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import type { DeliveryRecord } from '../../src/store/message-store.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { EHR_REPLY_TOKEN, RecordingStatusListener, deliveryOf as settledDelivery, postEhrReply, replyChannel, writeReplyMappings } from '../support/outbound.js';
import { startTwilioStandin, type TwilioStandin } from '../support/twilio-messages-standin.js';
import { startRocketChatStandin, type RocketChatStandin } from '../support/rocketchat-send-standin.js';

const ACCOUNT = `AC${'1'.repeat(32)}`;
const TOKEN = 'twilio-send-test-token';
const PUBLIC = 'https://hooks.outbound.test';
const RC = { token: 'rc-send-token', user: 'careTeamUser' };
const LIVECHAT_TOKEN = 'rc-livechat-secret';
const ROOM = 'LCroom00000000001';
const MAPPING = path.join(repoRoot, 'mappings/chat-to-communication.jsonata');
const HX = `HX${'a'.repeat(32)}`;

let dir: string;
let fhir: FhirSandbox;
let twilio: TwilioStandin;
let rc: RocketChatStandin;
let gw: TestGateway | undefined;
let patientRef: string;
const listener = new RecordingStatusListener();
let n = 0;

function ehrDestination(system: string): string[] {
  return ['  - name: ehr', '    kind: fhir_r4', '    base_url: ${FHIR_BASE_URL}', `    mapping: ${MAPPING}`, `    identifier_system: ${system}`, '    retry: { attempts: 3, initial_delay_ms: 100, max_delay_ms: 1000 }'];
}

const common = ['    timeout_ms: 1000', '    reconcile_ms: 1500', '    retry: { attempts: 8, initial_delay_ms: 100, max_delay_ms: 1000 }', '    circuit_breaker: { enabled: false }'];

const deliveryOf = (channel: string, sourceId: string, settled?: (d: DeliveryRecord) => boolean) => settledDelivery(gw!, channel, sourceId, settled);

async function reply(channel: string, text: string, phone?: string): Promise<string> {
  const communication = `Communication/tr-${++n}-${Date.now()}`;
  const r = await postEhrReply(gw!.url, channel, { communication, patient: patientRef, text, ...(phone !== undefined && { phone }) });
  expect(r.status).toBe(200);
  return communication;
}

async function patientWritesOnTwilio(): Promise<string> {
  const sid = `SM${Date.now().toString(16).padStart(32, '0').slice(-32)}`;
  const params = { MessageSid: sid, SmsSid: sid, AccountSid: ACCOUNT, From: 'whatsapp:+15551234567', To: 'whatsapp:+14155238886', Body: 'Can I get my results?', NumMedia: '0', WaId: '15551234567', ProfileName: 'Jane Demo', MessageType: 'text', SmsStatus: 'received', ApiVersion: '2010-04-01' };
  const r = await fetch(`${gw!.url}/webhooks/tw-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC}/webhooks/tw-in`, params) },
    body: new URLSearchParams(params).toString(),
  });
  expect(r.status).toBe(200);
  await deliveryOf('tw-in', sid, (d) => d.state === 'delivered');
  return sid;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-tw-rc-send-'));
  const maps = await writeReplyMappings(dir);
  twilio = await startTwilioStandin({ accountSid: ACCOUNT, authToken: TOKEN, rewriteCallback: (u) => u.replace(PUBLIC, gw?.url ?? PUBLIC) });
  rc = await startRocketChatStandin({ authToken: RC.token, userId: RC.user });
  rc.rooms.add(ROOM);
  fhir = await startFhirSandbox({ port: 0, seed: true });
  await writeFile(path.join(dir, 'tw-in.yaml'), ['id: tw-in', 'source:', '  kind: twilio_whatsapp', '  auth_token: ${TWILIO_AUTH_TOKEN}', `  public_base_url: ${PUBLIC}`, 'destinations:', ...ehrDestination('https://switchboard.example/sid/twilio-message-sid'), ''].join('\n'));
  await writeFile(path.join(dir, 'rc-in.yaml'), ['id: rc-in', 'source:', '  kind: rocketchat_webhook', '  livechat_token: ${ROCKETCHAT_LIVECHAT_TOKEN}', '  accept: [livechat]', 'destinations:', ...ehrDestination('https://switchboard.example/sid/rocketchat-message-id'), ''].join('\n'));
  const twilioDest = (mapping: string) =>
    ['  - name: twilio', '    kind: twilio_send', `    mapping: ${mapping}`, `    account_sid: ${ACCOUNT}`, '    auth_token: ${TWILIO_AUTH_TOKEN}', '    from: whatsapp:+14155238886', `    status_callback: ${PUBLIC}/webhooks/tw-in`, `    content_templates: { care_team_reply: ${HX} }`, '    api_url: ${TWILIO_API_URL}', ...common].join('\n');
  await writeFile(path.join(dir, 'reply-tw.yaml'), replyChannel('reply-tw', twilioDest(maps.text)));
  await writeFile(path.join(dir, 'reply-tw-auto.yaml'), replyChannel('reply-tw-auto', twilioDest(maps.auto)));
  await writeFile(
    path.join(dir, 'reply-rc.yaml'),
    replyChannel('reply-rc', ['  - name: rocketchat', '    kind: rocketchat_send', `    mapping: ${maps.text}`, '    server_url: ${ROCKETCHAT_URL}', '    auth_token: ${ROCKETCHAT_SEND_TOKEN}', '    user_id: ${ROCKETCHAT_SEND_USER}', ...common].join('\n')),
  );
  gw = await startGateway({
    databaseUrl: await createTestDatabase(),
    redisUrl: redisUrl(),
    fhirBaseUrl: fhir.baseUrl,
    channelsDir: dir,
    outboundStatusListener: listener,
    env: { EHR_REPLY_TOKEN, TWILIO_AUTH_TOKEN: TOKEN, TWILIO_API_URL: twilio.url, ROCKETCHAT_URL: rc.url, ROCKETCHAT_SEND_TOKEN: RC.token, ROCKETCHAT_SEND_USER: RC.user, ROCKETCHAT_LIVECHAT_TOKEN: LIVECHAT_TOKEN },
  });
  await patientWritesOnTwilio();
  // The patient also wrote in a Livechat room (visitor with the same phone).
  const visitor = JSON.parse(readFileSync(path.join(repoRoot, 'test/fixtures/rocketchat/livechat_message_visitor.json'), 'utf8')) as { visitor: { phone: { phoneNumber: string }[] } };
  visitor.visitor.phone = [{ phoneNumber: '+15551234567' }];
  const r = await fetch(`${gw.url}/webhooks/rc-in`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-rocketchat-livechat-token': LIVECHAT_TOKEN }, body: JSON.stringify(visitor) });
  expect(r.status).toBe(200);
  await deliveryOf('rc-in', 'LCmsg000000000001', (d) => d.state === 'delivered');
  const search = (await (await fetch(`${fhir.baseUrl}/Patient?phone=${encodeURIComponent('+15551234567')}`)).json()) as { entry: { resource: { id: string } }[] };
  patientRef = `Patient/${search.entry[0]!.resource.id}`;
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await twilio?.close();
  await rc?.close();
  await fhir?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('twilio_send', () => {
  it('replies from the number the patient wrote to, with StatusCallback; sent, delivered, read come back in order', async () => {
    const c = await reply('reply-tw', 'Your results are normal.');
    const d = await deliveryOf('reply-tw', c);
    expect(d.state).toBe('delivered');
    expect(d.outcome).toMatchObject({ provider: 'twilio', via: 'sent', requests: 1, recipient_from: 'conversation', window_open: true });
    const m = twilio.messages.find((x) => x.sid === d.outcome!['provider_message_id'])!;
    expect(m).toMatchObject({ to: 'whatsapp:+15551234567', from: 'whatsapp:+14155238886', body: 'Your results are normal.', statusCallback: `${PUBLIC}/webhooks/tw-in` });
    await waitFor('statuses', async () => listener.of(c).length === 3);
    expect(listener.of(c)).toEqual(['sent', 'delivered', 'read']);
  });

  it('a status callback that overtakes the answer to the send is still recorded against it', async () => {
    twilio.inject({ kind: 'status_before_answer' });
    const c = await reply('reply-tw', 'Fast status');
    const d = await deliveryOf('reply-tw', c);
    expect(d.state).toBe('delivered');
    await waitFor('sent status', async () => listener.of(c).length === 1);
    expect(listener.of(c)).toEqual(['sent']);
  });

  it('to a number that never wrote on WhatsApp a free-form reply is TWILIO_WINDOW_CLOSED before Twilio is called; a Content template goes', async () => {
    const before = twilio.messages.length;
    const c = await reply('reply-tw', 'Free-form to a stranger', '+15559990000');
    const d = await deliveryOf('reply-tw', c);
    expect([d.state, d.lastErrorCode]).toEqual(['dead_lettered', 'TWILIO_WINDOW_CLOSED']);
    expect(twilio.messages.length).toBe(before);
    const t = await reply('reply-tw-auto', 'Template to a stranger', '+15559990000');
    const td = await deliveryOf('reply-tw-auto', t);
    expect(td.state).toBe('delivered');
    expect(twilio.messages.find((m) => m.sid === td.outcome!['provider_message_id'])).toMatchObject({ to: 'whatsapp:+15559990000', contentSid: HX, contentVariables: '{"1":"your care team"}', body: null });
  });

  it('63016 reported by Twilio afterwards is a failed status with TWILIO_WINDOW_CLOSED', async () => {
    twilio.inject({ kind: 'fail_63016' });
    const c = await reply('reply-tw', 'Twilio will fail this one');
    const d = await deliveryOf('reply-tw', c);
    expect(d.state).toBe('delivered');
    await waitFor('failed status', async () => listener.of(c).length === 1);
    expect(listener.events.find((e) => e.correlationId === c)!.status).toMatchObject({ status: 'failed', error: { code: 'TWILIO_WINDOW_CLOSED', provider_code: '63016' } });
  });

  it('429 and 5xx are retried; the message is created once', async () => {
    twilio.inject({ kind: 'error', httpStatus: 429, code: 20429, message: 'Too Many Requests', retryAfterSeconds: 0 }, { kind: 'error', httpStatus: 503, code: 20500, message: 'Service Unavailable' });
    const before = twilio.messages.length;
    const c = await reply('reply-tw', 'Eventually');
    const d = await deliveryOf('reply-tw', c);
    expect(d.state).toBe('delivered');
    expect((await gw!.app.internals.store!.getDelivery(d.id))!.history.map((h) => h.errorCode)).toEqual(['TWILIO_RATE_LIMITED', 'TWILIO_UNAVAILABLE', null]);
    expect(twilio.messages.length - before).toBe(1);
  });

  it('an invalid number is a permanent TWILIO_REQUEST_INVALID (21211)', async () => {
    // Twilio's text names the number; the error Switchboard keeps and shows does not.
    twilio.inject({ kind: 'error', httpStatus: 400, code: 21211, message: "The 'To' number +15005550001 is not a valid phone number." });
    const c = await reply('reply-tw', 'Nobody there');
    const d = await deliveryOf('reply-tw', c);
    expect(d.state).toBe('dead_lettered');
    expect(d.lastErrorCode).toBe('TWILIO_REQUEST_INVALID');
    expect(d.lastErrorMessage).toContain('error 21211');
    expect(d.lastErrorMessage).not.toContain('5005550001');
  });

  it('a timeout after Twilio created the message is reconciled from the Messages list: not sent twice', async () => {
    twilio.inject({ kind: 'accept_then_hang' });
    const before = twilio.messages.length;
    const c = await reply('reply-tw', 'The answer to this one is lost');
    const d = await deliveryOf('reply-tw', c);
    expect(d.state).toBe('delivered');
    expect(d.outcome).toMatchObject({ via: 'reconciled', requests: 1 });
    expect(twilio.messages.length - before).toBe(1);
    expect(d.outcome!['provider_message_id']).toBe(twilio.messages.at(-1)!.sid);
  });

  it('an error answer means nothing was created: the next attempt sends, and the message exists once', async () => {
    twilio.inject({ kind: 'error', httpStatus: 500, code: 20500, message: 'Internal Server Error' });
    const c = await reply('reply-tw', 'Resent after a 500');
    const d = await deliveryOf('reply-tw', c);
    expect(d.state).toBe('delivered');
    expect(twilio.messages.filter((m) => m.body === 'Resent after a 500')).toHaveLength(1);
  });
});

describe('rocketchat_send', () => {
  it('posts to the Livechat room the patient wrote in, with our own message _id; accepted is sent', async () => {
    const c = await reply('reply-rc', 'The doctor will call you today.');
    const d = await deliveryOf('reply-rc', c);
    expect(d.state).toBe('delivered');
    const ledger = await gw!.app.internals.outbound!.get(d.id);
    const stored = rc.messages.filter((m) => m._id === ledger!.callbackRef);
    expect(stored).toEqual([{ _id: ledger!.callbackRef, rid: ROOM, msg: 'The doctor will call you today.', attachments: undefined }]);
    expect(d.outcome).toMatchObject({ provider: 'rocketchat', provider_message_id: ledger!.callbackRef, via: 'sent' });
    await waitFor('sent status', async () => listener.of(c).length === 1);
    expect(listener.of(c)).toEqual(['sent']);
  });

  it('a timeout after Rocket.Chat stored the message is reconciled by its _id: posted once', async () => {
    rc.inject({ kind: 'accept_then_hang' });
    const before = rc.messages.length;
    const c = await reply('reply-rc', 'Lost answer, one message');
    const d = await deliveryOf('reply-rc', c);
    expect(d.state).toBe('delivered');
    expect(d.outcome).toMatchObject({ via: 'reconciled' });
    expect(rc.messages.length - before).toBe(1);
  });

  it('5xx and 429 are retried; an unknown room is permanent', async () => {
    rc.inject({ kind: 'error', httpStatus: 502, body: { success: false, error: 'Bad gateway' } }, { kind: 'error', httpStatus: 429, body: { success: false, error: 'Error, too many requests.' }, headers: { 'x-ratelimit-reset': String(Date.now() + 200) } });
    const c = await reply('reply-rc', 'After 502 and 429');
    const d = await deliveryOf('reply-rc', c);
    expect(d.state).toBe('delivered');
    expect((await gw!.app.internals.store!.getDelivery(d.id))!.history.map((h) => h.errorCode)).toEqual(['ROCKETCHAT_UNAVAILABLE', 'ROCKETCHAT_RATE_LIMITED', null]);

    rc.rooms.delete(ROOM);
    const gone = await reply('reply-rc', 'The room was closed');
    const g = await deliveryOf('reply-rc', gone);
    rc.rooms.add(ROOM);
    expect(g.state).toBe('dead_lettered');
    expect(g.lastErrorCode).toBe('ROCKETCHAT_REQUEST_INVALID');
  });
});
