/**
 * WhatsApp Cloud API webhook -> canonical messages and statuses. A pure function over the raw
 * stored bytes: no I/O, no clock, no randomness, and it never throws on odd input. Anything it
 * cannot read becomes an `unsupported` message with an error entry, or an `ignored` part with a
 * reason, so nothing acknowledged to Meta silently disappears.
 *
 * Payload shapes: Meta's Cloud API webhook reference, as in fixtures/whatsapp and
 * test/fixtures/whatsapp; docs/sources/whatsapp-cloud.md.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
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

export const WHATSAPP_CLOUD_KIND = 'whatsapp_cloud';

/**
 * Codes of the errors only this parser attaches to a message (Meta's own codes are numbers); the
 * codes every source shares (malformed, unknown type, bad timestamp) are `messageErrorCodes`.
 */
export const parserErrorCodes = {
  /** A Flow's `response_json` is not a JSON object; kept verbatim in `interactive.response_raw`. */
  flowResponseNotJson: 'switchboard.flow_response_not_json',
} as const;

type Json = Record<string, unknown>;
type MessageError = CanonicalMessage['errors'][number];
type ContentFields = Partial<
  Pick<
    CanonicalMessage,
    'text' | 'media' | 'location' | 'contacts' | 'interactive' | 'reaction' | 'order' | 'system' | 'original_id' | 'unsupported' | 'reply_to'
  >
>;
interface Content {
  kind: MessageKind;
  fields: ContentFields;
  errors: MessageError[];
}
interface ValueContext {
  source: CanonicalMessage['source'];
  contacts: Json[];
  receivedAt: string;
}

