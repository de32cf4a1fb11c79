/**
 * Rocket.Chat webhook source: every payload in test/fixtures/rocketchat (written by us, see its
 * SOURCES.md) has a row in the outcome table; token checks; the empty answer. The examples of
 * Rocket.Chat's documentation run in test/conformance/rocketchat-corpus.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalMessageSchema } from '../../src/core/canonical-message.js';
import type { InboundRequest } from '../../src/connectors/types.js';
import { rocketChatWebhookConfigSchema } from '../../src/connectors/sources/rocketchat-webhook.js';
import {
  ROCKETCHAT_LIVECHAT_TOKEN as LIVECHAT,
  ROCKETCHAT_OUTGOING_TOKEN as OUTGOING,
  parseRocketChat as parse,
  parseRocketChatBody,
  rocketChatSource as source,
  runRocketChatTable,
  type Outcome,
} from '../support/rocketchat-outcomes.js';

const ours = new URL('../fixtures/rocketchat/', import.meta.url);

const ourTable: Record<string, Outcome> = {
  'outgoing_message_sent.json': {
    kinds: ['text'],
    roles: [undefined],
    check: (_r, [m]) =>
      expect(m).toMatchObject({
        id: '7aDSXtjMA3KPLxLjt',
        dedup_key: '7aDSXtjMA3KPLxLjt',
        sent_at: '2026-02-27T09:14:03.121Z',
        text: 'Guten Tag, ich brauche ein Rezept für Ibuprofen 🙏',
        sender: { platform_id: 'hY3mK9pQ2wR5tZ8vX', username: 'maria.k' },
        conversation_id: 'rocketchat:GENERAL',
        source: { kind: 'rocketchat_webhook', account_id: 'https://chat.clinic.example', endpoint_id: 'GENERAL', endpoint_display: 'patient-desk' },
        errors: [],
      }),
  },
  'outgoing_staff_reply.json': { kinds: ['text'], roles: ['staff'], check: (_r, [m]) => expect(m?.reply_to).toEqual({ id: '7aDSXtjMA3KPLxLjt' }) },
  'outgoing_edited.json': {
    kinds: ['edit'],
    roles: [undefined],
    check: (_r, [m]) => {
      expect(m?.original_id).toBe('7aDSXtjMA3KPLxLjt');
      expect(m?.id).toMatch(/^7aDSXtjMA3KPLxLjt:edited:[0-9a-f]{32}$/);
      expect(m?.dedup_key).toBe(m?.id);
      expect(m?.text).toContain('Ibuprofen 400');
    },
  },
  'outgoing_bot.json': { kinds: ['text'], roles: ['system'], check: (_r, [m]) => expect(m?.sender.display_name).toBe('Reminder bot') },
  'outgoing_file_uploaded.json': {
    kinds: ['document'],
    roles: [undefined],
    check: (_r, [m]) => {
      expect(m?.media).toEqual([
        {
          kind: 'document',
          media_id: 'fILE00000000000001',
          mime_type: 'application/pdf',
          url: 'https://chat.clinic.example/file-upload/fILE00000000000001/befund.pdf',
          filename: 'befund.pdf',
          caption: 'Mein Laborbefund',
        },
      ]);
      expect(m?.text).toBeUndefined();
      // The leaked password hash and login tokens never reach the canonical message.
      expect(JSON.stringify(m)).not.toMatch(/bcrypt|FAKE\.HASH|loginTokens|hashedToken/);
    },
  },
  'outgoing_image_uploaded.json': {
    kinds: ['image'],
    check: (_r, [m]) => expect(m?.media[0]).toMatchObject({ kind: 'image', mime_type: 'image/jpeg', size: 184233, url: 'https://chat.clinic.example/file-upload/fILE00000000000002/arm.jpg' }),
  },
  'outgoing_room_event.json': { kinds: [], ignored: 1, check: (r) => expect(r.ignored[0]?.what).toContain('roomCreated') },
  'livechat_message_visitor.json': {
    kinds: ['text'],
    roles: ['patient'],
    check: (_r, [m]) =>
      expect(m).toMatchObject({
        id: 'LCmsg000000000001',
        sender: { platform_id: 'vis00000000000001', username: 'guest-17', display_name: 'Jon Patient', phone: '+4915123456789', email: 'jon@example.org' },
        conversation_id: 'rocketchat:LCroom00000000001',
        source: { endpoint_display: 'Jon Patient' },
      }),
  },
  'livechat_message_agent.json': {
    kinds: ['text'],
    roles: ['staff'],
    check: (_r, [m]) => {
      expect(m?.sender).toEqual({ platform_id: 'agent0000000000001', username: 'dr.lee', display_name: 'Dr. Lee' });
    },
  },
  'livechat_message_file.json': {
    kinds: ['image'],
    roles: ['patient'],
    check: (_r, [m]) => expect(m?.media[0]).toMatchObject({ media_id: 'fILE00000000000003', size: 52011, url: '/file-upload/fILE00000000000003/thermometer.png' }),
  },
  'livechat_session_start.json': { kinds: ['text'], roles: ['patient'], ignored: 2 },
  'livechat_session_taken.json': { kinds: ['text'], roles: ['patient'], ignored: 2 },
  'livechat_session_close.json': {
    kinds: ['edit', 'text', 'image', 'system'],
    roles: ['patient', 'staff', 'patient', 'staff'],
    ignored: 2,
    check: (_r, [edit, , , close]) => {
      expect(edit).toMatchObject({ id: 'LCmsg000000000001:edited:2026-02-27T11:00:30.000Z', original_id: 'LCmsg000000000001', text: 'Hello, my son has a fever of 39.8°C' });
      expect(close).toMatchObject({ system: { type: 'livechat_close', body: 'Advice given, closed.' }, text: 'Advice given, closed.' });
    },
  },
  'livechat_lead_capture.json': { kinds: [], ignored: 1 },
  'livechat_session_without_ids.json': {
    // Messages without _id (as in the Omnichannel documentation's session example): stand-in ids, with an error saying so.
    kinds: ['text', 'text'],
    roles: ['patient', 'staff'],
    ignored: 1,
    check: (r, [visitor, agent]) => {
      expect(r.ignored[0]).toEqual({ what: 'LivechatSession event', reason: expect.stringContaining('session event') });
      expect(visitor).toMatchObject({
        text: 'Can I take ibuprofen with my blood pressure tablets?',
        sender: { username: 'guest-42', display_name: 'Mira Visitor', email: 'mira.visitor@example.org' },
        conversation_id: 'rocketchat:LCroom00000000002',
      });
      // "15551230042" has no +: not trusted as an E.164 number.
      expect(visitor?.sender.phone).toBeUndefined();
      expect(agent).toMatchObject({ text: 'Please ask your doctor first; paracetamol is usually safer.', sender: { platform_id: 'agent0000000000002', username: 'pharm.kim', display_name: 'Pharmacist Kim' } });
      expect(visitor?.id).toMatch(/^unidentified:/);
      expect(visitor?.id).not.toBe(agent?.id);
      expect(visitor?.errors[0]?.title).toMatch(/no _id/);
    },
  },
  'livechat_offline_message.json': {
    kinds: ['text'],
    roles: ['patient'],
    check: (_r, [m]) => {
      expect(m).toMatchObject({
        text: 'Please call me back tomorrow about my test results.',
        sent_at: '2026-02-28T21:40:12.345Z',
        sender: { display_name: 'Noah Night', email: 'noah.night@example.org' },
        conversation_id: 'rocketchat:offline:noah.night@example.org',
      });
      expect(m?.id).toMatch(/^offline:[0-9a-f]{32}$/);
      expect(m?.errors).toEqual([]);
    },
  },
};

describe('Rocket.Chat payloads written by us (test/fixtures/rocketchat)', () => runRocketChatTable(ours, ourTable));

describe('deduplication keys', () => {
  it('a session event repeats message ids already delivered by Message events, so they deduplicate', () => {
    const single = parse(ours, 'livechat_message_visitor.json').messages.map((m) => m.dedup_key);
    const start = parse(ours, 'livechat_session_start.json').messages.map((m) => m.dedup_key);
    expect(start).toEqual(single);
  });
  it('stand-in ids are stable across parses', () => {
    const a = parse(ours, 'livechat_session_without_ids.json').messages.map((m) => m.id);
    const b = parse(ours, 'livechat_session_without_ids.json').messages.map((m) => m.id);
    expect(a.every((id) => id.startsWith('unidentified:'))).toBe(true);
    expect(a).toEqual(b);
  });
});

describe('odd input never throws', () => {
  for (const body of ['', 'not json', '[]', '{"type": 5}', '{"type":"Message","messages":"x"}', '{"type":"Message","messages":[1,null,{"msg":3}]}', '{"token":"t","message_id":{}}', '{"token":"t","message_id":"a","timestamp":"yesterday"}']) {
    it(JSON.stringify(body), () => {
      const r = parseRocketChatBody(Buffer.from(body));
      for (const m of r.messages) expect(canonicalMessageSchema.safeParse(m).success).toBe(true);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Authentication and answers
// ---------------------------------------------------------------------------------------------

function request(body: string, headers: Record<string, string> = {}): InboundRequest {
  return { method: 'POST', url: '/webhooks/rocketchat-to-ehr', headers: { 'content-type': 'application/json', ...headers }, query: new URLSearchParams(), rawBody: Buffer.from(body) };
}
const outgoingBody = readFileSync(new URL('outgoing_message_sent.json', ours), 'utf8');
const livechatBody = readFileSync(new URL('livechat_message_visitor.json', ours), 'utf8');

describe('tokens', () => {
  it('outgoing: the token in the body, compared in constant time', () => {
    const s = source();
    expect(s.authenticate(request(outgoingBody))).toBeNull();
    expect(s.authenticate(request(outgoingBody.replace(OUTGOING, 'test-outgoing-token-0124')))?.status).toBe(403);
    expect(s.authenticate(request(outgoingBody.replace(OUTGOING, 'short')))?.status).toBe(403);
    expect(s.authenticate(request(outgoingBody.replace(`"token": "${OUTGOING}",`, '')))?.status).toBe(401);
    expect(s.authenticate(request('not json'))?.status).toBe(401);
  });
  it('livechat: the X-RocketChat-Livechat-Token header', () => {
    const s = source();
    expect(s.authenticate(request(livechatBody, { 'x-rocketchat-livechat-token': LIVECHAT }))).toBeNull();
    expect(s.authenticate(request(livechatBody, { 'x-rocketchat-livechat-token': 'wrong' }))?.status).toBe(403);
    expect(s.authenticate(request(livechatBody))?.status).toBe(401);
  });
  it('accept limits what a channel takes', () => {
    const onlyLivechat = source({ accept: ['livechat'], outgoing_token: undefined });
    expect(onlyLivechat.authenticate(request(outgoingBody))?.status).toBe(401);
    expect(onlyLivechat.authenticate(request(livechatBody, { 'x-rocketchat-livechat-token': LIVECHAT }))).toBeNull();
    const onlyOutgoing = source({ accept: ['outgoing'], livechat_token: undefined });
    expect(onlyOutgoing.authenticate(request(livechatBody, { 'x-rocketchat-livechat-token': LIVECHAT }))?.status).toBe(403);
    expect(onlyOutgoing.authenticate(request(outgoingBody))).toBeNull();
  });
  it('a channel that accepts a kind must have its token', () => {
    const r = rocketChatWebhookConfigSchema.safeParse({ kind: 'rocketchat_webhook', accept: ['outgoing', 'livechat'], outgoing_token: 'x' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['livechat_token']);
  });
  it('answers 200 with an empty body, so nothing is posted back into the room', () => {
    expect(source().acceptedResponse).toEqual({ status: 200, contentType: 'text/plain; charset=utf-8', body: '' });
  });
  it('the envelope check refuses what is neither kind', () => {
    const s = source();
    expect(s.checkEnvelope(JSON.parse(outgoingBody))).toBeNull();
    expect(s.checkEnvelope(JSON.parse(livechatBody))).toBeNull();
    expect(s.checkEnvelope({ hello: 'world' })).toMatch(/neither/);
    expect(s.checkEnvelope([1])).toMatch(/not a JSON object/);
  });
});
