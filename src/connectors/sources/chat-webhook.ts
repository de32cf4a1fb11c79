/**
 * Generic chat webhook: any platform that POSTs JSON, authenticated by an HMAC-SHA256 over the
 * raw body (header name, prefix and hex/base64 configurable) or a bearer token, and turned into
 * canonical messages by a JSONata `extract` expression written inline in the channel file.
 *
 * `extract` receives the decoded body as `$` (and `$received_at`, `$channel_id`) and returns one
 * object or an array of objects with canonical fields: `id` (required), `sent_at`, `sender{...}`,
 * `text`, `media[...]`, `kind`, `conversation_id`, `author_role`, `reply_to`, `location`... (see
 * docs/sources/chat-webhook.md). Nothing (undefined, null, []) means "not a message": the event is
 * kept and recorded as ignored.
 *
 * Errors: a syntax error fails the channel at load (the schema check, with the line and column in
 * the expression); at parse time an evaluation error, a timeout or an output that is not a valid
 * canonical message becomes an `unsupported` message carrying the error, never a crash.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import {
  CANONICAL_SCHEMA_VERSION,
  canonicalMessageSchema,
  messageErrorCodes,
  messageKinds,
  type CanonicalMessage,
  type ParseResult,
} from '../../core/canonical-message.js';
import type { EdgeResponse, InboundRequest, SourceConnector, SourceInstance, SourceParseContext } from '../types.js';
import { jsonataSyntaxError, type EvaluationResult } from './chat-webhook-jsonata.js';
import { compileMapping } from '../../mapping/jsonata-mapping.js';
import { SwitchboardError } from '../../core/errors.js';

export const CHAT_WEBHOOK_KIND = 'chat_webhook';

export const chatWebhookErrorCodes = {
  /** The extract expression threw or ran past its time budget. */
  extractFailed: 'switchboard.extract_failed',
  /** The extract output is not an object with canonical fields. */
  extractInvalid: 'switchboard.extract_invalid',
} as const;

const hmacAuthSchema = z.strictObject({
  kind: z.literal('hmac_sha256').describe('HMAC-SHA256 of the exact raw body with a shared secret.'),
  secret: z.string().min(1).describe('The shared signing secret. Use ${CHAT_WEBHOOK_SECRET}.'),
  header: z
    .string()
    .regex(/^[A-Za-z0-9-]+$/, 'an HTTP header name')
    .default('x-signature-256')
    .describe('The header that carries the signature, e.g. x-hub-signature-256, x-signature.'),
  prefix: z.string().default('').describe('Text before the signature in the header, e.g. "sha256=". Compared case-insensitively.'),
  encoding: z.enum(['hex', 'base64']).default('hex').describe('How the platform writes the digest.'),
});

const bearerAuthSchema = z.strictObject({
  kind: z.literal('bearer').describe('A static token in Authorization: Bearer <token>.'),
  token: z.string().min(1).describe('The expected token. Use ${CHAT_WEBHOOK_TOKEN}.'),
});

export const chatWebhookConfigSchema = z
  .strictObject({
    kind: z.literal(CHAT_WEBHOOK_KIND).describe('Source kind: a generic JSON chat webhook with a JSONata extract expression.'),
    path: z
      .string()
      .regex(/^\/webhooks\/[^\s?#]+$/, 'a path starting with /webhooks/, without query, fragment or spaces')
      .optional()
      .describe('Webhook path the platform posts to. Default: /webhooks/<channel id>.'),
    platform: z
      .string()
      .regex(/^[a-z][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, _ and -, starting with a letter')
      .describe('Names the platform, e.g. "mattermost": source.account_id and the conversation id prefix.'),
    auth: z.discriminatedUnion('kind', [hmacAuthSchema, bearerAuthSchema]).describe('How requests are authenticated.'),
    extract: z
      .string()
      .min(1)
      .superRefine((expression, ctx) => {
        const e = jsonataSyntaxError(expression);
        if (e !== null) {
          ctx.addIssue({ code: 'custom', message: `JSONata ${e.code} at line ${e.line}, column ${e.column} of the extract expression: ${e.message}` });
        }
      })
      .describe('JSONata from the webhook body ($) to one canonical message object or an array of them; nothing means "not a message". Written inline (a YAML block scalar); write $${ for a literal ${.'),
    timeout_ms: z.number().int().min(10).max(10_000).default(1000).describe('Time budget of one extract evaluation.'),
    max_body_bytes: z.number().int().positive().default(1024 * 1024).describe('Largest accepted POST body in bytes; larger bodies get 413. Default 1 MiB.'),
  })
  .describe('Receives JSON webhooks from any chat platform; a JSONata expression maps them to canonical messages.');

export type ChatWebhookConfig = z.infer<typeof chatWebhookConfigSchema>;

// ---------------------------------------------------------------------------------------------
// What extract may return
// ---------------------------------------------------------------------------------------------

const shape = canonicalMessageSchema.shape;

/** JSONata collapses a one-item sequence to the item: accept a lone object where a list is meant. */
function listOf<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? [v] : v), schema);
}

/** One extracted message: canonical fields, with defaults for what the expression leaves out. */
export const extractedMessageSchema = z.strictObject({
  id: z.union([z.string().min(1), z.number().transform(String)]),
  sent_at: z.union([z.string(), z.number()]).optional(),
  kind: z.enum(messageKinds).optional(),
  dedup_key: z.string().min(1).optional(),
  conversation_id: z.string().min(1).optional(),
  group_id: shape.group_id,
  sender: shape.sender.optional(),
  author_role: shape.author_role,
  text: shape.text,
  media: listOf(shape.media).optional(),
  location: shape.location,
  contacts: listOf(shape.contacts),
  interactive: shape.interactive,
  reaction: shape.reaction,
  system: shape.system,
  original_id: shape.original_id,
  unsupported: shape.unsupported,
  reply_to: shape.reply_to,
  forwarded: shape.forwarded,
  referral: shape.referral,
  errors: listOf(shape.errors).optional(),
});

/** ISO with any offset -> UTC Z; numbers: epoch seconds below 1e12, else milliseconds. */
function instant(v: string | number | undefined): string | undefined {
  if (v === undefined) return undefined;
  let ms: number;
  if (typeof v === 'number') ms = v < 1e12 ? v * 1000 : v;
  else if (/^\d{1,13}$/.test(v)) ms = Number(v) < 1e12 ? Number(v) * 1000 : Number(v);
  else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(v)) ms = Date.parse(v);
  else return undefined;
  if (!Number.isFinite(ms) || ms < 0 || ms > 253_402_300_799_999) return undefined;
  return new Date(ms).toISOString();
}

