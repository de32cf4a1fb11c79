/**
 * Twilio WhatsApp parser: every request body in test/fixtures/twilio (written by us from Twilio's
 * documented parameters, see its SOURCES.md) has a row in the outcome table below.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalMessageSchema, canonicalStatusSchema, messageErrorCodes, type CanonicalMessage, type ParseResult } from '../../src/core/canonical-message.js';
import { parseTwilioWhatsApp } from '../../src/connectors/sources/twilio-whatsapp-parse.js';
import { checkTwilioEnvelope } from '../../src/connectors/sources/twilio-whatsapp.js';

const dir = new URL('../fixtures/twilio/', import.meta.url);
const ctx = { channelId: 'twilio-test', receivedAt: new Date('2026-03-01T12:00:00.000Z') };

function parseFile(name: string): ParseResult {
  return parseTwilioWhatsApp(readFileSync(new URL(name, dir)), ctx);
}
function expectValid(r: ParseResult): void {
  for (const m of r.messages) expect(canonicalMessageSchema.safeParse(m).success).toBe(true);
  for (const s of r.statuses) expect(canonicalStatusSchema.safeParse(s).success).toBe(true);
}

interface Outcome {
  kinds: string[];
  statuses?: string[];
  check?: (r: ParseResult, m: CanonicalMessage | undefined) => void;
}

const table: Record<string, Outcome> = {
  'text.form': {
    kinds: ['text'],
    check: (_r, m) => {
      expect(m).toMatchObject({
        id: 'SM11111111111111111111111111111111',
        dedup_key: 'SM11111111111111111111111111111111',
        text: 'Hello, can I move my appointment to Friday? café ✓ 🙏',
        sender: { phone: '+15551234567', platform_id: '15551234567', display_name: 'Jane Demo' },
        author_role: 'patient',
        conversation_id: 'whatsapp:15551234567',
        source: { kind: 'twilio_whatsapp', account_id: 'AC8f3c2e1d0b9a8f7e6d5c4b3a2f1e0d9c', endpoint_id: 'MG0123456789abcdef0123456789abcdef', endpoint_display: '+14155238886' },
        sent_at: '2026-03-01T12:00:00.000Z',
        errors: [],
      });
      expect(m?.referral).toBeUndefined();
    },
  },
  'image_with_caption.form': {
    kinds: ['image'],
    check: (_r, m) => {
      expect(m?.text).toBe('Rash on my arm since Monday');
      expect(m?.media).toEqual([
        {
          kind: 'image',
          media_id: 'ME22222222222222222222222222222222',
          mime_type: 'image/jpeg',
          url: 'https://api.twilio.com/2010-04-01/Accounts/AC8f3c2e1d0b9a8f7e6d5c4b3a2f1e0d9c/Messages/MM22222222222222222222222222222222/Media/ME22222222222222222222222222222222',
          caption: 'Rash on my arm since Monday',
        },
      ]);
    },
  },
  'two_documents.form': {
    kinds: ['document'],
    check: (_r, m) => {
      expect(m?.media.map((x) => [x.kind, x.mime_type, x.media_id])).toEqual([
        ['document', 'application/pdf', 'ME33333333333333333333333333333330'],
        ['audio', 'audio/ogg', 'ME33333333333333333333333333333331'],
      ]);
      expect(m?.text).toBeUndefined();
      expect(m?.errors).toEqual([]);
    },
  },
  'location.form': {
    kinds: ['location'],
    check: (_r, m) => {
      expect(m?.location).toEqual({ latitude: 37.7749295, longitude: -122.4194155, name: 'Clinic entrance', address: '1 Market St, San Francisco, CA' });
      expect(m?.text).toBe('Clinic entrance, 1 Market St, San Francisco, CA');
    },
  },
  'button_reply.form': {
    kinds: ['button'],
    check: (_r, m) => {
      expect(m?.interactive).toEqual({ type: 'quick_reply', title: 'Confirm', payload: 'appt-4711-confirm' });
      expect(m?.reply_to).toEqual({ id: 'MM99999999999999999999999999999999', from: '+14155238886' });
      expect(m?.text).toBe('Confirm');
    },
  },
  'reply_forwarded.form': {
    kinds: ['text'],
    check: (_r, m) => {
      expect(m?.forwarded).toBe('once');
      expect(m?.reply_to?.id).toBe('SM12121212121212121212121212121212');
    },
  },
  'frequently_forwarded.form': { kinds: ['text'], check: (_r, m) => expect(m?.forwarded).toBe('many_times') },
  'bsuid_username_only.form': {
    kinds: ['text'],
    check: (_r, m) => {
      expect(m?.sender).toEqual({ user_id: 'US.13491208655302741918', display_name: 'Jane Demo' });
      expect(m?.conversation_id).toBe('whatsapp:US.13491208655302741918');
      expect(m?.errors).toEqual([]);
    },
  },
  'referral_ctwa.form': {
    kinds: ['text'],
    check: (_r, m) => {
      expect(m?.referral).toMatchObject({ body: 'Flu shots this week', headline: 'Book now', source_type: 'ad', source_id: '120209876543210', source_url: 'https://fb.me/abc123', num_media: '0' });
      expect(String(m?.referral?.['ctwa_clid'])).toMatch(/^ARAk/);
    },
  },
  'text_unencoded_colon.form': {
    kinds: ['text'],
    check: (_r, m) => {
      expect(m?.sender.phone).toBe('+15551234567');
      expect(m?.source.endpoint_id).toBe('+14155238886');
    },
  },
  'status_read.form': {
    kinds: [],
    statuses: ['read'],
    check: (r) => expect(r.statuses[0]).toMatchObject({ source_kind: 'twilio_whatsapp', message_id: 'SM11111111111111111111111111111111', source_status: 'read', dedup_key: 'SM11111111111111111111111111111111:read', recipient_id: '+15551234567', errors: [] }),
  },
  'status_undelivered_63018.form': {
    kinds: [],
    statuses: ['failed'],
    check: (r) => expect(r.statuses[0]).toMatchObject({ source_status: 'undelivered', errors: [{ code: 63018 }] }),
  },
  'empty_message.form': {
    kinds: ['unsupported'],
    check: (_r, m) => {
      expect(m?.unsupported).toEqual({ type: 'reaction' });
      expect(m?.errors.map((e) => e.code)).toEqual([messageErrorCodes.unknownType]);
    },
  },
  'num_media_mismatch.form': {
    kinds: ['image'],
    check: (_r, m) => {
      expect(m?.media).toHaveLength(1);
      expect(m?.errors).toEqual([{ code: messageErrorCodes.malformed, title: 'NumMedia says 2 but 1 MediaUrlN parameter(s) were sent' }]);
    },
  },
};

describe('every Twilio request body in test/fixtures/twilio has a documented outcome', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.form')).sort();
  it('the table covers exactly the fixture files', () => {
    expect(Object.keys(table).sort()).toEqual(files);
  });
  for (const file of files) {
    it(file, () => {
      const outcome = table[file];
      if (!outcome) throw new Error(`no outcome row for ${file}`);
      const r = parseFile(file);
      expectValid(r);
      expect(r.messages.map((m) => m.kind)).toEqual(outcome.kinds);
      expect(r.statuses.map((s) => s.status)).toEqual(outcome.statuses ?? []);
      expect(checkTwilioEnvelope(Object.fromEntries(new URLSearchParams(readFileSync(new URL(file, dir), 'utf8'))))).toBeNull();
      outcome.check?.(r, r.messages[0]);
    });
  }
});

describe('odd input never throws', () => {
  const cases: [string, string][] = [
    ['empty body', ''],
    ['not a form', '\u0000\u0001{"json": true}'],
    ['no MessageSid', 'From=whatsapp%3A%2B15551234567&Body=hi'],
    ['status without MessageSid', 'MessageStatus=read'],
    ['bad coordinates', 'MessageSid=SM11111111111111111111111111111111&From=whatsapp%3A%2B15551234567&Latitude=north&Longitude=1'],
    ['bad From', 'MessageSid=SM11111111111111111111111111111111&From=sms%3A12&Body=x'],
    ['no sender', 'MessageSid=SM11111111111111111111111111111111&Body=x'],
    ['non-URL media', 'MessageSid=SM11111111111111111111111111111111&From=whatsapp%3A%2B15551234567&NumMedia=1&MediaUrl0=ftp%3A%2F%2Fx'],
    ['huge NumMedia', 'MessageSid=SM11111111111111111111111111111111&From=whatsapp%3A%2B15551234567&NumMedia=99999&Body=x'],
  ];
  for (const [name, body] of cases) {
    it(name, () => {
      const r = parseTwilioWhatsApp(Buffer.from(body, 'latin1'), ctx);
      expectValid(r);
      expect(r.messages.length + r.statuses.length + r.ignored.length).toBeGreaterThan(0);
    });
  }

  it('a request without MessageSid is kept as unsupported with a stable stand-in id', () => {
    const raw = Buffer.from('From=whatsapp%3A%2B15551234567&Body=hi');
    const a = parseTwilioWhatsApp(raw, ctx).messages[0];
    const b = parseTwilioWhatsApp(raw, ctx).messages[0];
    expect(a?.kind).toBe('unsupported');
    expect(a?.id).toMatch(/^unidentified:[0-9a-f]{32}$/);
    expect(a?.id).toBe(b?.id);
  });

  it('MessageStatus=received on an inbound message is still a message, not a status', () => {
    const r = parseTwilioWhatsApp(Buffer.from('MessageSid=SM11111111111111111111111111111111&From=whatsapp%3A%2B15551234567&Body=hi&MessageStatus=received&SmsStatus=received'), ctx);
    expect(r.statuses).toEqual([]);
    expect(r.messages.map((m) => m.kind)).toEqual(['text']);
  });

  it('no sender: unsupported with an error', () => {
    const m = parseTwilioWhatsApp(Buffer.from('MessageSid=SM11111111111111111111111111111111&Body=x'), ctx).messages[0];
    expect(m?.kind).toBe('unsupported');
    expect(m?.errors.some((e) => e.title?.includes('names no sender'))).toBe(true);
  });
});

describe('the envelope check at the edge', () => {
  const ok = { MessageSid: 'SM11111111111111111111111111111111', AccountSid: 'AC8f3c2e1d0b9a8f7e6d5c4b3a2f1e0d9c' };
  it('refuses what is not a Twilio Messaging webhook', () => {
    expect(checkTwilioEnvelope(ok)).toBeNull();
    expect(checkTwilioEnvelope({ ...ok, MessageSid: undefined })).toMatch(/MessageSid is missing/);
    expect(checkTwilioEnvelope({ ...ok, MessageSid: ['SM11111111111111111111111111111111', 'SM11111111111111111111111111111112'] })).toMatch(/repeated/);
    expect(checkTwilioEnvelope({ ...ok, MessageSid: 'hello' })).toMatch(/not a Twilio SID/);
    expect(checkTwilioEnvelope({ ...ok, AccountSid: 'nope' })).toMatch(/AccountSid/);
    expect(checkTwilioEnvelope('x')).not.toBeNull();
  });
});
