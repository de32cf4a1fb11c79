/**
 * chat_webhook: HMAC-SHA256 (hex/base64, prefixes, header names) and bearer auth over raw bytes;
 * the JSONata extract expression (evaluated synchronously in a worker with a real time budget);
 * outputs validated against the canonical schema; syntax errors reported at channel load with
 * file:line:column. The payloads are written by us (a made-up "acme-chat" platform).
 */
import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadChannelFile } from '../../src/channels/load-channel.js';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import type { InboundRequest, SourceInstance } from '../../src/connectors/types.js';
import { canonicalMessageSchema } from '../../src/core/canonical-message.js';
import { ConfigError } from '../../src/core/errors.js';
import { chatWebhookConfigSchema, chatWebhookErrorCodes, chatWebhookSource } from '../../src/connectors/sources/chat-webhook.js';
import { jsonataSyntaxError } from '../../src/connectors/sources/chat-webhook-jsonata.js';
import { repoRoot } from '../support/gateway.js';

const SECRET = 'chat-webhook-secret-for-tests';
const ctx = { channelId: 'acme-chat', receivedAt: new Date('2026-03-01T12:00:00.000Z') };

/** An "acme-chat" webhook: one event, possibly several messages, written by us. */
const acmeEvent = {
  event: 'messages.created',
  workspace: 'clinic-north',
  data: [
    {
      message_id: 'acme-1001',
      created: 1772366400,
      conversation: { id: 'conv-77' },
      author: { id: 'u-555', name: 'Jane Demo', phone: '+15551234567', role: 'customer' },
      body: 'Is the lab open on Saturday? ✓',
    },
    {
      message_id: 'acme-1002',
      created: '2026-03-01T13:00:05+01:00',
      conversation: { id: 'conv-77' },
      author: { id: 'agent-9', name: 'Front desk', role: 'agent' },
      body: '',
      files: [{ url: 'https://files.acme.example/f/1', mime: 'image/png', name: 'map.png', bytes: 2048 }],
      in_reply_to: 'acme-1001',
    },
  ],
};

const ACME_EXTRACT = `
event = 'messages.created' ? data.{
  'id': message_id,
  'sent_at': created,
  'conversation_id': 'acme:' & conversation.id,
  'sender': {
    'platform_id': author.id,
    'display_name': author.name,
    'phone': author.phone
  },
  'author_role': author.role = 'agent' ? 'staff' : 'patient',
  'text': body,
  'media': files.{
    'kind': $substringBefore(mime, '/') = 'image' ? 'image' : 'document',
    'url': url,
    'mime_type': mime,
    'filename': name,
    'size': bytes
  },
  'reply_to': in_reply_to ? { 'id': in_reply_to }
}`;

function source(over: Record<string, unknown> = {}): SourceInstance {
  const config = chatWebhookConfigSchema.parse({
    kind: 'chat_webhook',
    platform: 'acme-chat',
    auth: { kind: 'hmac_sha256', secret: SECRET, header: 'X-Acme-Signature', prefix: 'sha256=' },
    extract: ACME_EXTRACT,
    ...over,
  });
  return chatWebhookSource.create(config, { channelId: 'acme-chat' });
}

function request(body: string, headers: Record<string, string> = {}): InboundRequest {
  return { method: 'POST', url: '/webhooks/acme-chat', headers: { 'content-type': 'application/json', ...headers }, query: new URLSearchParams(), rawBody: Buffer.from(body) };
}

const instances: SourceInstance[] = [];
function tracked(s: SourceInstance): SourceInstance {
  instances.push(s);
  return s;
}

