/**
 * Rocket.Chat -> canonical messages. Pure functions over stored bytes: no I/O, no clock, never
 * throws on odd input. Used by both Rocket.Chat sources:
 *  - `rocketchat_webhook`: outgoing-webhook integrations (RC-TRIG) and Omnichannel/Livechat
 *    webhooks (RC-CRM);
 *  - `rocketchat_poll`: REST history pages, wrapped by the poller.
 *
 * What becomes what (also in docs/sources/rocketchat.md):
 *  - a chat message (outgoing `message_id`, Livechat `messages[]`, REST message) -> a message;
 *    Livechat marks agents with `agentId` (staff), visitors without it (patient);
 *  - an edited message -> kind `edit`, id `<_id>:edited:<editedAt>` and `original_id` = `_id`;
 *  - Livechat session events (Start, Queued, Taken, Forwarded, close `LivechatSession`,
 *    `LivechatEdit`) -> their `messages[]` (deduplicated on `_id` against what already came) plus
 *    an ignored entry for the event itself; a closing comment becomes kind `system`;
 *  - `LivechatOfflineMessage` -> one message from the patient (stand-in id from its content);
 *  - `LeadCapture`, navigation history, system messages (`t`), non-message outgoing events ->
 *    ignored with a reason. Rocket.Chat has no delivery receipts: no statuses.
 */
import { createHash } from 'node:crypto';
import {
  CANONICAL_SCHEMA_VERSION,
  canonicalMessageSchema,
  messageErrorCodes,
  type CanonicalMessage,
  type Media,
  type MessageKind,
  type ParseResult,
  type Sender,
} from '../../core/canonical-message.js';
import type { SourceParseContext } from '../types.js';

export const ROCKETCHAT_WEBHOOK_KIND = 'rocketchat_webhook';

export type AuthorRole = NonNullable<CanonicalMessage['author_role']>;
type Json = Record<string, unknown>;
type MessageError = CanonicalMessage['errors'][number];

export function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
export function nonEmpty(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v : undefined;
}
function records(v: unknown): Json[] {
  return Array.isArray(v) ? v.filter(isRecord) : [];
}
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

/** Rocket.Chat dates: ISO strings, EJSON `{ "$date": ms }`, or epoch milliseconds. */
export function rocketChatInstant(v: unknown): string | undefined {
  let ms: number | undefined;
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v)) ms = Date.parse(v);
  else if (typeof v === 'number' && Number.isFinite(v)) ms = v;
  else if (isRecord(v) && typeof v.$date === 'number') ms = v.$date;
  else if (isRecord(v) && typeof v.$date === 'string') ms = Date.parse(v.$date);
  if (ms === undefined || !Number.isFinite(ms) || ms < 0 || ms > 253_402_300_799_999) return undefined;
  return new Date(ms).toISOString();
}

/** `+49 151 1234-5678` -> `+4915112345678`; anything not written with a leading + is not trusted as E.164. */
function e164(v: unknown): string | undefined {
  const s = typeof v === 'string' ? v : isRecord(v) ? nonEmpty(v.phoneNumber) : undefined;
  if (s === undefined) return undefined;
  const compact = s.replace(/[\s().-]/g, '');
  return /^\+[1-9]\d{4,14}$/.test(compact) ? compact : undefined;
}
function firstOf(v: unknown): unknown {
  return Array.isArray(v) ? v[0] : v;
}
function email(v: unknown): string | undefined {
  const first = firstOf(v);
  return nonEmpty(first) ?? (isRecord(first) ? nonEmpty(first.address) : undefined);
}

