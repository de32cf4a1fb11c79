/**
 * One canonical model, one mapping: messages parsed from Twilio, Rocket.Chat (webhook and poll)
 * and generic chat-webhook payloads map to valid FHIR R4 Communications with BOTH shipped
 * mappings (whatsapp-to-communication.jsonata and the source-neutral chat-to-communication.jsonata),
 * checked by our validator and by the independent `fhir` package.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Fhir } from 'fhir';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CanonicalMessage } from '../../src/core/canonical-message.js';
import type { SourceInstance } from '../../src/connectors/types.js';
import { validateFhirResource } from '../../src/fhir/validate-resource.js';
import { loadMapping, type CompiledMapping } from '../../src/mapping/jsonata-mapping.js';
import { parseTwilioWhatsApp } from '../../src/connectors/sources/twilio-whatsapp-parse.js';
import { rocketChatWebhookConfigSchema, rocketChatWebhookSource } from '../../src/connectors/sources/rocketchat-webhook.js';
import { parseRocketChatPoll } from '../../src/connectors/sources/rocketchat-poll.js';
import { chatWebhookConfigSchema, chatWebhookSource } from '../../src/connectors/sources/chat-webhook.js';

const ctx = { channelId: 'map-test', receivedAt: new Date('2026-03-01T12:00:00.000Z') };
const ID_SYSTEM = 'https://switchboard.example/sid/chat-message-id';
const PATIENT = { reference: 'Patient/7f0c1d2e-0000-4000-8000-000000000001', display: 'Jane Demo' };
type Json = Record<string, unknown>;

const twilio = (f: string): CanonicalMessage[] => parseTwilioWhatsApp(readFileSync(new URL(`../fixtures/twilio/${f}`, import.meta.url)), ctx).messages;
const rc = rocketChatWebhookSource.create(rocketChatWebhookConfigSchema.parse({ kind: 'rocketchat_webhook', outgoing_token: 't', livechat_token: 'l' }), { channelId: 'rc' });
const rocket = async (f: string, dir = '../fixtures/rocketchat/'): Promise<CanonicalMessage[]> => (await rc.parse(readFileSync(new URL(`${dir}${f}`, import.meta.url)), ctx)).messages;
const historyPage = JSON.parse(readFileSync(new URL('../fixtures/rocketchat/history/channels_history.json', import.meta.url), 'utf8')) as { messages: unknown[] };
let generic: SourceInstance;

const cases: [string, () => CanonicalMessage[] | Promise<CanonicalMessage[]>][] = [
  ['twilio text', () => twilio('text.form')],
  ['twilio image with caption', () => twilio('image_with_caption.form')],
  ['twilio two documents', () => twilio('two_documents.form')],
  ['twilio location', () => twilio('location.form')],
  ['twilio button reply (inResponseTo)', () => twilio('button_reply.form')],
  ['twilio BSUID sender without phone', () => twilio('bsuid_username_only.form')],
  ['twilio empty (unsupported)', () => twilio('empty_message.form')],
  ['rocket.chat outgoing text', () => rocket('outgoing_message_sent.json')],
  ['rocket.chat file upload', () => rocket('outgoing_file_uploaded.json')],
  ['rocket.chat livechat agent (staff)', () => rocket('livechat_message_agent.json')],
  ['rocket.chat session close (edit, image, closing comment)', () => rocket('livechat_session_close.json')],
  ['rocket.chat offline message', () => rocket('livechat_offline_message.json')],
  ['rocket.chat poll (history page)', () => parseRocketChatPoll(Buffer.from(JSON.stringify({ rocketchat_poll: { server: 'https://chat.clinic.example', room: { id: 'RCroomPatientDesk', type: 'channel' }, messages: historyPage.messages } })), ctx, { staffUsers: new Set() }).messages],
  [
    'generic chat webhook',
    async () =>
      (await generic.parse(
        Buffer.from(JSON.stringify({ id: 'acme-1', at: '2026-03-01T11:59:00+00:00', from: { id: 'u1', name: 'Jane Demo', phone: '+15551234567' }, text: 'Hello', file: { url: 'https://files.acme.example/1', mime: 'application/pdf', name: 'referral.pdf' } })),
        ctx,
      )).messages,
  ],
  [
    'a downloaded attachment (url) and an inline one (data)',
    () => {
      const [m] = twilio('two_documents.form');
      const hash = Buffer.alloc(20, 1).toString('base64');
      return [
        {
          ...m!,
          media: [
            { ...m!.media[0]!, attachment: { content_type: 'application/pdf', size: 1234, hash, url: 'https://switchboard.example/media/'.concat('a'.repeat(64)) } },
            { ...m!.media[1]!, attachment: { content_type: 'audio/ogg', size: 4, hash, data: Buffer.from('OggS').toString('base64') } },
          ],
        },
      ];
    },
  ],
];

const mappings: Record<string, CompiledMapping> = {};
let lantana: Fhir;
beforeAll(async () => {
  mappings['whatsapp-to-communication'] = await loadMapping(fileURLToPath(new URL('../../mappings/whatsapp-to-communication.jsonata', import.meta.url)));
  mappings['chat-to-communication'] = await loadMapping(fileURLToPath(new URL('../../mappings/chat-to-communication.jsonata', import.meta.url)));
  lantana = new Fhir();
  generic = chatWebhookSource.create(
    chatWebhookConfigSchema.parse({
      kind: 'chat_webhook',
      platform: 'acme-chat',
      auth: { kind: 'bearer', token: 't' },
      extract: `{ 'id': id, 'sent_at': at, 'sender': { 'platform_id': from.id, 'display_name': from.name, 'phone': from.phone }, 'author_role': 'patient', 'text': text, 'media': file.{ 'kind': 'document', 'url': url, 'mime_type': mime, 'filename': name } }`,
    }),
    { channelId: 'acme' },
  );
});

async function map(name: string, msg: CanonicalMessage, patient: typeof PATIENT | null): Promise<Json> {
  const out = await mappings[name]!.evaluate(msg, { now: new Date(msg.received_at), bindings: { patient, identifier_system: ID_SYSTEM, channel: { id: 'demo' } } });
  expect(out).toBeDefined();
  return JSON.parse(JSON.stringify(out)) as Json;
}

function expectValid(resource: Json): void {
  expect(validateFhirResource(resource, 'Communication')).toEqual({ ok: true });
  const independent = lantana.validate(resource);
  expect(independent.messages?.filter((m) => m.severity === 'error') ?? []).toEqual([]);
}

describe.each(['whatsapp-to-communication', 'chat-to-communication'])('%s maps every new source to a valid Communication', (name) => {
  for (const [label, make] of cases) {
    it(label, async () => {
      const messages = await make();
      expect(messages.length).toBeGreaterThan(0);
      for (const m of messages) {
        for (const patient of [PATIENT, null]) {
          const c = await map(name, m, patient);
          expectValid(c);
          expect(c['identifier']).toEqual([{ system: ID_SYSTEM, value: m.id }]);
        }
      }
    });
  }
});

describe('chat-to-communication: what differs from the WhatsApp mapping', () => {
  it('names the platform in medium and in the sender identifier system', async () => {
    const c = await map('chat-to-communication', (await rocket('outgoing_message_sent.json'))[0]!, null);
    expect(JSON.stringify(c['medium'])).toContain('"code":"rocketchat"');
    expect(c['sender']).toMatchObject({ identifier: { system: 'https://switchboard.example/sid/rocketchat-user', value: 'hY3mK9pQ2wR5tZ8vX' } });
    const t = await map('chat-to-communication', twilio('text.form')[0]!, null);
    expect(JSON.stringify(t['medium'])).toContain('"code":"whatsapp"');
    const g = await map('chat-to-communication', (await cases.find(([l]) => l === 'generic chat webhook')![1]())[0]!, null);
    expect(JSON.stringify(g['medium'])).toContain('"code":"acme-chat"');
  });

  it('staff messages are "staff-message" and never have the Patient as sender', async () => {
    const staff = (await rocket('livechat_message_agent.json'))[0]!;
    const c = await map('chat-to-communication', staff, PATIENT);
    expect(JSON.stringify(c['category'])).toContain('staff-message');
    expect(c['sender']).not.toEqual(PATIENT);
  });

  it('a downloaded attachment carries contentType, size, SHA-1 hash and url or data', async () => {
    const [m] = await cases.find(([l]) => l.startsWith('a downloaded'))![1]();
    const c = await map('chat-to-communication', m!, PATIENT);
    const atts = (c['payload'] as Json[]).map((p) => p['contentAttachment']).filter(Boolean);
    expect(atts).toEqual([
      expect.objectContaining({ contentType: 'application/pdf', size: 1234, hash: Buffer.alloc(20, 1).toString('base64'), url: expect.stringMatching(/\/media\/a{64}$/) }),
      expect.objectContaining({ contentType: 'audio/ogg', size: 4, data: 'T2dnUw==' }),
    ]);
    expect((atts[1] as Json)['url']).toBeUndefined();
  });
});