describe('authentication over the raw bytes', () => {
  const body = JSON.stringify(acmeEvent);
  const hex = createHmac('sha256', SECRET).update(body).digest('hex');
  const b64 = createHmac('sha256', SECRET).update(body).digest('base64');

  it('HMAC-SHA256, hex, with a prefix and a custom header (prefix case-insensitive)', () => {
    const s = tracked(source());
    expect(s.authenticate(request(body, { 'x-acme-signature': `sha256=${hex}` }))).toBeNull();
    expect(s.authenticate(request(body, { 'x-acme-signature': `SHA256=${hex.toUpperCase()}` }))).toBeNull();
    expect(s.authenticate(request(body))?.status).toBe(401);
    expect(s.authenticate(request(body, { 'x-acme-signature': hex }))?.status).toBe(403);
    expect(s.authenticate(request(`${body} `, { 'x-acme-signature': `sha256=${hex}` }))?.status).toBe(403);
    expect(s.authenticate(request(body, { 'x-acme-signature': `sha256=${createHmac('sha256', 'other').update(body).digest('hex')}` }))?.status).toBe(403);
    expect(s.authenticate(request(body, { 'x-acme-signature': 'sha256=zz' }))?.status).toBe(403);
  });

  it('HMAC-SHA256, base64, no prefix', () => {
    const s = tracked(source({ auth: { kind: 'hmac_sha256', secret: SECRET, header: 'x-signature', encoding: 'base64' } }));
    expect(s.authenticate(request(body, { 'x-signature': b64 }))).toBeNull();
    expect(s.authenticate(request(body, { 'x-signature': hex }))?.status).toBe(403);
  });

  it('bearer token', () => {
    const s = tracked(source({ auth: { kind: 'bearer', token: 'tok-123456' } }));
    expect(s.authenticate(request(body, { authorization: 'Bearer tok-123456' }))).toBeNull();
    expect(s.authenticate(request(body, { authorization: 'bearer tok-123456' }))).toBeNull();
    expect(s.authenticate(request(body, { authorization: 'Bearer tok-123457' }))?.status).toBe(403);
    expect(s.authenticate(request(body, { authorization: 'Basic dG9rOjEyMw==' }))?.status).toBe(401);
    expect(s.authenticate(request(body))?.status).toBe(401);
  });
});

describe('the extract expression', () => {
  it('maps a platform payload to canonical messages', async () => {
    const r = await tracked(source()).parse(Buffer.from(JSON.stringify(acmeEvent)), ctx);
    expect(r.ignored).toEqual([]);
    expect(r.messages).toHaveLength(2);
    for (const m of r.messages) expect(canonicalMessageSchema.safeParse(m).success).toBe(true);
    const [patient, staff] = r.messages;
    expect(patient).toMatchObject({
      id: 'acme-1001',
      dedup_key: 'acme-1001',
      kind: 'text',
      sent_at: '2026-03-01T12:00:00.000Z',
      received_at: '2026-03-01T12:00:00.000Z',
      source: { kind: 'chat_webhook', account_id: 'acme-chat' },
      sender: { platform_id: 'u-555', display_name: 'Jane Demo', phone: '+15551234567' },
      author_role: 'patient',
      conversation_id: 'acme:conv-77',
      text: 'Is the lab open on Saturday? ✓',
      media: [],
      errors: [],
    });
    expect(staff).toMatchObject({
      kind: 'image',
      sent_at: '2026-03-01T12:00:05.000Z',
      author_role: 'staff',
      media: [{ kind: 'image', url: 'https://files.acme.example/f/1', mime_type: 'image/png', filename: 'map.png', size: 2048 }],
      reply_to: { id: 'acme-1001' },
    });
  });

  it('nothing returned: the event is recorded as ignored, not a message', async () => {
    const r = await tracked(source()).parse(Buffer.from(JSON.stringify({ event: 'typing.started', data: [] })), ctx);
    expect(r.messages).toEqual([]);
    expect(r.ignored).toEqual([{ what: 'event', reason: 'the extract expression returned nothing: not a message' }]);
  });

  it('an output that is not a canonical message becomes unsupported with the reasons', async () => {
    const s = tracked(source({ extract: `{ 'id': 'x-1', 'sender': { 'phone': '555' }, 'colour': 'red' }` }));
    const [m] = (await s.parse(Buffer.from('{}'), ctx)).messages;
    expect(m).toMatchObject({ id: 'x-1', kind: 'unsupported', errors: [{ code: chatWebhookErrorCodes.extractInvalid }] });
    expect(m?.errors[0]?.detail).toMatch(/colour|sender\.phone/);
    const noId = (await tracked(source({ extract: `{ 'text': 'hi' }` })).parse(Buffer.from('{"a":1}'), ctx)).messages[0];
    expect(noId?.id).toMatch(/^unidentified:[0-9a-f]{32}:0$/);
    expect(noId?.errors[0]?.detail).toMatch(/^id:/);
  });

  it('an expression that throws at evaluation becomes one unsupported message with the JSONata error', async () => {
    const s = tracked(source({ extract: `$number('not a number') + 1` }));
    const r = await s.parse(Buffer.from('{"a":1}'), ctx);
    expect(r.messages).toHaveLength(1);
    expect(r.messages[0]).toMatchObject({ kind: 'unsupported', errors: [{ code: chatWebhookErrorCodes.extractFailed }] });
    expect(r.messages[0]?.errors[0]?.title).toMatch(/JSONata D3030/);
    // The same body always gives the same stand-in id (redeliveries deduplicate).
    expect((await s.parse(Buffer.from('{"a":1}'), ctx)).messages[0]?.id).toBe(r.messages[0]?.id);
  });

  it('a runaway expression is stopped at its time budget, and the next event is evaluated normally', async () => {
    const s = tracked(source({ extract: `a = 1 ? $sum([1..4000].($sum([1..4000]))) : { 'id': id, 'text': 'ok' }`, timeout_ms: 200 }));
    const started = Date.now();
    const slow = (await s.parse(Buffer.from('{"a":1}'), ctx)).messages[0];
    expect(Date.now() - started).toBeLessThan(5000);
    expect(slow?.errors[0]?.title).toMatch(/SB0001/);
    expect(slow?.errors[0]?.detail).toMatch(/time budget/);
    const fine = (await s.parse(Buffer.from('{"a":2,"id":"m-9"}'), ctx)).messages[0];
    expect(fine).toMatchObject({ id: 'm-9', kind: 'text', text: 'ok' });
  });

  it('$now() is the received time and $channel_id the channel, so parsing is deterministic', async () => {
    const s = tracked(source({ extract: `{ 'id': 'n-1', 'text': $now() & ' ' & $received_at & ' ' & $channel_id }` }));
    const [m] = (await s.parse(Buffer.from('{}'), ctx)).messages;
    expect(m?.text).toBe(`${ctx.receivedAt.toISOString()} ${ctx.receivedAt.toISOString()} acme-chat`);
  });

  it('never throws on bodies that are not JSON', async () => {
    const r = await tracked(source()).parse(Buffer.from('{nope'), ctx);
    expect(r.ignored).toHaveLength(1);
  });
});

