/**
 * WhatsApp Cloud API parser: every webhook the project carries (the analyst samples in
 * fixtures/whatsapp and the parser's cases in test/fixtures/whatsapp, all written for Switchboard
 * from Meta's webhook reference, see each SOURCES.md) has a documented outcome; what users rely on;
 * odd input never throws. Payloads written by others: test/conformance/whatsapp-corpus.test.ts.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { messageErrorCodes, type CanonicalMessage, type ParseResult } from '../../src/core/canonical-message.js';
import { parseWhatsAppCloud, parserErrorCodes } from '../../src/connectors/sources/whatsapp-cloud-parse.js';
import { checkWhatsAppOutcomes, expectValid, webhookFiles, whatsappParseContext, type Outcome } from '../support/whatsapp-outcomes.js';

const files = webhookFiles([
  fileURLToPath(new URL('../../fixtures/whatsapp/', import.meta.url)),
  fileURLToPath(new URL('../fixtures/whatsapp/', import.meta.url)),
]);
const fixtureFiles = [...files.keys()].sort();
const ctx = whatsappParseContext;

function fixtureBytes(name: string): Buffer {
  const file = files.get(name);
  if (file === undefined) throw new Error(`no fixture ${name}`);
  return readFileSync(file);
}
function parseFixture(name: string): ParseResult {
  return parseWhatsAppCloud(fixtureBytes(name), ctx);
}
function parseJson(body: unknown): ParseResult {
  return parseWhatsAppCloud(Buffer.from(JSON.stringify(body)), ctx);
}
function only(result: ParseResult): CanonicalMessage {
  expect(result.messages).toHaveLength(1);
  const m = result.messages[0];
  if (m === undefined) throw new Error('no message');
  return m;
}

/** A webhook with one `messages` change, for synthetic cases. */
function envelope(value: Record<string, unknown>, extraChanges: unknown[] = []): unknown {
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: 'WABA1',
        changes: [
          {
            field: 'messages',
            value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: 'PNID1' }, ...value },
          },
          ...extraChanges,
        ],
      },
    ],
  };
}
const textMessage = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  from: '4915112345678',
  id: 'wamid.T1',
  timestamp: '1767225600',
  type: 'text',
  text: { body: 'hello' },
  ...over,
});

// ---------------------------------------------------------------------------------------------
// The outcome table: one row per fixture. Adding a fixture without a row fails the suite.
// ---------------------------------------------------------------------------------------------