// ---------------------------------------------------------------------------------------------
// Small readers: every access to the decoded JSON goes through these, so nothing can throw.
// ---------------------------------------------------------------------------------------------

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function nonEmpty(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
function records(v: unknown): Json[] {
  return Array.isArray(v) ? v.filter(isRecord) : [];
}
/** Drops keys whose value is undefined, so the canonical JSON stays tidy. */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** WhatsApp timestamps are Unix seconds as strings. Years past 9999 are refused (not ISO-representable). */
function unixSecondsToIso(v: unknown): string | undefined {
  let seconds: number;
  if (typeof v === 'string' && /^\d{1,12}$/.test(v)) seconds = Number(v);
  else if (typeof v === 'number' && Number.isInteger(v) && v >= 0) seconds = v;
  else return undefined;
  if (seconds > 253_402_300_799) return undefined;
  return new Date(seconds * 1000).toISOString();
}

/** E.164 with '+' when the source value is a plausible number of digits; never invented. */
function toE164(v: string | undefined): string | undefined {
  return v !== undefined && /^[1-9]\d{4,14}$/.test(v) ? `+${v}` : undefined;
}

/** Meta error objects `{code, title, message, error_data.details}` -> canonical error entries. */
function toErrors(v: unknown): MessageError[] {
  if (!Array.isArray(v)) return [];
  return v.map((e): MessageError => {
    if (!isRecord(e)) return { code: 'unknown', title: 'An error entry that is not an object' };
    const code = typeof e.code === 'number' || (typeof e.code === 'string' && e.code !== '') ? e.code : 'unknown';
    const title = nonEmpty(e.title) ?? nonEmpty(e.message);
    const message = nonEmpty(e.message);
    const details = isRecord(e.error_data) ? nonEmpty(e.error_data.details) : undefined;
    return defined({ code, title, detail: details ?? (message !== title ? message : undefined) });
  });
}

function issuesOf(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length === 0 ? '(object)' : i.path.map(String).join('.')}: ${i.message}`)
    .join('; ');
}

function broken(type: string | undefined, title: string, detail?: string): Content {
  return {
    kind: 'unsupported',
    fields: { unsupported: defined({ type }) },
    errors: [defined({ code: messageErrorCodes.malformed, title, detail })],
  };
}

// ---------------------------------------------------------------------------------------------
// Type-specific payload schemas: lenient (unknown fields allowed), strict on what we read.
// ---------------------------------------------------------------------------------------------

/** A number, or a decimal string (Kapso's order sample sends `"quantity": "1"`). */
const numeric = z.union([z.number(), z.string().regex(/^-?\d+(?:\.\d+)?$/).transform(Number)]);

const textPayload = z.looseObject({ body: z.string() });

const mediaPayload = z
  .looseObject({
    id: z.string().optional(),
    mime_type: z.string().optional(),
    sha256: z.string().optional(),
    url: z.string().optional(),
    caption: z.string().optional(),
    filename: z.string().optional(),
    voice: z.boolean().optional(),
    animated: z.boolean().optional(),
  })
  .refine((m) => m.id !== undefined || m.url !== undefined, 'neither a media id nor a url');

const locationPayload = z.looseObject({
  latitude: numeric.pipe(z.number().min(-90).max(90)),
  longitude: numeric.pipe(z.number().min(-180).max(180)),
  name: z.string().optional(),
  address: z.string().optional(),
  url: z.string().optional(),
});

const contactsPayload = z.array(z.record(z.string(), z.unknown())).min(1);

const interactivePayload = z.looseObject({ type: z.string() });
const buttonReplyPayload = z.looseObject({ id: z.string(), title: z.string().optional() });
const listReplyPayload = z.looseObject({ id: z.string(), title: z.string().optional(), description: z.string().optional() });
const nfmReplyPayload = z.looseObject({
  name: z.string().optional(),
  body: z.string().optional(),
  response_json: z.union([z.string(), z.record(z.string(), z.unknown())]),
});

const buttonPayload = z
  .looseObject({ payload: z.string().optional(), text: z.string().optional() })
  .refine((b) => b.payload !== undefined || b.text !== undefined, 'neither payload nor text');

const reactionPayload = z.looseObject({ message_id: z.string().min(1), emoji: z.string().optional() });

const orderPayload = z.looseObject({
  catalog_id: z.string().optional(),
  text: z.string().optional(),
  product_items: z.array(
    z.looseObject({
      product_retailer_id: z.string(),
      quantity: numeric,
      item_price: numeric.optional(),
      currency: z.string().optional(),
    }),
  ),
});

const systemPayload = z.looseObject({
  type: z.string().min(1),
  body: z.string().optional(),
  wa_id: z.string().optional(),
  /** Older API versions. */
  new_wa_id: z.string().optional(),
  user_id: z.string().optional(),
  previous_user_id: z.string().optional(),
});

const originalRefPayload = z.looseObject({ original_message_id: z.string().min(1) });
const editPayload = z.looseObject({
  original_message_id: z.string().min(1),
  message: z.looseObject({ type: z.string().min(1) }),
});

const mediaTypes = ['image', 'audio', 'video', 'document', 'sticker'] as const;
type MediaType = (typeof mediaTypes)[number];
function isMediaType(t: string): t is MediaType {
  return (mediaTypes as readonly string[]).includes(t);
}

function parseFlowResponse(raw: string): Json | undefined {
  try {
    const v: unknown = JSON.parse(raw);
    return isRecord(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function contactNames(cards: Json[]): string | undefined {
  const names = cards
    .map((c) => (isRecord(c.name) ? nonEmpty(c.name.formatted_name) : undefined))
    .filter((n): n is string => n !== undefined);
  return names.length > 0 ? names.join(', ') : undefined;
}

function readContext(v: unknown): Pick<CanonicalMessage, 'reply_to' | 'forwarded' | 'referred_product'> {
  if (!isRecord(v)) return {};
  const id = nonEmpty(v.id);
  const rp = isRecord(v.referred_product) ? v.referred_product : undefined;
  return defined({
    reply_to: id === undefined ? undefined : defined({ id, from: nonEmpty(v.from) }),
    forwarded: v.frequently_forwarded === true ? ('many_times' as const) : v.forwarded === true ? ('once' as const) : undefined,
    referred_product:
      rp === undefined
        ? undefined
        : defined({ catalog_id: nonEmpty(rp.catalog_id), product_retailer_id: nonEmpty(rp.product_retailer_id) }),
  });
}

/**
 * The type-specific part of a message. `nested` is true inside `edit.message`, where only content
 * types make sense.
 */
function mapContent(type: unknown, msg: Json, nested: boolean): Content {
  if (typeof type !== 'string' || type === '') {
    return {
      kind: 'unsupported',
      fields: {},
      errors: [{ code: messageErrorCodes.unknownType, title: 'The message has no type' }],
    };
  }
  if (isMediaType(type)) {
    const r = mediaPayload.safeParse(msg[type]);
    if (!r.success) return broken(type, `The ${type} message has no readable ${type} object`, issuesOf(r.error));
    const m = r.data;
    const media: Media = defined({
      kind: type,
      media_id: m.id,
      mime_type: m.mime_type,
      sha256: m.sha256,
      url: m.url,
      filename: m.filename,
      caption: nonEmpty(m.caption),
      voice: type === 'audio' ? m.voice : undefined,
      animated: type === 'sticker' ? m.animated : undefined,
    });
    return { kind: type, fields: defined({ media: [media], text: nonEmpty(m.caption) }), errors: [] };
  }
  switch (type) {
    case 'text': {
      const r = textPayload.safeParse(msg.text);
      if (!r.success) return broken(type, 'The text message has no readable text.body', issuesOf(r.error));
      return { kind: 'text', fields: { text: r.data.body }, errors: [] };
    }
    case 'location': {
      const r = locationPayload.safeParse(msg.location);
      if (!r.success) return broken(type, 'The location message has no readable coordinates', issuesOf(r.error));
      const l = r.data;
      const label = [nonEmpty(l.name), nonEmpty(l.address)].filter((s): s is string => s !== undefined).join(', ');
      return {
        kind: 'location',
        fields: defined({
          location: defined({ latitude: l.latitude, longitude: l.longitude, name: l.name, address: l.address, url: l.url }),
          text: label === '' ? undefined : label,
        }),
        errors: [],
      };
    }
    case 'contacts': {
      const r = contactsPayload.safeParse(msg.contacts);
      if (!r.success) return broken(type, 'The contacts message has no readable contact cards', issuesOf(r.error));
      return { kind: 'contacts', fields: defined({ contacts: r.data, text: contactNames(r.data) }), errors: [] };
    }
    case 'interactive':
      return mapInteractive(msg.interactive);
    case 'button': {
      const r = buttonPayload.safeParse(msg.button);
      if (!r.success) return broken(type, 'The button message has no readable button object', issuesOf(r.error));
      return {
        kind: 'button',
        fields: defined({
          interactive: defined({ type: 'quick_reply' as const, payload: r.data.payload, title: r.data.text }),
          text: nonEmpty(r.data.text) ?? nonEmpty(r.data.payload),
        }),
        errors: [],
      };
    }
    case 'reaction': {
      if (nested) break;
      const r = reactionPayload.safeParse(msg.reaction);
      if (!r.success) return broken(type, 'The reaction has no readable target message id', issuesOf(r.error));
      const emoji = nonEmpty(r.data.emoji) ?? null;
      return {
        kind: 'reaction',
        fields: defined({ reaction: { target_id: r.data.message_id, emoji }, text: emoji ?? undefined }),
        errors: [],
      };
    }
    case 'order': {
      const r = orderPayload.safeParse(msg.order);
      if (!r.success) return broken(type, 'The order has no readable product items', issuesOf(r.error));
      const o = r.data;
      return {
        kind: 'order',
        fields: defined({
          order: defined({
            catalog_id: o.catalog_id,
            text: nonEmpty(o.text),
            items: o.product_items.map((i) =>
              defined({ product_retailer_id: i.product_retailer_id, quantity: i.quantity, item_price: i.item_price, currency: i.currency }),
            ),
          }),
          text: nonEmpty(o.text),
        }),
        errors: [],
      };
    }
    case 'system': {
      if (nested) break;
      const r = systemPayload.safeParse(msg.system);
      if (!r.success) return broken(type, 'The system message has no readable system object', issuesOf(r.error));
      const s = r.data;
      return {
        kind: 'system',
        fields: defined({
          system: defined({
            type: s.type,
            body: s.body,
            new_platform_id: nonEmpty(s.wa_id) ?? nonEmpty(s.new_wa_id),
            new_user_id: nonEmpty(s.user_id),
            previous_user_id: nonEmpty(s.previous_user_id),
          }),
          text: nonEmpty(s.body),
        }),
        errors: [],
      };
    }
    case 'unsupported':
    case 'unknown': {
      const inner = isRecord(msg.unsupported) ? nonEmpty(msg.unsupported.type) : undefined;
      return { kind: 'unsupported', fields: { unsupported: defined({ type: inner }) }, errors: [] };
    }
    case 'revoke': {
      if (nested) break;
      const r = originalRefPayload.safeParse(msg.revoke);
      if (!r.success) return broken(type, 'The revoke has no readable original message id', issuesOf(r.error));
      return { kind: 'revoke', fields: { original_id: r.data.original_message_id }, errors: [] };
    }
    case 'edit': {
      if (nested) break;
      return mapEdit(msg.edit);
    }
  }
  return {
    kind: 'unsupported',
    fields: { unsupported: { type } },
    errors: [{ code: messageErrorCodes.unknownType, title: `Message type "${type}" is not recognised` }],
  };
}

function mapInteractive(v: unknown): Content {
  const head = interactivePayload.safeParse(v);
  if (!head.success || !isRecord(v)) {
    return broken('interactive', 'The interactive message has no readable interactive object', head.success ? undefined : issuesOf(head.error));
  }
  const type = head.data.type;
  const body = v[type];
  switch (type) {
    case 'button_reply': {
      const r = buttonReplyPayload.safeParse(body);
      if (!r.success) return broken('interactive', 'The button reply has no readable id', issuesOf(r.error));
      return {
        kind: 'interactive',
        fields: defined({ interactive: defined({ type, id: r.data.id, title: r.data.title }), text: nonEmpty(r.data.title) }),
        errors: [],
      };
    }
    case 'list_reply': {
      const r = listReplyPayload.safeParse(body);
      if (!r.success) return broken('interactive', 'The list reply has no readable id', issuesOf(r.error));
      return {
        kind: 'interactive',
        fields: defined({
          interactive: defined({ type, id: r.data.id, title: r.data.title, description: r.data.description }),
          text: nonEmpty(r.data.title),
        }),
        errors: [],
      };
    }
    case 'nfm_reply': {
      const r = nfmReplyPayload.safeParse(body);
      if (!r.success) return broken('interactive', 'The flow reply has no readable response_json', issuesOf(r.error));
      const rj = r.data.response_json;
      const response = typeof rj === 'string' ? parseFlowResponse(rj) : rj;
      const errors: MessageError[] = [];
      if (response === undefined) {
        errors.push({ code: parserErrorCodes.flowResponseNotJson, title: 'The flow response_json is not a JSON object; kept as text' });
      }
      return {
        kind: 'interactive',
        fields: defined({
          interactive: defined({
            type,
            flow_name: r.data.name,
            response,
            response_raw: response === undefined && typeof rj === 'string' ? rj : undefined,
          }),
          text: nonEmpty(r.data.body),
        }),
        errors,
      };
    }
  }
  return {
    kind: 'unsupported',
    fields: { unsupported: { type: `interactive.${type}` } },
    errors: [{ code: messageErrorCodes.unknownType, title: `Interactive type "${type}" is not recognised` }],
  };
}

function mapEdit(v: unknown): Content {
  const r = editPayload.safeParse(v);
  if (!r.success) {
    const original = isRecord(v) ? nonEmpty(v.original_message_id) : undefined;
    const c = broken('edit', 'The edit has no readable original message id or new message', issuesOf(r.error));
    return { ...c, fields: defined({ ...c.fields, original_id: original }) };
  }
  const inner = r.data.message;
  const content = mapContent(inner.type, inner, true);
  const innerContext = readContext(inner.context);
  if (content.kind === 'unsupported') {
    return {
      kind: 'unsupported',
      fields: { unsupported: { type: 'edit' }, original_id: r.data.original_message_id },
      errors: content.errors.length > 0 ? content.errors : [{ code: messageErrorCodes.malformed, title: 'The edited content could not be read' }],
    };
  }
  return {
    kind: 'edit',
    fields: defined({ ...content.fields, original_id: r.data.original_message_id, reply_to: innerContext.reply_to }),
    errors: content.errors,
  };
}

// ---------------------------------------------------------------------------------------------
// Messages and statuses
// ---------------------------------------------------------------------------------------------

function buildSender(msg: Json, contacts: Json[]): Sender {
  const from = nonEmpty(msg.from);
  const fromUserId = nonEmpty(msg.from_user_id);
  const contact = contacts.find(
    (c) => (from !== undefined && c.wa_id === from) || (fromUserId !== undefined && c.user_id === fromUserId),
  );
  const profile = contact !== undefined && isRecord(contact.profile) ? contact.profile : {};
  const platformId = from ?? nonEmpty(contact?.wa_id);
  return defined({
    phone: toE164(platformId),
    platform_id: platformId,
    user_id: fromUserId ?? nonEmpty(contact?.user_id),
    parent_user_id: nonEmpty(msg.from_parent_user_id) ?? nonEmpty(contact?.parent_user_id),
    username: nonEmpty(profile.username) ?? nonEmpty(contact?.username),
    display_name: nonEmpty(profile.name),
  });
}

/** A stable stand-in id for a message that has none, so redeliveries still deduplicate. */
function syntheticId(raw: unknown): string {
  const text = JSON.stringify(raw) ?? String(raw);
  return `unidentified:${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}

function rawTimestamp(v: unknown): string {
  if (typeof v === 'string' && v !== '') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return 'none';
}

function buildMessage(raw: unknown, vctx: ValueContext): CanonicalMessage {
  const msg: Json = isRecord(raw) ? raw : {};
  const errors: MessageError[] = [];
  let content: Content;
  if (!isRecord(raw)) {
    content = broken(undefined, 'A messages[] entry is not an object');
  } else {
    content = mapContent(msg.type, msg, false);
  }

  let id = nonEmpty(msg.id);
  if (id === undefined) {
    id = syntheticId(raw);
    if (isRecord(raw)) errors.push({ code: messageErrorCodes.malformed, title: 'The message has no id; a stand-in id was derived from its content' });
  }

  let sentAt = unixSecondsToIso(msg.timestamp);
  if (sentAt === undefined) {
    sentAt = vctx.receivedAt;
    if (isRecord(raw)) errors.push({ code: messageErrorCodes.timestampInvalid, title: 'The message timestamp is missing or not Unix seconds; the received time is used' });
  }

  const sender = isRecord(raw) ? buildSender(msg, vctx.contacts) : {};
  const senderKey = sender.platform_id ?? sender.user_id;
  if (senderKey === undefined && isRecord(raw)) {
    errors.push({ code: messageErrorCodes.malformed, title: 'The message names no sender (neither from nor from_user_id)' });
  }

  let kind = content.kind;
  let fields = content.fields;
  const unusable = isRecord(raw) && (nonEmpty(msg.id) === undefined || senderKey === undefined);
  if (unusable && kind !== 'unsupported') {
    kind = 'unsupported';
    fields = { ...fields, unsupported: defined({ type: nonEmpty(msg.type) }) };
  }

  const groupId = nonEmpty(msg.group_id);
  const context = readContext(msg.context);
  const dedupKey =
    kind === 'reaction' && fields.reaction !== undefined
      ? `${id}:reaction:${fields.reaction.emoji ?? 'removed'}:${rawTimestamp(msg.timestamp)}`
      : id;

  const candidate = defined({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: vctx.source,
    id,
    dedup_key: dedupKey,
    kind,
    sent_at: sentAt,
    received_at: vctx.receivedAt,
    sender,
    conversation_id: groupId ?? `whatsapp:${senderKey ?? 'unknown'}`,
    group_id: groupId,
    ...fields,
    reply_to: context.reply_to ?? fields.reply_to,
    forwarded: context.forwarded,
    referral: isRecord(msg.referral) ? msg.referral : undefined,
    referred_product: context.referred_product,
    errors: [...toErrors(msg.errors), ...content.errors, ...errors],
  });

  const checked = canonicalMessageSchema.safeParse(candidate);
  if (checked.success) return checked.data;
  // Should not happen: every field above is built to fit. Keep the event rather than lose it.
  return canonicalMessageSchema.parse({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: vctx.source,
    id,
    dedup_key: dedupKey,
    kind: 'unsupported',
    sent_at: sentAt,
    received_at: vctx.receivedAt,
    sender: canonicalMessageSchema.shape.sender.safeParse(sender).data ?? {},
    conversation_id: candidate.conversation_id,
    unsupported: defined({ type: nonEmpty(msg.type) }),
    errors: [{ code: messageErrorCodes.malformed, title: 'The message could not be mapped to the canonical model', detail: issuesOf(checked.error) }],
  });
}

/** Meta's status words that have a canonical equivalent; anything else is `unknown`. */
const statusWords = new Map<string, CanonicalStatus['status']>([
  ['sent', 'sent'],
  ['delivered', 'delivered'],
  ['read', 'read'],
  ['played', 'played'],
  ['failed', 'failed'],
  ['deleted', 'deleted'],
]);

function buildStatus(raw: unknown, receivedAt: string): CanonicalStatus | string {
  if (!isRecord(raw)) return 'a statuses[] entry is not an object';
  const messageId = nonEmpty(raw.id);
  if (messageId === undefined) return 'the status names no message id';
  const word = nonEmpty(raw.status) ?? 'unknown';
  const errors = toErrors(raw.errors);
  let occurredAt = unixSecondsToIso(raw.timestamp);
  if (occurredAt === undefined) {
    occurredAt = receivedAt;
    errors.push({ code: messageErrorCodes.timestampInvalid, title: 'The status timestamp is missing or not Unix seconds; the received time is used' });
  }
  const candidate = defined({
    source_kind: WHATSAPP_CLOUD_KIND,
    message_id: messageId,
    status: statusWords.get(word) ?? 'unknown',
    source_status: word,
    occurred_at: occurredAt,
    recipient_id: nonEmpty(raw.recipient_id) ?? nonEmpty(raw.recipient_user_id),
    errors,
    callback_data: nonEmpty(raw.biz_opaque_callback_data),
    dedup_key: `${messageId}:${word}`,
  });
  const checked = canonicalStatusSchema.safeParse(candidate);
  return checked.success ? checked.data : `the status could not be mapped: ${issuesOf(checked.error)}`;
}

// ---------------------------------------------------------------------------------------------
// The event
// ---------------------------------------------------------------------------------------------

/** Keys of a `messages` change value that this parser reads. */
const knownValueKeys = new Set(['messaging_product', 'metadata', 'contacts', 'messages', 'statuses', 'errors']);

export function parseWhatsAppCloud(raw: Buffer, ctx: SourceParseContext): ParseResult {
  const result: ParseResult = { messages: [], statuses: [], ignored: [], source_errors: [] };
  const receivedAt = ctx.receivedAt.toISOString();

  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8').replace(/^\uFEFF/, ''));
  } catch {
    result.ignored.push({ what: 'event', reason: 'the stored body is not valid JSON' });
    return result;
  }
  if (!isRecord(body) || body.object !== 'whatsapp_business_account') {
    result.ignored.push({ what: 'event', reason: 'not a WhatsApp Business Account webhook (object is not "whatsapp_business_account")' });
    return result;
  }
  if (!Array.isArray(body.entry)) {
    result.ignored.push({ what: 'event', reason: 'the event has no entry array' });
    return result;
  }

  body.entry.forEach((entry: unknown, e) => {
    const where = `entry[${e}]`;
    if (!isRecord(entry) || !Array.isArray(entry.changes)) {
      result.ignored.push({ what: where, reason: 'the entry is not an object with a changes array' });
      return;
    }
    const accountId = nonEmpty(entry.id);
    entry.changes.forEach((change: unknown, c) => {
      const at = `${where}.changes[${c}]`;
      if (!isRecord(change)) {
        result.ignored.push({ what: at, reason: 'the change is not an object' });
        return;
      }
      const field = typeof change.field === 'string' ? change.field : undefined;
      if (field !== 'messages') {
        result.ignored.push({
          what: `${at} (field ${field === undefined ? 'missing' : JSON.stringify(field)})`,
          reason: 'only the "messages" field carries chat; other webhook fields are not processed',
        });
        return;
      }
      parseValue(change.value, `${at}.value`, accountId, receivedAt, result);
    });
  });
  return result;
}

