/**
 * Twilio WhatsApp webhook (form-encoded) -> canonical messages and statuses. A pure function over
 * the raw stored bytes: no I/O, no clock, no randomness, and it never throws on odd input.
 *
 * Parameters: Twilio's documented webhook request for WhatsApp (docs/sources/twilio-whatsapp.md).
 *  - an inbound message: `MessageSid`, `From`/`To` (`whatsapp:+E164`, or `whatsapp:US.123` for a
 *    username-only user), `Body`, `NumMedia` + `MediaUrlN`/`MediaContentTypeN`, location
 *    (`Latitude`, `Longitude`, `Address`, `Label`), quick replies (`ButtonText`, `ButtonPayload`),
 *    `OriginalRepliedMessageSid`, `ProfileName`, `WaId`, `ExternalUserId`, `Forwarded`,
 *    `FrequentlyForwarded`, `Referral*`;
 *  - a status callback: `MessageSid` + `MessageStatus` (+ `ErrorCode`), recorded as a status.
 * Twilio sends no message time: `sent_at` is the time Switchboard received the request.
 */
import { createHash } from 'node:crypto';
import {
  CANONICAL_SCHEMA_VERSION,
  canonicalMessageSchema,
  canonicalStatusSchema,
  messageErrorCodes,
  type CanonicalMessage,
  type CanonicalStatus,
  type Media,
  type MessageKind,
  type ParseResult,
  type Sender,
} from '../../core/canonical-message.js';
import type { SourceParseContext } from '../types.js';

export const TWILIO_WHATSAPP_KIND = 'twilio_whatsapp';

type MessageError = CanonicalMessage['errors'][number];