describe('syntax errors at channel load', () => {
  let dir: string;
  afterAll(async () => {
    for (const s of instances) (s as unknown as { close?: () => void }).close?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the schema names the line and column inside the expression', () => {
    expect(jsonataSyntaxError(`{ 'id': id,\n  'text': body ]`)).toMatchObject({ line: 2, column: 16 });
    const r = chatWebhookConfigSchema.safeParse({ kind: 'chat_webhook', platform: 'x', auth: { kind: 'bearer', token: 't' }, extract: '{ "a": }' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toMatch(/^JSONata S0\d{3} at line 1, column \d+ of the extract expression/);
    expect(r.error?.issues[0]?.path).toEqual(['extract']);
  });

  it('a channel file with a broken extract fails to load with file:line:column', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sb-chat-webhook-'));
    const file = path.join(dir, 'acme.yaml');
    await writeFile(
      file,
      [
        'source:',
        '  kind: chat_webhook',
        '  platform: acme-chat',
        '  auth:',
        '    kind: bearer',
        '    token: ${CHAT_WEBHOOK_TOKEN}',
        '  extract: |',
        "    { 'id': id,",
        "      'text': body ]",
        'destinations:',
        '  - name: ehr',
        '    kind: fhir_r4',
        '    base_url: https://ehr.example/fhir',
        `    mapping: ${path.join(repoRoot, 'mappings/whatsapp-to-communication.jsonata')}`,
        '    identifier_system: https://switchboard.example/sid/acme-message-id',
        '',
      ].join('\n'),
    );
    const err = await loadChannelFile(file, { registry: createConnectorRegistry(), env: { CHAT_WEBHOOK_TOKEN: 't' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as ConfigError).message;
    expect(message).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:7:\\d+: .*JSONata S0\\d{3} at line 2, column 16 of the extract expression`));
  });
});
