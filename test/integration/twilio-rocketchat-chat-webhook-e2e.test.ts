/**
 * End to end for the new sources through one in-process gateway (test/support/gateway.ts) with
 * a temp channels directory written here, the embedded PostgreSQL, Redis when installed (else
 * BullMQ's PostgreSQL backend) and the real FHIR sandbox:
 *   Twilio WhatsApp webhook, Rocket.Chat outgoing + Livechat webhooks, the generic chat webhook,
 *   and the Rocket.Chat poller against a local server serving the history response of test/fixtures/rocketchat/history.
 * Each: a Communication in the FHIR server; duplicates never make a second one; wrong
 * signatures/tokens are refused with nothing stored.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { twilioSignature } from '../../src/connectors/sources/twilio-whatsapp-signature.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';

const MAPPING = path.join(repoRoot, 'mappings/chat-to-communication.jsonata');
const SYS = {
  twilio: 'https://switchboard.example/sid/twilio-message-sid',
  rc: 'https://switchboard.example/sid/rocketchat-message-id',
  rcPoll: 'https://switchboard.example/sid/rocketchat-poll-message-id',
  generic: 'https://switchboard.example/sid/acme-chat-message-id',
};
const SECRETS = {
  TWILIO_AUTH_TOKEN: 'twilio-e2e-token',
  ROCKETCHAT_OUTGOING_TOKEN: 'test-outgoing-token-0123',
  ROCKETCHAT_LIVECHAT_TOKEN: 'rc-livechat-e2e-secret',
  ROCKETCHAT_AUTH_TOKEN: 'rc-pat-e2e',
  ROCKETCHAT_USER_ID: 'rcPollUser',
  CHAT_WEBHOOK_SECRET: 'chat-webhook-e2e-secret',
};
const TWILIO_PUBLIC = 'https://hooks.e2e.example';
const fixture = (p: string): string => readFileSync(path.join(repoRoot, p), 'utf8');
const historyPage = readFileSync(new URL('../fixtures/rocketchat/history/channels_history.json', import.meta.url), 'utf8');

function destination(system: string): string {
  return [
    'destinations:',
    '  - name: ehr',
    '    kind: fhir_r4',
    '    base_url: ${FHIR_BASE_URL}',
    `    mapping: ${MAPPING}`,
    `    identifier_system: ${system}`,
    '    retry: { attempts: 3, initial_delay_ms: 100, max_delay_ms: 1000 }',
    '    patient_match: { by: phone, on_unmatched: unlinked, on_ambiguous: dead_letter }',
    '',
  ].join('\n');
}

async function communications(fhirBase: string, system: string, value: string): Promise<Record<string, unknown>[]> {
  const r = await fetch(`${fhirBase}/Communication?identifier=${encodeURIComponent(`${system}|${value}`)}`, { headers: { accept: 'application/fhir+json' } });
  const b = (await r.json()) as { entry?: { resource: Record<string, unknown> }[] };
  return (b.entry ?? []).map((e) => e.resource);
}

let fhir: FhirSandbox;
let gw: TestGateway;
let dir: string;
let dbUrl: string;
let pool: pg.Pool;
let rcServer: http.Server;
let rcCalls = 0;

const count = async (): Promise<number> => Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM inbound_events')).rows[0]!.n);

async function delivered(channel: string, sourceId: string, fhirSystem: string): Promise<Record<string, unknown>> {
  await waitFor(`delivery of ${sourceId}`, async () => {
    const r = await gw.admin(`/admin/messages?channel=${channel}&source_id=${encodeURIComponent(sourceId)}`);
    if (r.status !== 200) return undefined;
    const m = (await r.json()) as { deliveries: { state: string }[] };
    return m.deliveries[0]?.state === 'delivered' ? m : undefined;
  });
  const found = await communications(fhir.baseUrl, fhirSystem, sourceId);
  expect(found).toHaveLength(1);
  return found[0]!;
}

beforeAll(async () => {
  // A Rocket.Chat REST peer: the channels.history answer of test/fixtures/rocketchat/history, then nothing new.
  rcServer = http.createServer((req, res) => {
    rcCalls++;
    const ok = req.headers['x-auth-token'] === SECRETS.ROCKETCHAT_AUTH_TOKEN && req.headers['x-user-id'] === SECRETS.ROCKETCHAT_USER_ID;
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    const u = new URL(req.url ?? '/', 'http://x');
    res.end(ok ? (u.searchParams.get('oldest') === null ? historyPage : '{"messages":[],"success":true}') : '{"success":false}');
  });
  await new Promise<void>((r) => rcServer.listen(0, '127.0.0.1', r));
  const rcUrl = `http://127.0.0.1:${(rcServer.address() as AddressInfo).port}`;

  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-chat-sources-'));
  await writeFile(
    path.join(dir, 'twilio-e2e.yaml'),
    ['source:', '  kind: twilio_whatsapp', '  auth_token: ${TWILIO_AUTH_TOKEN}', `  public_base_url: ${TWILIO_PUBLIC}`, destination(SYS.twilio)].join('\n'),
  );
  await writeFile(
    path.join(dir, 'rocketchat-e2e.yaml'),
    ['source:', '  kind: rocketchat_webhook', '  outgoing_token: ${ROCKETCHAT_OUTGOING_TOKEN}', '  livechat_token: ${ROCKETCHAT_LIVECHAT_TOKEN}', destination(SYS.rc)].join('\n'),
  );
  await writeFile(
    path.join(dir, 'rocketchat-poll-e2e.yaml'),
    [
      'source:',
      '  kind: rocketchat_poll',
      `  server_url: ${rcUrl}`,
      '  auth_token: ${ROCKETCHAT_AUTH_TOKEN}',
      '  user_id: ${ROCKETCHAT_USER_ID}',
      '  rooms: [{ id: RCroomPatientDesk, kind: channel, name: general }]',
      '  interval_ms: 200',
      '  rate_limit: { calls: 1000, per_ms: 60000 }',
      '  start_at: beginning',
      destination(SYS.rcPoll),
    ].join('\n'),
  );
  // The shipped example, with this test's mapping path and channel id.
  const example = fixture('channels/examples/chat-webhook-to-ehr.yaml')
    .replace('../../mappings/chat-to-communication.jsonata', MAPPING)
    .replace('id: chat-webhook-to-ehr', 'id: chat-webhook-e2e')
    .replace('path: /webhooks/chat-webhook-to-ehr', 'path: /webhooks/chat-webhook-e2e');
  await writeFile(path.join(dir, 'chat-webhook-e2e.yaml'), example);

  fhir = await startFhirSandbox({ port: 0, seed: true });
  dbUrl = await createTestDatabase();
  pool = new pg.Pool({ connectionString: dbUrl });
  gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redisUrl(), fhirBaseUrl: fhir.baseUrl, channelsDir: dir, env: SECRETS });
});

afterAll(async () => {
  await gw?.stop();
  await pool?.end();
  await fhir?.close();
  await new Promise((r) => rcServer?.close(r));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('Twilio WhatsApp, end to end', () => {
  const form = fixture('test/fixtures/twilio/text.form');
  const pathAndQuery = '/webhooks/twilio-e2e?clinic=north';
  const params = (body: string): Record<string, string> => Object.fromEntries(new URLSearchParams(body));
  const post = (body: string, signature: string | null): Promise<Response> =>
    fetch(`${gw.url}${pathAndQuery}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(signature === null ? {} : { 'x-twilio-signature': signature }) },
      body,
    });

  it('a signed message becomes one Communication linked to the Patient; the answer is empty TwiML', async () => {
    const res = await post(form, twilioSignature(SECRETS.TWILIO_AUTH_TOKEN, TWILIO_PUBLIC + pathAndQuery, params(form)));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/xml/);
    expect(await res.text()).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    const c = await delivered('twilio-e2e', 'SM11111111111111111111111111111111', SYS.twilio);
    expect(c['subject']).toMatchObject({ reference: expect.stringMatching(/^Patient\//) });
    expect(JSON.stringify(c['payload'])).toContain('café ✓ 🙏');
    expect(JSON.stringify(c['medium'])).toContain('"whatsapp"');
  });

  it('the same request twice gives one Communication; a status callback is recorded, not delivered', async () => {
    const body = fixture('test/fixtures/twilio/image_with_caption.form');
    const sig = twilioSignature(SECRETS.TWILIO_AUTH_TOKEN, TWILIO_PUBLIC + pathAndQuery, params(body));
    expect((await post(body, sig)).status).toBe(200);
    expect((await post(body, sig)).status).toBe(200);
    await delivered('twilio-e2e', 'MM22222222222222222222222222222222', SYS.twilio);
    const status = fixture('test/fixtures/twilio/status_read.form');
    expect((await post(status, twilioSignature(SECRETS.TWILIO_AUTH_TOKEN, TWILIO_PUBLIC + pathAndQuery, params(status)))).status).toBe(200);
    await waitFor('status', async () => {
      const r = await gw.admin('/admin/messages?channel=twilio-e2e&source_id=SM11111111111111111111111111111111');
      const m = (await r.json()) as { statuses: { status: string }[] };
      return m.statuses.some((s) => s.status === 'read');
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(await communications(fhir.baseUrl, SYS.twilio, 'MM22222222222222222222222222222222')).toHaveLength(1);
  });

  it('refuses a missing or wrong signature (401/403) and stores nothing', async () => {
    const before = await count();
    expect((await post(form, null)).status).toBe(401);
    expect((await post(form, twilioSignature('wrong-token', TWILIO_PUBLIC + pathAndQuery, params(form)))).status).toBe(403);
    expect((await post(form, twilioSignature(SECRETS.TWILIO_AUTH_TOKEN, `${TWILIO_PUBLIC}/webhooks/twilio-e2e?clinic=south`, params(form)))).status).toBe(403);
    expect(await count()).toBe(before);
  });
});

describe('Rocket.Chat webhooks, end to end', () => {
  const post = (body: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${gw.url}/webhooks/rocketchat-e2e`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  it('an outgoing-webhook message: 200 with an empty body, one Communication', async () => {
    const res = await post(fixture('test/fixtures/rocketchat/outgoing_message_sent.json'));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    const c = await delivered('rocketchat-e2e', '7aDSXtjMA3KPLxLjt', SYS.rc);
    expect(JSON.stringify(c['medium'])).toContain('"rocketchat"');
  });

  it('Livechat: a visitor message, then the session start repeating it: one Communication; an agent message is a staff message', async () => {
    const headers = { 'x-rocketchat-livechat-token': SECRETS.ROCKETCHAT_LIVECHAT_TOKEN };
    expect((await post(fixture('test/fixtures/rocketchat/livechat_message_visitor.json'), headers)).status).toBe(200);
    expect((await post(fixture('test/fixtures/rocketchat/livechat_session_start.json'), headers)).status).toBe(200);
    await delivered('rocketchat-e2e', 'LCmsg000000000001', SYS.rc);
    expect((await post(fixture('test/fixtures/rocketchat/livechat_message_agent.json'), headers)).status).toBe(200);
    const agent = await delivered('rocketchat-e2e', 'LCmsg000000000002', SYS.rc);
    expect(JSON.stringify(agent['category'])).toContain('staff-message');
    await new Promise((r) => setTimeout(r, 300));
    expect(await communications(fhir.baseUrl, SYS.rc, 'LCmsg000000000001')).toHaveLength(1);
  });

  it('refuses wrong or missing tokens and stores nothing', async () => {
    const before = await count();
    expect((await post(fixture('test/fixtures/rocketchat/outgoing_message_sent.json').replace(SECRETS.ROCKETCHAT_OUTGOING_TOKEN, 'test-outgoing-token-9999'))).status).toBe(403);
    expect((await post(fixture('test/fixtures/rocketchat/livechat_message_visitor.json'), { 'x-rocketchat-livechat-token': 'wrong' })).status).toBe(403);
    expect((await post(fixture('test/fixtures/rocketchat/livechat_message_visitor.json'))).status).toBe(401);
    expect(await count()).toBe(before);
  });
});

describe('generic chat webhook (the shipped example channel), end to end', () => {
  const event = (id: string) =>
    JSON.stringify({
      event: 'message',
      message: { id, created_at: '2026-03-01T11:59:00Z', conversation_id: 'c-1', author: { id: 'u-1', name: 'Jane Demo', phone: '+15551234567', is_staff: false }, text: 'Hello from Acme ✓', attachments: [] },
    });
  const sign = (body: string, secret = SECRETS.CHAT_WEBHOOK_SECRET): string => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
  const post = (body: string, signature: string | null): Promise<Response> =>
    fetch(`${gw.url}/webhooks/chat-webhook-e2e`, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature === null ? {} : { 'x-signature-256': signature }) }, body });

  it('a signed event becomes one Communication, twice posted still one', async () => {
    const body = event('acme-e2e-1');
    expect((await post(body, sign(body))).status).toBe(200);
    expect((await post(body, sign(body))).status).toBe(200);
    const c = await delivered('chat-webhook-e2e', 'acme-e2e-1', SYS.generic);
    expect(c['subject']).toMatchObject({ reference: expect.stringMatching(/^Patient\//) });
    expect(JSON.stringify(c['payload'])).toContain('Hello from Acme ✓');
    await new Promise((r) => setTimeout(r, 300));
    expect(await communications(fhir.baseUrl, SYS.generic, 'acme-e2e-1')).toHaveLength(1);
  });

  it('refuses a wrong or missing signature and stores nothing', async () => {
    const before = await count();
    const body = event('acme-e2e-2');
    expect((await post(body, null)).status).toBe(401);
    expect((await post(body, sign(body, 'wrong'))).status).toBe(403);
    expect(await count()).toBe(before);
  });
});

describe('Rocket.Chat poller, end to end', () => {
  it('polls the history page into one Communication, with its cursor in the database, and never repeats it', async () => {
    const c = await delivered('rocketchat-poll-e2e', 'RChist00000000001', SYS.rcPoll);
    expect(JSON.stringify(c['payload'])).toContain('Is the clinic open on Saturday?');
    // Encrypted at rest (it holds the source's message ids), read back through the store.
    const cursor = await pool.query<{ key: string; value_payload: Buffer; value_key_id: string | null }>("SELECT key, value_payload, value_key_id FROM source_cursors WHERE channel_id = 'rocketchat-poll-e2e'");
    expect(cursor.rows.map((r) => r.key)).toEqual(['room:channel:RCroomPatientDesk']);
    expect(cursor.rows[0]!.value_key_id).not.toBeNull();
    expect(cursor.rows[0]!.value_payload.includes(Buffer.from('RChist00000000001'))).toBe(false);
    expect(await gw.app.internals.store!.cursorStore('rocketchat-poll-e2e').get('room:channel:RCroomPatientDesk')).toBe(JSON.stringify({ ts: '2026-02-26T09:30:15.250Z', ids: ['RChist00000000001'] }));
    const calls = rcCalls;
    await waitFor('more polling rounds', async () => rcCalls >= calls + 2);
    const events = await pool.query<{ n: string }>("SELECT count(*) AS n FROM inbound_events WHERE channel_id = 'rocketchat-poll-e2e'");
    expect(Number(events.rows[0]!.n)).toBe(1);
    expect(await communications(fhir.baseUrl, SYS.rcPoll, 'RChist00000000001')).toHaveLength(1);
  });
});