/** The first value of a form field, when non-empty. */
function field(form: URLSearchParams, name: string): string | undefined {
  const v = form.get(name);
  return v === null || v === '' ? undefined : v;
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** `whatsapp:+14155550100` -> the address without its channel prefix. */
function stripChannel(address: string | undefined): string | undefined {
  if (address === undefined) return undefined;
  const i = address.indexOf(':');
  return i === -1 ? address : address.slice(i + 1);
}

const E164 = /^\+[1-9]\d{4,14}$/;

/** Most Twilio SIDs: two letters and 32 hex digits (MessageSid: SM... or MM...). */
export const TWILIO_SID = /^[A-Z]{2}[0-9a-fA-F]{32}$/;

/** Twilio's delivery words; `undelivered` is a failure, queued/accepted/sending are not news yet. */
const statusWords = new Map<string, CanonicalStatus['status']>([
  ['sent', 'sent'],
  ['delivered', 'delivered'],
  ['read', 'read'],
  ['failed', 'failed'],
  ['undelivered', 'failed'],
  ['deleted', 'deleted'],
]);

function mediaKind(contentType: string | undefined): Media['kind'] {
  const t = (contentType ?? '').toLowerCase();
  if (t.startsWith('image/')) return 'image';
  if (t.startsWith('audio/')) return 'audio';
  if (t.startsWith('video/')) return 'video';
  return 'document';
}

/** The media SID is the last path segment of `.../Messages/MM.../Media/ME...`. */
function mediaSid(url: string): string | undefined {
  const m = /\/Media\/(ME[0-9a-fA-F]{32})(?:[/?#]|$)/.exec(url);
  return m?.[1];
}

function readMedia(form: URLSearchParams, errors: MessageError[]): Media[] {
  const declaredText = field(form, 'NumMedia');
  const declared = declaredText !== undefined && /^\d{1,3}$/.test(declaredText) ? Number(declaredText) : undefined;
  if (declaredText !== undefined && declared === undefined) {
    errors.push({ code: messageErrorCodes.malformed, title: 'NumMedia is not a small whole number' });
  }
  // Read every MediaUrlN present (Twilio sends at most 10), whatever NumMedia says.
  const media: Media[] = [];
  for (let n = 0; n < 20; n++) {
    const url = field(form, `MediaUrl${n}`);
    if (url === undefined) continue;
    const contentType = field(form, `MediaContentType${n}`);
    media.push(defined({ kind: mediaKind(contentType), media_id: mediaSid(url), mime_type: contentType, url }));
    if (!/^https?:\/\//i.test(url)) errors.push({ code: messageErrorCodes.malformed, title: `MediaUrl${n} is not an http(s) URL` });
  }
  if (declared !== undefined && declared !== media.length) {
    errors.push({
      code: messageErrorCodes.malformed,
      title: `NumMedia says ${declared} but ${media.length} MediaUrlN parameter(s) were sent`,
    });
  }
  return media;
}

function readLocation(form: URLSearchParams, errors: MessageError[]): CanonicalMessage['location'] {
  const latText = field(form, 'Latitude');
  const lonText = field(form, 'Longitude');
  if (latText === undefined && lonText === undefined) return undefined;
  const lat = latText !== undefined && /^-?\d+(\.\d+)?$/.test(latText) ? Number(latText) : NaN;
  const lon = lonText !== undefined && /^-?\d+(\.\d+)?$/.test(lonText) ? Number(lonText) : NaN;
  if (!(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180)) {
    errors.push({ code: messageErrorCodes.malformed, title: 'Latitude/Longitude are not readable coordinates' });
    return undefined;
  }
  return defined({ latitude: lat, longitude: lon, name: field(form, 'Label'), address: field(form, 'Address') });
}

const referralFields: readonly [string, string][] = [
  ['ReferralBody', 'body'],
  ['ReferralHeadline', 'headline'],
  ['ReferralSourceId', 'source_id'],
  ['ReferralSourceType', 'source_type'],
  ['ReferralSourceUrl', 'source_url'],
  ['ReferralMediaId', 'media_id'],
  ['ReferralMediaContentType', 'media_content_type'],
  ['ReferralMediaUrl', 'media_url'],
  ['ReferralNumMedia', 'num_media'],
  ['ReferralCtwaClid', 'ctwa_clid'],
];

/** Click-to-WhatsApp ad referral, in Meta's field names so one mapping reads both sources. */
function readReferral(form: URLSearchParams): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  for (const [param, key] of referralFields) {
    const v = field(form, param);
    if (v !== undefined) out[key] = v;
  }
  // Twilio sends ReferralNumMedia=0 on every message: alone, it is no referral.
  return Object.keys(out).some((k) => k !== 'num_media') ? out : undefined;
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && v.toLowerCase() === 'true';
}

function buildSender(form: URLSearchParams, errors: MessageError[]): Sender {
  const from = stripChannel(field(form, 'From'));
  const externalUserId = stripChannel(field(form, 'ExternalUserId'));
  const waId = field(form, 'WaId');
  const phone = from !== undefined && E164.test(from) ? from : waId !== undefined && /^[1-9]\d{4,14}$/.test(waId) ? `+${waId}` : undefined;
  // `From=whatsapp:US.1234` is a username-only user: a business-scoped user id, no phone.
  const fromIsUserId = from !== undefined && !E164.test(from) && /^[A-Z]{2}\.[\w.]+$/.test(from);
  if (from !== undefined && !E164.test(from) && !fromIsUserId) {
    errors.push({ code: messageErrorCodes.malformed, title: 'From is neither whatsapp:+E164 nor a business-scoped user id' });
  }
  return defined({
    phone,
    platform_id: waId ?? (phone !== undefined ? phone.slice(1) : undefined),
    user_id: externalUserId ?? (fromIsUserId ? from : undefined),
    display_name: field(form, 'ProfileName'),
  });
}

interface Content {
  kind: MessageKind;
  fields: Partial<Pick<CanonicalMessage, 'text' | 'media' | 'location' | 'interactive' | 'unsupported'>>;
}

function readContent(form: URLSearchParams, errors: MessageError[]): Content {
  const body = field(form, 'Body');
  const media = readMedia(form, errors);
  const location = readLocation(form, errors);
  const buttonText = field(form, 'ButtonText');
  const buttonPayload = field(form, 'ButtonPayload');

  if (buttonText !== undefined || buttonPayload !== undefined) {
    return {
      kind: 'button',
      fields: defined({
        interactive: defined({ type: 'quick_reply' as const, title: buttonText, payload: buttonPayload }),
        text: body ?? buttonText ?? buttonPayload,
      }),
    };
  }
  if (location !== undefined) {
    const label = [location.name, location.address].filter((s): s is string => s !== undefined).join(', ');
    return { kind: 'location', fields: defined({ location, text: label === '' ? undefined : label }) };
  }
  if (media.length > 0) {
    const first = media[0]!;
    const withCaption = body === undefined ? media : media.map((m, i) => (i === 0 ? { ...m, caption: body } : m));
    return { kind: first.kind, fields: defined({ media: withCaption, text: body }) };
  }
  if (body !== undefined) return { kind: 'text', fields: { text: body } };
  const type = field(form, 'MessageType');
  errors.push({
    code: messageErrorCodes.unknownType,
    title: type === undefined ? 'The message has no body, media, location or button reply' : `MessageType "${type}" carries nothing this parser reads`,
  });
  return { kind: 'unsupported', fields: { unsupported: defined({ type }) } };
}

function buildMessage(form: URLSearchParams, sid: string, receivedAt: string): CanonicalMessage {
  const errors: MessageError[] = [];
  const sender = buildSender(form, errors);
  const content = readContent(form, errors);
  const senderKey = sender.platform_id ?? sender.user_id;
  let kind = content.kind;
  let fields = content.fields;
  if (senderKey === undefined) {
    errors.push({ code: messageErrorCodes.malformed, title: 'The message names no sender (From, WaId, ExternalUserId)' });
    kind = 'unsupported';
    fields = { ...fields, unsupported: defined({ type: field(form, 'MessageType') }) };
  }
  const to = stripChannel(field(form, 'To'));
  const replied = field(form, 'OriginalRepliedMessageSid');
  const candidate = defined({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: defined({
      kind: TWILIO_WHATSAPP_KIND,
      account_id: field(form, 'AccountSid'),
      endpoint_id: field(form, 'MessagingServiceSid') ?? to,
      endpoint_display: to,
    }),
    id: sid,
    dedup_key: sid,
    kind,
    sent_at: receivedAt,
    received_at: receivedAt,
    sender,
    author_role: 'patient' as const,
    conversation_id: `whatsapp:${senderKey ?? 'unknown'}`,
    ...fields,
    reply_to: replied === undefined ? undefined : defined({ id: replied, from: stripChannel(field(form, 'OriginalRepliedMessageSender')) }),
    forwarded: isTrue(field(form, 'FrequentlyForwarded')) ? ('many_times' as const) : isTrue(field(form, 'Forwarded')) ? ('once' as const) : undefined,
    referral: readReferral(form),
    errors,
  });
  const checked = canonicalMessageSchema.safeParse(candidate);
  if (checked.success) return checked.data;
  return canonicalMessageSchema.parse({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: { kind: TWILIO_WHATSAPP_KIND },
    id: sid,
    dedup_key: sid,
    kind: 'unsupported',
    sent_at: receivedAt,
    received_at: receivedAt,
    sender: {},
    conversation_id: 'whatsapp:unknown',
    errors: [
      {
        code: messageErrorCodes.malformed,
        title: 'The message could not be mapped to the canonical model',
        detail: checked.error.issues.slice(0, 5).map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; '),
      },
    ],
  });
}

function buildStatus(form: URLSearchParams, sid: string, word: string, receivedAt: string): CanonicalStatus | string {
  const errorCode = field(form, 'ErrorCode');
  const candidate = defined({
    source_kind: TWILIO_WHATSAPP_KIND,
    message_id: sid,
    status: statusWords.get(word.toLowerCase()) ?? 'unknown',
    source_status: word,
    occurred_at: receivedAt,
    recipient_id: stripChannel(field(form, 'To')),
    errors: errorCode === undefined ? [] : [defined({ code: /^\d+$/.test(errorCode) ? Number(errorCode) : errorCode, title: field(form, 'ErrorMessage') })],
    dedup_key: `${sid}:${word.toLowerCase()}`,
  });
  const checked = canonicalStatusSchema.safeParse(candidate);
  return checked.success ? checked.data : 'the status callback could not be mapped';
}

/** A stable stand-in id for a request without MessageSid, so redeliveries still deduplicate. */
function syntheticId(raw: Buffer): string {
  return `unidentified:${createHash('sha256').update(raw).digest('hex').slice(0, 32)}`;
}

export function parseTwilioWhatsApp(raw: Buffer, ctx: SourceParseContext): ParseResult {
  const result: ParseResult = { messages: [], statuses: [], ignored: [], source_errors: [] };
  const receivedAt = ctx.receivedAt.toISOString();
  let form: URLSearchParams;
  try {
    form = new URLSearchParams(raw.toString('utf8'));
  } catch {
    result.ignored.push({ what: 'event', reason: 'the stored body is not form-encoded' });
    return result;
  }
  const sid = field(form, 'MessageSid') ?? field(form, 'SmsMessageSid') ?? field(form, 'SmsSid');
  const statusWord = field(form, 'MessageStatus');
  // An inbound message is "received"; only our own messages' delivery states are statuses.
  if (statusWord !== undefined && !/^receiv(ed|ing)$/i.test(statusWord)) {
    if (sid === undefined) {
      result.ignored.push({ what: 'status callback', reason: 'the status callback names no MessageSid' });
      return result;
    }
    const status = buildStatus(form, sid, statusWord, receivedAt);
    if (typeof status === 'string') result.ignored.push({ what: 'status callback', reason: status });
    else result.statuses.push(status);
    return result;
  }
  if (sid === undefined) {
    // The edge refuses these; a stored one (older build, replay) is kept as unsupported, not lost.
    const message = buildMessage(form, syntheticId(raw), receivedAt);
    message.kind = 'unsupported';
    message.errors.push({ code: messageErrorCodes.malformed, title: 'The request has no MessageSid; a stand-in id was derived from its content' });
    result.messages.push(message);
    return result;
  }
  try {
    result.messages.push(buildMessage(form, sid, receivedAt));
  } catch {
    result.ignored.push({ what: 'message', reason: 'the message could not be parsed (internal error)' });
  }
  return result;
}