function parseValue(value: unknown, at: string, accountId: string | undefined, receivedAt: string, result: ParseResult): void {
  if (!isRecord(value)) {
    result.ignored.push({ what: at, reason: 'the change value is not an object' });
    return;
  }
  const metadata = isRecord(value.metadata) ? value.metadata : {};
  const vctx: ValueContext = {
    source: defined({
      kind: WHATSAPP_CLOUD_KIND,
      account_id: accountId,
      endpoint_id: nonEmpty(metadata.phone_number_id),
      endpoint_display: nonEmpty(metadata.display_phone_number),
    }),
    contacts: records(value.contacts),
    receivedAt,
  };

  result.source_errors.push(...toErrors(value.errors));

  const messages = value.messages ?? [];
  if (!Array.isArray(messages)) {
    result.ignored.push({ what: `${at}.messages`, reason: 'messages is not an array' });
  } else {
    messages.forEach((m: unknown, i: number) => {
      try {
        result.messages.push(buildMessage(m, vctx));
      } catch {
        result.ignored.push({ what: `${at}.messages[${i}]`, reason: 'the message could not be parsed (internal error)' });
      }
    });
  }

  const statuses = value.statuses ?? [];
  if (!Array.isArray(statuses)) {
    result.ignored.push({ what: `${at}.statuses`, reason: 'statuses is not an array' });
  } else {
    statuses.forEach((s: unknown, i: number) => {
      const out = buildStatus(s, receivedAt);
      if (typeof out === 'string') result.ignored.push({ what: `${at}.statuses[${i}]`, reason: out });
      else result.statuses.push(out);
    });
  }

  for (const [key, v] of Object.entries(value)) {
    if (knownValueKeys.has(key) || v === null || typeof v !== 'object') continue;
    const count = Array.isArray(v) ? ` (${v.length})` : '';
    result.ignored.push({
      what: `${at}.${key}${count}`,
      reason: key === 'calls' ? 'calls are not chat messages; not processed' : `"${key}" is not a field this parser knows; not processed`,
    });
  }
}