const outcomes: Record<string, Outcome> = {
  // fixtures/whatsapp: the analyst samples the mapping and channel tests use
  'sample_batch_order_sticker_flow_status_call.json': {
    messages: ['order', 'sticker', 'interactive'],
    statuses: 1,
    ignored: ['entry[0].changes[0].value.calls (1)'],
    sourceErrors: 0,
    note: 'batch in one value; the call is ignored, not lost; order quantity "1" is a string',
  },
  'sample_bsuid_only_text.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0, note: 'sender known only by its BSUID' },
  'sample_contacts.json': { messages: ['contacts'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_document.json': { messages: ['document'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_image.json': { messages: ['image'], statuses: 0, ignored: [], sourceErrors: 0, note: 'carries the media url' },
  'sample_interactive_button_reply.json': { messages: ['interactive'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_location.json': { messages: ['location'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_reaction.json': { messages: ['reaction'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_reaction_removed.json': { messages: ['reaction'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_reply.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_status_delivered.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'sample_sticker.json': { messages: ['sticker'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_text.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'sample_unsupported_edit.json': {
    messages: ['unsupported'],
    statuses: 0,
    ignored: [],
    sourceErrors: 0,
    note: 'Meta itself reports the edit as unsupported (131051) for Cloud API numbers',
  },
  'sample_voice.json': { messages: ['audio'], statuses: 0, ignored: [], sourceErrors: 0 },
  // test/fixtures/whatsapp: the parser's cases
  'audio_file.json': { messages: ['audio'], statuses: 0, ignored: [], sourceErrors: 0 },
  'button_template_quick_reply.json': { messages: ['button'], statuses: 0, ignored: [], sourceErrors: 0 },
  'edit_image.json': { messages: ['edit'], statuses: 0, ignored: [], sourceErrors: 0 },
  'flow_reply.json': { messages: ['interactive'], statuses: 0, ignored: [], sourceErrors: 0 },
  'interactive_list_reply.json': { messages: ['interactive'], statuses: 0, ignored: [], sourceErrors: 0 },
  'interactive_missing_value_error.json': {
    messages: ['unsupported'],
    statuses: 0,
    ignored: [],
    sourceErrors: 1,
    note: 'type "interactive" without an interactive object, plus value-level error 131000',
  },
  'location_current.json': { messages: ['location'], statuses: 0, ignored: [], sourceErrors: 0 },
  'order_items.json': { messages: ['order'], statuses: 0, ignored: [], sourceErrors: 0 },
  'revoke_placeholders.json': {
    messages: ['revoke'],
    statuses: 0,
    ignored: [],
    sourceErrors: 0,
    note: 'placeholder "from": platform id kept, no phone, contact not matched',
  },
  'status_failed_131049.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'status_group_read.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'status_played.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'status_read.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'status_sent_minimal.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0, note: 'no conversation, no pricing' },
  'status_sent_pmp.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'sticker_animated.json': { messages: ['sticker'], statuses: 0, ignored: [], sourceErrors: 0 },
  'system_identity_change.json': { messages: ['system'], statuses: 0, ignored: [], sourceErrors: 0 },
  'system_number_change.json': { messages: ['system'], statuses: 0, ignored: [], sourceErrors: 0, note: 'no contacts array at all' },
  'text_click_to_whatsapp_referral.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'text_forwarded_many_times.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'text_referred_product.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'unsupported_unknown_type.json': { messages: ['unsupported'], statuses: 0, ignored: [], sourceErrors: 0 },
  'video_forwarded.json': { messages: ['video'], statuses: 0, ignored: [], sourceErrors: 0 },
};

describe('WhatsApp fixtures: every file has a documented outcome', () => checkWhatsAppOutcomes(files, outcomes));

describe('WhatsApp parse: what users rely on', () => {
  it('a reaction and its removal share a wamid but not a dedup key', () => {
    const added = only(parseFixture('sample_reaction.json'));
    const removed = only(parseFixture('sample_reaction_removed.json'));
    expect(added.id).toBe(removed.id);
    expect(added.dedup_key).not.toBe(removed.dedup_key);
    expect(added.reaction).toEqual({ target_id: 'wamid.SAMPLE-OUTBOUND-0001', emoji: '🙏' });
    expect(added.text).toBe('🙏');
    expect(added.dedup_key).toBe(`${added.id}:reaction:🙏:1749415795`);
    expect(removed.reaction?.emoji).toBeNull();
    expect(removed.text).toBeUndefined();
    expect(removed.dedup_key).toBe(`${removed.id}:reaction:removed:1749415950`);
  });

  it('a sender known only by BSUID has no phone, and the thread is keyed on the BSUID', () => {
    const sample = only(parseFixture('sample_bsuid_only_text.json'));
    expect(sample.sender).toEqual({ user_id: 'US.5550001234567890123', parent_user_id: 'US.ENT.5550009876543210987', display_name: 'Robin Username' });
    expect(sample.conversation_id).toBe('whatsapp:US.5550001234567890123');
    const result = parseJson(
      envelope({
        contacts: [{ profile: { name: 'Ana', username: 'ana.b' }, user_id: 'BR.1234567890', parent_user_id: 'BR.ENT.99' }],
        messages: [{ from_user_id: 'BR.1234567890', id: 'wamid.B1', timestamp: '1767225600', type: 'text', text: { body: 'oi' } }],
      }),
    );
    expectValid(result);
    const m = only(result);
    expect(m.kind).toBe('text');
    expect(m.sender).toEqual({ user_id: 'BR.1234567890', parent_user_id: 'BR.ENT.99', username: 'ana.b', display_name: 'Ana' });
    expect(m.sender.phone).toBeUndefined();
    expect(m.conversation_id).toBe('whatsapp:BR.1234567890');
  });

  it('a sender with phone and BSUID gets both, matched to its contact entry', () => {
    const m = only(parseFixture('sample_reply.json'));
    expect(m.sender).toEqual({
      phone: '+15551234567',
      platform_id: '15551234567',
      user_id: 'US.5550001234567890123',
      parent_user_id: 'US.ENT.5550009876543210987',
      display_name: 'Jane Demo',
    });
    expect(m.conversation_id).toBe('whatsapp:15551234567');
    expect(m.reply_to).toEqual({ id: 'wamid.SAMPLE-OUTBOUND-0002', from: '15550100100' });
  });

  it('placeholder ids are never turned into phone numbers', () => {
    const m = only(parseFixture('revoke_placeholders.json'));
    expect(m.sender.phone).toBeUndefined();
    expect(m.sender.platform_id).toBe('<WHATSAPP_USER_PHONE_NUMBER>');
    // The only contact has another wa_id: it is not attributed to this sender.
    expect(m.sender.display_name).toBeUndefined();
    expect(m.original_id).toBe('<ORIGINAL_WHATSAPP_MESSAGE_ID>');
  });

  it('a batch gives several messages, across values, changes and entries', () => {
    const batch = parseFixture('sample_batch_order_sticker_flow_status_call.json');
    expect(batch.messages.map((m) => m.id)).toEqual(['wamid.SAMPLE-BATCH-ORDER', 'wamid.SAMPLE-BATCH-STICKER', 'wamid.SAMPLE-BATCH-FLOW']);
    expect(batch.statuses.map((s) => s.dedup_key)).toEqual(['wamid.SAMPLE-OUTBOUND-0004:sent']);

    const multi = {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: 'WABA1',
          changes: [
            { field: 'messages', value: { metadata: { phone_number_id: 'P1' }, messages: [textMessage({ id: 'wamid.A' }), textMessage({ id: 'wamid.B' })] } },
            { field: 'account_update', value: { event: 'VERIFIED_ACCOUNT' } },
          ],
        },
        { id: 'WABA2', changes: [{ field: 'messages', value: { metadata: { phone_number_id: 'P2' }, messages: [textMessage({ id: 'wamid.C' })] } }] },
      ],
    };
    const result = parseJson(multi);
    expectValid(result);
    expect(result.messages.map((m) => [m.id, m.source.account_id, m.source.endpoint_id])).toEqual([
      ['wamid.A', 'WABA1', 'P1'],
      ['wamid.B', 'WABA1', 'P1'],
      ['wamid.C', 'WABA2', 'P2'],
    ]);
    expect(result.ignored).toEqual([
      { what: 'entry[0].changes[1] (field "account_update")', reason: expect.stringContaining('only the "messages" field') },
    ]);
  });

  it('a flow reply (nfm_reply) carries its parsed response', () => {
    const m = only(parseFixture('flow_reply.json'));
    expect(m.kind).toBe('interactive');
    expect(m.text).toBe('Sent');
    expect(m.interactive).toEqual({
      type: 'nfm_reply',
      flow_name: 'symptom_check',
      response: { flow_token: 'FT-TEST-1', pain_level: '3', symptoms: 'cough, mild fever', wants_call: '1' },
    });
    const batch = parseFixture('sample_batch_order_sticker_flow_status_call.json').messages[2];
    expect(batch?.interactive?.response).toEqual({ flow_token: 'FT-SAMPLE-7', rating: '5', comment: 'Very kind staff' });
    expect(batch?.referred_product).toEqual({ catalog_id: '555000000000900', product_retailer_id: 'CARE-KIT-1' });
  });

  it('a flow reply whose response_json is not JSON is kept raw, without crashing', () => {
    for (const responseJson of ['{not json', '[1,2]', '"just a string"']) {
      const result = parseJson(
        envelope({
          messages: [
            {
              from: '4915112345678',
              id: 'wamid.F1',
              timestamp: '1767225600',
              type: 'interactive',
              interactive: { type: 'nfm_reply', nfm_reply: { name: 'f', body: 'Sent', response_json: responseJson } },
            },
          ],
        }),
      );
      expectValid(result);
      const m = only(result);
      expect(m.kind).toBe('interactive');
      expect(m.interactive?.response).toBeUndefined();
      expect(m.interactive?.response_raw).toBe(responseJson);
      expect(m.errors.map((e) => e.code)).toEqual([parserErrorCodes.flowResponseNotJson]);
    }
  });

  it('an edit carries the original id and the new content', () => {
    const m = only(parseFixture('edit_image.json'));
    expect(m.kind).toBe('edit');
    expect(m.original_id).toBe('wamid.TEST-IMAGE-0001');
    expect(m.text).toBe('The rash on my left arm, two days later');
    expect(m.media).toEqual([
      {
        kind: 'image',
        media_id: '555000000000205',
        mime_type: 'image/jpeg',
        sha256: 'ZWRpdGVkIGltYWdl',
        url: 'https://media.example.invalid/whatsapp/555000000000205',
        caption: 'The rash on my left arm, two days later',
      },
    ]);

    const textEdit = only(
      parseJson(
        envelope({
          messages: [
            {
              from: '4915112345678',
              id: 'wamid.E2',
              timestamp: '1767225600',
              type: 'edit',
              edit: { original_message_id: 'wamid.ORIG', message: { type: 'text', text: { body: 'corrected: 10 mg' } } },
            },
          ],
        }),
      ),
    );
    expect(textEdit).toMatchObject({ kind: 'edit', original_id: 'wamid.ORIG', text: 'corrected: 10 mg', media: [] });
  });

  it('an edit whose new content cannot be read is unsupported but keeps the original id', () => {
    const m = only(
      parseJson(
        envelope({
          messages: [
            { from: '4915112345678', id: 'wamid.E3', timestamp: '1767225600', type: 'edit', edit: { original_message_id: 'wamid.ORIG', message: { type: 'text' } } },
          ],
        }),
      ),
    );
    expect(m).toMatchObject({ kind: 'unsupported', original_id: 'wamid.ORIG', unsupported: { type: 'edit' } });
    expect(m.errors[0]?.code).toBe(messageErrorCodes.malformed);
  });

  it('statuses never become messages; unknown status words are kept', () => {
    for (const file of fixtureFiles.filter((f) => f.startsWith('status_') || f.startsWith('sample_status_'))) {
      const result = parseFixture(file);
      expect(result.messages, file).toEqual([]);
      expect(result.statuses.length, file).toBeGreaterThan(0);
    }
    expect(fixtureFiles.filter((f) => f.includes('status_')).length).toBeGreaterThanOrEqual(6);
    const failed = parseFixture('status_failed_131049.json').statuses[0];
    expect(failed).toMatchObject({ status: 'failed', source_status: 'failed', recipient_id: '15551234567' });
    expect(failed?.errors).toEqual([
      {
        code: 131049,
        title: 'This message was not delivered to maintain healthy ecosystem engagement.',
        detail: 'In order to maintain a healthy ecosystem engagement, the message failed to be delivered.',
      },
    ]);

    const odd = parseJson(
      envelope({
        statuses: [
          { id: 'wamid.S1', status: 'pending_review', timestamp: '1767225600', recipient_id: '4915112345678' },
          { id: 'wamid.S1', status: 'constructor', timestamp: '1767225600' },
          { status: 'read', timestamp: '1767225600' },
        ],
      }),
    );
    expectValid(odd);
    expect(odd.messages).toEqual([]);
    expect(odd.statuses.map((s) => [s.status, s.source_status, s.dedup_key])).toEqual([
      ['unknown', 'pending_review', 'wamid.S1:pending_review'],
      ['unknown', 'constructor', 'wamid.S1:constructor'],
    ]);
    expect(odd.ignored).toEqual([{ what: 'entry[0].changes[0].value.statuses[2]', reason: 'the status names no message id' }]);
  });

  it('timestamps are ISO instants in UTC ending in Z', () => {
    for (const file of fixtureFiles) {
      const result = parseFixture(file);
      for (const m of result.messages) expect(m.sent_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$/);
      for (const s of result.statuses) expect(s.occurred_at).toMatch(/Z$/);
    }
    expect(only(parseFixture('sample_text.json')).sent_at).toBe('2025-06-08T20:58:41.000Z');
  });

  it('non-ASCII text survives, from \\uXXXX escapes as Meta sends them', () => {
    const body = JSON.stringify(envelope({ messages: [textMessage({ text: { body: "J'ai mangé des pâtes みどりいろ 👍 שלום" } })] }));
    const escaped = body.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    expect(escaped).not.toMatch(/[^\x00-\x7f]/);
    const m = only(parseWhatsAppCloud(Buffer.from(escaped, 'utf8'), ctx));
    expect(m.text).toBe("J'ai mangé des pâtes みどりいろ 👍 שלום");
  });

  it('maps each type to its canonical fields', () => {
    const voice = only(parseFixture('sample_voice.json'));
    expect(voice.media[0]).toMatchObject({ kind: 'audio', voice: true, mime_type: 'audio/ogg; codecs=opus' });
    expect(only(parseFixture('audio_file.json')).media[0]?.voice).toBe(false);
    expect(only(parseFixture('sticker_animated.json')).media[0]).toMatchObject({ kind: 'sticker', animated: true });
    expect(only(parseFixture('sample_sticker.json')).media[0]?.animated).toBe(false);
    expect(only(parseFixture('sample_document.json')).media[0]).toMatchObject({ kind: 'document', filename: 'referral-letter.pdf', caption: 'My referral letter' });
    expect(only(parseFixture('video_forwarded.json'))).toMatchObject({ kind: 'video', text: 'How I use the inhaler', forwarded: 'once' });
    expect(only(parseFixture('text_forwarded_many_times.json')).forwarded).toBe('many_times');
    expect(only(parseFixture('sample_image.json')).media[0]).toMatchObject({ kind: 'image', url: expect.stringMatching(/^https:\/\//) });

    const location = only(parseFixture('sample_location.json'));
    expect(location.location).toEqual({
      latitude: 39.80172,
      longitude: -89.64371,
      name: 'Springfield Community Clinic',
      address: '100 Main Street, Springfield, IL 62701',
      url: 'https://clinic.example/springfield',
    });
    expect(location.text).toBe('Springfield Community Clinic, 100 Main Street, Springfield, IL 62701');
    expect(only(parseFixture('location_current.json')).location).toEqual({ latitude: 48.85837, longitude: 2.294481 });

    const contacts = only(parseFixture('sample_contacts.json'));
    expect(contacts.contacts).toHaveLength(3);
    expect(contacts.text).toBe('Maria Example, Sam, Alex Sample');

    expect(only(parseFixture('sample_interactive_button_reply.json'))).toMatchObject({
      kind: 'interactive',
      text: 'Confirm',
      interactive: { type: 'button_reply', id: 'appointment-confirm', title: 'Confirm' },
    });
    expect(only(parseFixture('interactive_list_reply.json')).interactive).toEqual({
      type: 'list_reply',
      id: 'slot_thu_pm',
      title: 'Thursday afternoon',
      description: 'Between 2 pm and 5 pm',
    });
    expect(only(parseFixture('button_template_quick_reply.json'))).toMatchObject({
      kind: 'button',
      text: 'Confirm',
      interactive: { type: 'quick_reply', payload: 'CONFIRM_APPT', title: 'Confirm' },
      reply_to: { id: 'wamid.SAMPLE-OUTBOUND-0006', from: '15550100100' },
    });

    const order = only(parseFixture('order_items.json'));
    expect(order.order?.items).toHaveLength(3);
    expect(order.order?.items[0]).toEqual({ product_retailer_id: 'BANDAGE-S', quantity: 3, item_price: 4.5, currency: 'USD' });
    expect(order.text).toBeUndefined();
    expect(parseFixture('sample_batch_order_sticker_flow_status_call.json').messages[0]?.order).toEqual({
      catalog_id: '555000000000900',
      text: 'Please send the home care kit',
      items: [{ product_retailer_id: 'CARE-KIT-1', quantity: 1 }],
    });

    const numberChange = only(parseFixture('system_number_change.json'));
    expect(numberChange.system).toEqual({
      type: 'user_changed_number',
      body: 'Jane Demo changed from 15551234567 to 15559876543',
      new_platform_id: '15559876543',
    });
    expect(numberChange.sender).toEqual({ phone: '+15551234567', platform_id: '15551234567' });
    expect(only(parseFixture('system_identity_change.json')).system?.type).toBe('customer_identity_changed');

    const unsupported = only(parseFixture('unsupported_unknown_type.json'));
    expect(unsupported.unsupported).toEqual({ type: 'poll' });
    expect(unsupported.errors[0]).toEqual({ code: 131051, title: 'Message type unknown', detail: 'Message type is currently not supported.' });

    const referral = only(parseFixture('text_click_to_whatsapp_referral.json'));
    expect(referral.referral).toMatchObject({ source_type: 'ad', ctwa_clid: 'CTWA-SAMPLE-CLICK-ID-0001' });
    expect(only(parseFixture('text_referred_product.json')).referred_product).toEqual({
      catalog_id: '555000000000900',
      product_retailer_id: 'CARE-KIT-1',
    });
  });

  it('group messages are threaded on the group id', () => {
    const m = only(parseJson(envelope({ messages: [textMessage({ group_id: 'GRP.123' })] })));
    expect(m.group_id).toBe('GRP.123');
    expect(m.conversation_id).toBe('GRP.123');
    expect(m.sender.phone).toBe('+4915112345678');
  });

  it('value-level errors become source errors', () => {
    const result = parseFixture('interactive_missing_value_error.json');
    expect(result.source_errors).toEqual([{ code: 131000, title: 'Something went wrong', detail: 'Unsupported webhook payload' }]);
    const m = only(result);
    expect(m.unsupported).toEqual({ type: 'interactive' });
    expect(m.errors.map((e) => e.code)).toEqual([messageErrorCodes.malformed]);
  });
});

describe('WhatsApp parse: odd input never throws', () => {
  it('bodies that are not WhatsApp events are ignored with a reason', () => {
    for (const raw of ['', 'not json', 'null', '[]', '{"object":"page","entry":[]}', '{"object":"whatsapp_business_account"}']) {
      const result = parseWhatsAppCloud(Buffer.from(raw), ctx);
      expect(result.messages).toEqual([]);
      expect(result.statuses).toEqual([]);
      expect(result.ignored).toHaveLength(1);
    }
    expect(parseWhatsAppCloud(Buffer.from('\uFEFF' + JSON.stringify(envelope({ messages: [textMessage()] }))), ctx).messages).toHaveLength(1);
  });

  it('broken messages become unsupported messages with an error, not crashes', () => {
    const result = parseJson(
      envelope({
        contacts: 'not an array',
        messages: [
          null,
          42,
          {},
          textMessage({ id: 'wamid.L', type: 'location', location: { latitude: 'north', longitude: 2 } }),
          textMessage({ id: 'wamid.X', type: 'hologram' }),
          textMessage({ id: 'wamid.O', type: 'order', order: { product_items: [{ product_retailer_id: 'A', quantity: 'many' }] } }),
          textMessage({ id: 'wamid.I', type: 'interactive', interactive: { type: 'call_permission_reply', call_permission_reply: {} } }),
          textMessage({ id: 'wamid.N', timestamp: 'yesterday' }),
          textMessage({ id: 'wamid.Y', timestamp: '99999999999' }),
          textMessage({ id: undefined }),
          textMessage({ id: 'wamid.NS', from: undefined }),
          textMessage({ id: 'wamid.R', type: 'reaction', reaction: { emoji: '👍' } }),
          textMessage({ id: 'wamid.T', text: { body: 7 } }),
        ],
      }),
    );
    expectValid(result);
    const byId = (id: string): CanonicalMessage | undefined => result.messages.find((m) => m.id === id);
    expect(result.messages).toHaveLength(13);
    expect(result.messages.slice(0, 3).every((m) => m.kind === 'unsupported' && m.id.startsWith('unidentified:'))).toBe(true);
    expect(byId('wamid.L')?.kind).toBe('unsupported');
    expect(byId('wamid.X')).toMatchObject({ kind: 'unsupported', unsupported: { type: 'hologram' } });
    expect(byId('wamid.X')?.errors[0]?.code).toBe(messageErrorCodes.unknownType);
    expect(byId('wamid.O')?.kind).toBe('unsupported');
    expect(byId('wamid.I')).toMatchObject({ kind: 'unsupported', unsupported: { type: 'interactive.call_permission_reply' } });
    // A bad timestamp keeps the content and falls back to the received time, flagged.
    expect(byId('wamid.N')).toMatchObject({ kind: 'text', text: 'hello', sent_at: '2026-03-01T12:00:00.000Z' });
    expect(byId('wamid.N')?.errors.map((e) => e.code)).toEqual([messageErrorCodes.timestampInvalid]);
    expect(byId('wamid.Y')?.sent_at).toBe('5138-11-16T09:46:39.000Z');
    expect(byId('wamid.NS')).toMatchObject({ kind: 'unsupported', conversation_id: 'whatsapp:unknown', sender: {} });
    expect(byId('wamid.R')?.kind).toBe('unsupported');
    expect(byId('wamid.T')?.kind).toBe('unsupported');
    // No id: a stable stand-in id, so a redelivery deduplicates.
    const again = parseJson(envelope({ contacts: 'not an array', messages: [textMessage({ id: undefined })] }));
    expect(again.messages[0]?.id).toBe(result.messages[9]?.id);
    expect(result.messages[9]?.id).toMatch(/^unidentified:[0-9a-f]{32}$/);
  });

  it('structural oddities are reported as ignored parts', () => {
    const result = parseJson({
      object: 'whatsapp_business_account',
      entry: [
        'x',
        { id: 'W', changes: [null, { field: 'messages', value: 'nope' }, { value: {} }, { field: 'messages', value: { messages: {}, statuses: 'x', message_echoes: [] } }] },
      ],
    });
    expect(result.messages).toEqual([]);
    expect(result.ignored.map((i) => i.what)).toEqual([
      'entry[0]',
      'entry[1].changes[0]',
      'entry[1].changes[1].value',
      'entry[1].changes[2] (field missing)',
      'entry[1].changes[3].value.messages',
      'entry[1].changes[3].value.statuses',
      'entry[1].changes[3].value.message_echoes (0)',
    ]);
  });

  it('survives thousands of random mutations of the fixtures, always producing valid output', () => {
    let seed = 20260301;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const oddValues: unknown[] = [null, 0, -1, 1e300, '', 'x', '<PLACEHOLDER>', true, [], {}, [null], { type: 'text' }, '1e3'];
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

    const descend = new Set(['entry', 'changes', 'value', 'messages', 'statuses', 'contacts']);
    /** Replaces one random node of the tree with an odd value. */
    const mutate = (node: unknown): unknown => {
      if (Array.isArray(node)) {
        if (node.length === 0 || random() < 0.05) return pick(oddValues);
        const i = Math.floor(random() * node.length);
        return node.map((v, j) => (j === i ? mutate(v) : v));
      }
      if (node !== null && typeof node === 'object') {
        const keys = Object.keys(node);
        if (keys.length === 0 || random() < 0.05) return pick(oddValues);
        // Mostly descend towards the messages, so the parser's inner paths get most of the abuse.
        const deep = keys.filter((key) => descend.has(key));
        const k = deep.length > 0 && random() < 0.8 ? pick(deep) : pick(keys);
        const copy: Record<string, unknown> = { ...(node as Record<string, unknown>) };
        if (random() < 0.1) delete copy[k];
        else copy[k] = mutate(copy[k]);
        return copy;
      }
      return pick(oddValues);
    };

    let produced = 0;
    for (const file of fixtureFiles) {
      const original: unknown = JSON.parse(fixtureBytes(file).toString('utf8'));
      for (let n = 0; n < 150; n++) {
        let doc = original;
        const rounds = 1 + Math.floor(random() * 3);
        for (let r = 0; r < rounds; r++) doc = mutate(doc);
        const result = parseJson(doc);
        expectValid(result);
        // The safety nets (catch-all, canonical fallback) are for bugs; odd input must not reach them.
        expect(result.ignored.filter((i) => i.reason.includes('internal error'))).toEqual([]);
        expect(result.messages.flatMap((m) => m.errors).filter((e) => e.title?.includes('canonical model'))).toEqual([]);
        produced += result.messages.length + result.statuses.length;
      }
    }
    expect(produced).toBeGreaterThan(1000);
  });
});