function issuesOf(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length === 0 ? '(item)' : i.path.map(String).join('.')}: ${i.message}`)
    .join('; ');
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

interface Base {
  platform: string;
  receivedAt: string;
  /** Stable stand-in id prefix for failures: a hash of the raw body. */
  bodyHash: string;
}

function failure(base: Base, index: number, code: string, title: string, detail?: string, id?: string): CanonicalMessage {
  const stableId = id ?? `unidentified:${base.bodyHash}:${index}`;
  return canonicalMessageSchema.parse({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: { kind: CHAT_WEBHOOK_KIND, account_id: base.platform },
    id: stableId,
    dedup_key: stableId,
    kind: 'unsupported',
    sent_at: base.receivedAt,
    received_at: base.receivedAt,
    sender: {},
    conversation_id: `${base.platform}:unknown`,
    unsupported: { type: 'extract' },
    errors: [defined({ code, title, detail })],
  });
}

export function buildExtracted(item: unknown, index: number, base: Base): CanonicalMessage {
  const r = extractedMessageSchema.safeParse(item);
  if (!r.success) {
    const id = typeof item === 'object' && item !== null && typeof (item as { id?: unknown }).id === 'string' && (item as { id: string }).id !== '' ? (item as { id: string }).id : undefined;
    return failure(base, index, chatWebhookErrorCodes.extractInvalid, `extract item ${index} is not a canonical message`, issuesOf(r.error), id);
  }
  const x = r.data;
  const errors = [...(x.errors ?? [])];
  let sentAt = instant(x.sent_at);
  if (sentAt === undefined) {
    if (x.sent_at !== undefined) errors.push({ code: messageErrorCodes.timestampInvalid, title: 'sent_at is not an ISO instant with a zone or epoch seconds/milliseconds; the received time is used' });
    sentAt = base.receivedAt;
  }
  const sender = x.sender ?? {};
  const media = x.media ?? [];
  const kind = x.kind ?? media[0]?.kind ?? (x.location !== undefined ? 'location' : x.text !== undefined && x.text !== '' ? 'text' : 'unsupported');
  const senderKey = sender.platform_id ?? sender.phone ?? sender.user_id ?? sender.username;
  const candidate = defined({
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: { kind: CHAT_WEBHOOK_KIND, account_id: base.platform },
    ...x,
    id: x.id,
    dedup_key: x.dedup_key ?? x.id,
    kind,
    sent_at: sentAt,
    received_at: base.receivedAt,
    sender,
    media,
    conversation_id: x.conversation_id ?? `${base.platform}:${senderKey ?? 'unknown'}`,
    errors,
  });
  const checked = canonicalMessageSchema.safeParse(candidate);
  if (checked.success) return checked.data;
  return failure(base, index, chatWebhookErrorCodes.extractInvalid, `extract item ${index} is not a canonical message`, issuesOf(checked.error), x.id);
}

// ---------------------------------------------------------------------------------------------
// The source
// ---------------------------------------------------------------------------------------------

function reply(status: number, code: string, message: string): EdgeResponse {
  return { status, contentType: 'application/json', body: JSON.stringify({ error: { code, message } }) };
}

function constantTimeEquals(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createChatWebhookSource(config: ChatWebhookConfig, ctx: { channelId: string }): SourceInstance {
  // The project's JSONata engine: compiled once, evaluated with a time budget (a runaway
  // expression fails with SB0001 instead of stalling the ingest worker).
  const extract = compileMapping(`${ctx.channelId}#extract`, config.extract);
  const evaluate = async (input: unknown, receivedAt: string): Promise<EvaluationResult> => {
    try {
      const value = await extract.evaluate(input, {
        now: new Date(receivedAt),
        timeoutMs: config.timeout_ms,
        bindings: { received_at: receivedAt, channel_id: ctx.channelId },
      });
      // JSONata sequences and frozen arrays: keep plain JSON only.
      return { ok: true, value: value === undefined ? undefined : (JSON.parse(JSON.stringify(value)) as unknown) };
    } catch (err) {
      if (err instanceof SwitchboardError) {
        const code = err.code === 'MAPPING_TIMEOUT' ? 'SB0001' : String(err.details['jsonata_code'] ?? 'error');
        return { ok: false, code, message: err.code === 'MAPPING_TIMEOUT' ? 'the extract expression ran past its time budget' : err.message };
      }
      return { ok: false, code: 'internal', message: err instanceof Error ? err.message : String(err) };
    }
  };
  const auth = config.auth;

  function authenticate(req: InboundRequest): EdgeResponse | null {
    if (auth.kind === 'bearer') {
      const header = req.headers['authorization'];
      if (header === undefined || header.trim() === '') return reply(401, 'TOKEN_MISSING', 'The Authorization header is missing.');
      const m = /^Bearer\s+(.+)$/i.exec(header.trim());
      if (!m?.[1]) return reply(401, 'TOKEN_MISSING', 'The Authorization header is not "Bearer <token>".');
      if (!constantTimeEquals(Buffer.from(m[1], 'utf8'), Buffer.from(auth.token, 'utf8'))) return reply(403, 'TOKEN_MISMATCH', 'The bearer token does not match.');
      return null;
    }
    const name = auth.header.toLowerCase();
    const header = req.headers[name]?.trim();
    if (header === undefined || header === '') return reply(401, 'SIGNATURE_MISSING', `The ${auth.header} header is missing.`);
    if (auth.prefix !== '' && header.slice(0, auth.prefix.length).toLowerCase() !== auth.prefix.toLowerCase()) {
      return reply(403, 'SIGNATURE_MALFORMED', `The ${auth.header} header does not start with "${auth.prefix}".`);
    }
    const digest = header.slice(auth.prefix.length).trim();
    const wellFormed = auth.encoding === 'hex' ? /^[0-9a-fA-F]{64}$/.test(digest) : /^[A-Za-z0-9+/_-]{43}=?$/.test(digest);
    if (!wellFormed) return reply(403, 'SIGNATURE_MALFORMED', `The ${auth.header} signature is not a ${auth.encoding} SHA-256 digest.`);
    const given = Buffer.from(auth.encoding === 'hex' ? digest : digest.replace(/-/g, '+').replace(/_/g, '/'), auth.encoding);
    const expected = createHmac('sha256', auth.secret).update(req.rawBody).digest();
    if (!constantTimeEquals(given, expected)) return reply(403, 'SIGNATURE_MISMATCH', `The ${auth.header} signature does not match the body.`);
    return null;
  }

  async function parse(raw: Buffer, parseCtx: SourceParseContext): Promise<ParseResult> {
    const result: ParseResult = { messages: [], statuses: [], ignored: [], source_errors: [] };
    const base: Base = {
      platform: config.platform,
      receivedAt: parseCtx.receivedAt.toISOString(),
      bodyHash: createHash('sha256').update(raw).digest('hex').slice(0, 32),
    };
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8').replace(/^\uFEFF/, ''));
    } catch {
      result.ignored.push({ what: 'event', reason: 'the stored body is not valid JSON' });
      return result;
    }
    const out = await evaluate(body, base.receivedAt);
    if (!out.ok) {
      const where = out.position === undefined ? '' : ` (at character ${out.position} of the expression)`;
      result.messages.push(failure(base, 0, chatWebhookErrorCodes.extractFailed, `the extract expression failed: JSONata ${out.code}${where}`, out.message));
      return result;
    }
    const value = out.value;
    const items = value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
    if (items.length === 0) {
      result.ignored.push({ what: 'event', reason: 'the extract expression returned nothing: not a message' });
      return result;
    }
    items.forEach((item, i) => result.messages.push(buildExtracted(item, i, base)));
    return result;
  }

  return {
    path: config.path ?? `/webhooks/${ctx.channelId}`,
    bodyFormat: 'json',
    maxBodyBytes: config.max_body_bytes,
    handleGet: () => reply(405, 'METHOD_NOT_SUPPORTED', 'This webhook takes POSTs.'),
    authenticate,
    checkEnvelope: (body) => (typeof body === 'object' && body !== null ? null : 'the body is not a JSON object or array'),
    acceptedResponse: { status: 200, contentType: 'text/plain; charset=utf-8', body: '' },
    parse,
  };
}

export const chatWebhookSource: SourceConnector<typeof chatWebhookConfigSchema> = {
  kind: CHAT_WEBHOOK_KIND,
  summary: 'Any chat platform\'s JSON webhook: HMAC-SHA256 or bearer auth, a JSONata expression extracts canonical messages.',
  status: 'experimental',
  since: '0.2.0',
  configSchema: chatWebhookConfigSchema,
  create: createChatWebhookSource,
};