function absolute(url: string | undefined, siteUrl: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  if (/^https?:\/\//i.test(url)) return url;
  if (siteUrl === undefined || !/^https?:\/\//i.test(siteUrl)) return url;
  return siteUrl.replace(/\/+$/, '') + (url.startsWith('/') ? url : `/${url}`);
}

function mediaKind(mime: string | undefined): Media['kind'] {
  const t = (mime ?? '').toLowerCase();
  if (t.startsWith('image/')) return 'image';
  if (t.startsWith('audio/')) return 'audio';
  if (t.startsWith('video/')) return 'video';
  return 'document';
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/** File messages: `file`/`files` plus `attachments[]` (title_link, image_url/audio_url/video_url...). */
export function rocketChatMedia(message: Json, siteUrl: string | undefined): Media[] {
  const files = [...records(message.files), ...(isRecord(message.file) ? [message.file] : [])];
  const uniqueFiles = files.filter((f, i) => files.findIndex((g) => g._id === f._id) === i);
  const media: Media[] = [];
  const attachments = records(message.attachments).filter(
    (a) => nonEmpty(a.title_link) ?? nonEmpty(a.image_url) ?? nonEmpty(a.audio_url) ?? nonEmpty(a.video_url),
  );
  attachments.forEach((a, i) => {
    const file = uniqueFiles[i];
    const mime = nonEmpty(a.image_type) ?? nonEmpty(a.audio_type) ?? nonEmpty(a.video_type) ?? nonEmpty(file?.type);
    const url = nonEmpty(a.title_link) ?? nonEmpty(a.image_url) ?? nonEmpty(a.audio_url) ?? nonEmpty(a.video_url);
    media.push(
      defined({
        kind: mediaKind(mime),
        media_id: nonEmpty(file?._id),
        mime_type: mime,
        url: absolute(url, siteUrl),
        filename: nonEmpty(a.title) ?? nonEmpty(file?.name),
        caption: nonEmpty(a.description),
        size: num(a.image_size) ?? num(a.audio_size) ?? num(a.video_size) ?? num(file?.size),
      }),
    );
  });
  if (media.length === 0) {
    for (const f of uniqueFiles) {
      const id = nonEmpty(f._id);
      const name = nonEmpty(f.name);
      media.push(
        defined({
          kind: mediaKind(nonEmpty(f.type)),
          media_id: id,
          mime_type: nonEmpty(f.type),
          url: id !== undefined && name !== undefined ? absolute(`/file-upload/${id}/${encodeURIComponent(name)}`, siteUrl) : undefined,
          filename: name,
          size: num(f.size),
        }),
      );
    }
  }
  return media;
}

/** One Rocket.Chat chat message, normalised by the envelope readers below. */
export interface RocketChatMessageInput {
  /** The message `_id`; absent in some documentation samples (a stand-in id is derived). */
  id: string | undefined;
  roomId: string | undefined;
  roomName?: string | undefined;
  text: string | undefined;
  ts: unknown;
  editedAt?: unknown;
  /** Outgoing webhooks flag edits without a time. */
  isEdited?: boolean;
  threadId?: string | undefined;
  sender: Sender;
  role: AuthorRole | undefined;
  /** The raw message object, for file/attachments. */
  raw: Json;
  closing?: boolean;
}

export interface RocketChatContext {
  sourceKind: string;
  siteUrl: string | undefined;
  receivedAt: string;
  /** Poll: an already-edited message seen for the first time is a plain message (its latest text). */
  editsAsNew?: boolean;
}

export function rocketChatMessage(input: RocketChatMessageInput, rctx: RocketChatContext): CanonicalMessage {
  const errors: MessageError[] = [];
  const text = nonEmpty(input.text);
  const media = rocketChatMedia(input.raw, rctx.siteUrl);
  let sentAt = rocketChatInstant(input.ts);
  if (sentAt === undefined) {
    sentAt = rctx.receivedAt;
    errors.push({ code: messageErrorCodes.timestampInvalid, title: 'The message time is missing or unreadable; the received time is used' });
  }
  const baseId =
    input.id ?? `unidentified:${hash(JSON.stringify([input.roomId ?? null, sentAt, input.sender.username ?? input.sender.platform_id ?? null, input.text ?? null]))}`;
  if (input.id === undefined) errors.push({ code: messageErrorCodes.malformed, title: 'The message has no _id; a stand-in id was derived from its content' });

  let kind: MessageKind = media[0]?.kind ?? (text !== undefined ? 'text' : 'unsupported');
  let id = baseId;
  let originalId: string | undefined;
  const editedAt = rocketChatInstant(input.editedAt);
  const edited = editedAt !== undefined || input.isEdited === true;
  if (edited && rctx.editsAsNew !== true && input.id !== undefined) {
    kind = 'edit';
    id = `${input.id}:edited:${editedAt ?? hash(JSON.stringify([input.text ?? null, media.map((m) => m.url ?? null)]))}`;
    originalId = input.id;
  }
  let system: CanonicalMessage['system'];
  if (input.closing === true) {
    kind = 'system';
    system = defined({ type: 'livechat_close', body: text });
  }
  const unsupported = kind === 'unsupported' ? { type: 'empty' } : undefined;
  if (kind === 'unsupported') errors.push({ code: messageErrorCodes.malformed, title: 'The message has neither text nor a file' });

  const senderKey = input.sender.platform_id ?? input.sender.username;
  const candidate = defined({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: defined({
      kind: rctx.sourceKind,
      account_id: rctx.siteUrl,
      endpoint_id: input.roomId,
      endpoint_display: input.roomName,
    }),
    id,
    dedup_key: id,
    kind,
    sent_at: sentAt,
    received_at: rctx.receivedAt,
    sender: input.sender,
    author_role: input.role,
    conversation_id: `rocketchat:${input.roomId ?? senderKey ?? 'unknown'}`,
    text,
    media,
    system,
    original_id: originalId,
    unsupported,
    reply_to: input.threadId === undefined ? undefined : { id: input.threadId },
    errors,
  });
  const checked = canonicalMessageSchema.safeParse(candidate);
  if (checked.success) return checked.data;
  return canonicalMessageSchema.parse({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: { kind: rctx.sourceKind },
    id,
    dedup_key: id,
    kind: 'unsupported',
    sent_at: sentAt,
    received_at: rctx.receivedAt,
    sender: {},
    conversation_id: `rocketchat:${input.roomId ?? 'unknown'}`,
    errors: [
      {
        code: messageErrorCodes.malformed,
        title: 'The message could not be mapped to the canonical model',
        detail: checked.error.issues.slice(0, 5).map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; '),
      },
    ],
  });
}

/** Options that shape author roles; shared by both Rocket.Chat sources. */
export interface RocketChatRoleOptions {
  /** Usernames (or user ids) of clinic staff: their messages are `staff` outside Livechat. */
  staffUsers: ReadonlySet<string>;
}

export function roleOfUser(user: { id?: string | undefined; username?: string | undefined }, bot: unknown, opts: RocketChatRoleOptions): AuthorRole | undefined {
  if (bot !== undefined && bot !== null && bot !== false) return 'system';
  if ((user.username !== undefined && opts.staffUsers.has(user.username)) || (user.id !== undefined && opts.staffUsers.has(user.id))) return 'staff';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Outgoing webhook (RC-TRIG)
// ---------------------------------------------------------------------------------------------

function parseOutgoing(body: Json, rctx: RocketChatContext, opts: RocketChatRoleOptions, result: ParseResult): void {
  const inner = isRecord(body.message) ? body.message : undefined;
  const id = nonEmpty(body.message_id) ?? nonEmpty(inner?._id);
  if (id === undefined) {
    result.ignored.push({
      what: `outgoing webhook event${nonEmpty(body.event) ? ` "${String(body.event)}"` : ''}`,
      reason: 'an outgoing-webhook event without a message (room or user event); not processed',
    });
    return;
  }
  const innerUser = isRecord(inner?.u) ? inner.u : isRecord(body.user) ? body.user : {};
  const user = defined({
    id: nonEmpty(body.user_id) ?? nonEmpty(innerUser._id),
    username: nonEmpty(body.user_name) ?? nonEmpty(innerUser.username),
  });
  const alias = nonEmpty(body.alias);
  const sender: Sender = defined({
    platform_id: user.id,
    username: user.username,
    display_name: alias ?? nonEmpty(innerUser.name),
  });
  const siteUrl = rctx.siteUrl ?? nonEmpty(body.siteUrl);
  const message = rocketChatMessage(
    {
      id,
      roomId: nonEmpty(body.channel_id) ?? nonEmpty(inner?.rid),
      roomName: nonEmpty(body.channel_name),
      text: typeof body.text === 'string' ? body.text : typeof inner?.msg === 'string' ? inner.msg : undefined,
      ts: body.timestamp ?? inner?.ts,
      editedAt: inner?.editedAt,
      isEdited: body.isEdited === true,
      threadId: nonEmpty(body.tmid) ?? nonEmpty(inner?.tmid),
      sender,
      role: roleOfUser(user, body.bot ?? inner?.bot, opts),
      raw: inner ?? body,
    },
    { ...rctx, siteUrl },
  );
  result.messages.push(message);
}

// ---------------------------------------------------------------------------------------------
// Omnichannel / Livechat webhook (RC-CRM)
// ---------------------------------------------------------------------------------------------

const sessionEvents = new Set(['LivechatSessionStart', 'LivechatSessionQueued', 'LivechatSessionTaken', 'LivechatSessionForwarded', 'LivechatSession', 'LivechatEdit']);

function livechatSender(m: Json, visitor: Json, agent: Json): { sender: Sender; role: AuthorRole } {
  const u = isRecord(m.u) ? m.u : {};
  const agentId = nonEmpty(m.agentId);
  if (agentId !== undefined) {
    const isServing = nonEmpty(agent._id) === agentId;
    return {
      role: 'staff',
      sender: defined({
        platform_id: agentId,
        username: nonEmpty(u.username) ?? nonEmpty(m.username) ?? (isServing ? nonEmpty(agent.username) : undefined),
        display_name: nonEmpty(u.name) ?? (isServing ? nonEmpty(agent.name) : undefined),
      }),
    };
  }
  return {
    role: 'patient',
    sender: defined({
      platform_id: nonEmpty(visitor._id) ?? nonEmpty(u._id),
      username: nonEmpty(visitor.username) ?? nonEmpty(u.username) ?? nonEmpty(m.username),
      display_name: nonEmpty(visitor.name) ?? nonEmpty(u.name),
      phone: e164(firstOf(visitor.phone)),
      email: email(visitor.email) ?? email(visitor.visitorEmails),
    }),
  };
}

function parseLivechat(body: Json, type: string, rctx: RocketChatContext, result: ParseResult): void {
  const visitor = isRecord(body.visitor) ? body.visitor : {};
  const agent = isRecord(body.agent) ? body.agent : {};
  const roomId = nonEmpty(body._id);

  if (type === 'LivechatOfflineMessage') {
    const text = nonEmpty(body.message);
    const sentAt = rocketChatInstant(body.sentAt);
    const mail = email(visitor.email);
    const id = `offline:${hash(JSON.stringify([body.sentAt ?? null, mail ?? null, visitor.name ?? null, body.message ?? null]))}`;
    const m = rocketChatMessage(
      {
        id,
        roomId: undefined,
        text,
        ts: body.sentAt,
        sender: defined({ display_name: nonEmpty(visitor.name), email: mail, phone: e164(visitor.phone) }),
        role: 'patient',
        raw: {},
      },
      rctx,
    );
    // An offline message has no room: its thread is the visitor's address (or the message itself).
    m.conversation_id = `rocketchat:offline:${mail ?? id}`;
    if (sentAt !== undefined) m.sent_at = sentAt;
    result.messages.push(m);
    return;
  }
  if (type === 'LeadCapture') {
    result.ignored.push({ what: 'LeadCapture event', reason: 'visitor contact data captured from the chat; not a message' });
    return;
  }
  if (type !== 'Message') {
    result.ignored.push({
      what: `${type} event`,
      reason: sessionEvents.has(type)
        ? 'a session event, not a message; the messages it lists are processed and deduplicated on their _id'
        : 'an Omnichannel event type this parser does not know; any messages it lists are processed',
    });
  }
  if (body.messages !== undefined && !Array.isArray(body.messages)) {
    result.ignored.push({ what: 'messages', reason: 'messages is not an array' });
    return;
  }
  const list: unknown[] = Array.isArray(body.messages) ? body.messages : [];
  list.forEach((raw, i) => {
    if (!isRecord(raw)) {
      result.ignored.push({ what: `messages[${i}]`, reason: 'the entry is not an object' });
      return;
    }
    if (isRecord(raw.navigation)) {
      result.ignored.push({ what: `messages[${i}]`, reason: 'visitor navigation history; not a message' });
      return;
    }
    const t = nonEmpty(raw.t);
    if (t !== undefined && raw.closingMessage !== true) {
      result.ignored.push({ what: `messages[${i}] (t ${JSON.stringify(t)})`, reason: 'a system message; not processed' });
      return;
    }
    const { sender, role } = livechatSender(raw, visitor, agent);
    result.messages.push(
      rocketChatMessage(
        {
          id: nonEmpty(raw._id),
          roomId: nonEmpty(raw.rid) ?? roomId,
          roomName: nonEmpty(body.label) ?? nonEmpty(body.fname),
          text: typeof raw.msg === 'string' ? raw.msg : undefined,
          ts: raw.ts,
          editedAt: raw.editedAt,
          threadId: nonEmpty(raw.tmid),
          sender,
          role,
          raw,
          closing: raw.closingMessage === true,
        },
        rctx,
      ),
    );
  });
}

/** Which envelope a decoded body is: an outgoing-webhook payload or an Omnichannel one. */
export function rocketChatEnvelopeKind(body: unknown): 'outgoing' | 'livechat' | undefined {
  if (!isRecord(body)) return undefined;
  if (typeof body.type === 'string' && typeof body.token !== 'string') return 'livechat';
  if (typeof body.token === 'string') return 'outgoing';
  return undefined;
}

export function parseRocketChatWebhook(raw: Buffer, ctx: SourceParseContext, options: RocketChatRoleOptions & { siteUrl?: string | undefined }): ParseResult {
  const result: ParseResult = { messages: [], statuses: [], ignored: [], source_errors: [] };
  const rctx: RocketChatContext = { sourceKind: ROCKETCHAT_WEBHOOK_KIND, siteUrl: options.siteUrl, receivedAt: ctx.receivedAt.toISOString() };
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8').replace(/^\uFEFF/, ''));
  } catch {
    result.ignored.push({ what: 'event', reason: 'the stored body is not valid JSON' });
    return result;
  }
  try {
    const envelope = rocketChatEnvelopeKind(body);
    if (envelope === 'outgoing') parseOutgoing(body as Json, rctx, options, result);
    else if (envelope === 'livechat') parseLivechat(body as Json, (body as Json).type as string, rctx, result);
    else result.ignored.push({ what: 'event', reason: 'neither an outgoing-webhook payload (token) nor an Omnichannel webhook (type)' });
  } catch {
    result.ignored.push({ what: 'event', reason: 'the event could not be parsed (internal error)' });
  }
  return result;
}
