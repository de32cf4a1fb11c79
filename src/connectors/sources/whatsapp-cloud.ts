/**
 * WhatsApp Cloud API (Meta) webhook source: the GET verification handshake, the
 * `X-Hub-Signature-256` check over the raw bytes, an envelope check at the edge, and the parser
 * (in `whatsapp-cloud-parse.ts`). Docs: docs/sources/whatsapp-cloud.md.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { EdgeResponse, InboundRequest, SourceConnector, SourceInstance } from '../types.js';
import { WHATSAPP_CLOUD_KIND, parseWhatsAppCloud } from './whatsapp-cloud-parse.js';

/** Meta's largest webhook payload (3 MB); bodies above it are refused with 413. */
export const WHATSAPP_MAX_BODY_BYTES = 3 * 1024 * 1024;

export const whatsappCloudConfigSchema = z
  .strictObject({
    kind: z.literal(WHATSAPP_CLOUD_KIND).describe('Source kind: the WhatsApp Cloud API webhook.'),
    path: z
      .string()
      .regex(/^\/webhooks\/[^\s?#]+$/, 'a path starting with /webhooks/, without query, fragment or spaces')
      .optional()
      .describe('Webhook path served for GET (verification) and POST (events). Default: /webhooks/<channel id>.'),
    app_secret: z
      .string()
      .min(1)
      .describe('Meta App Secret; signs every POST (X-Hub-Signature-256). Use ${ENV_VAR}, never a literal.'),
    verify_token: z
      .string()
      .min(1)
      .describe('The "Verify token" entered in the App Dashboard; Meta echoes it in the GET verification handshake.'),
    max_body_bytes: z
      .number()
      .int()
      .positive()
      .default(WHATSAPP_MAX_BODY_BYTES)
      .describe('Largest accepted POST body in bytes; larger bodies get 413. Default 3 MiB, Meta\'s maximum payload.'),
  })
  .describe('Receives WhatsApp Cloud API webhooks (messages and delivery statuses) from Meta.');

export type WhatsAppCloudConfig = z.infer<typeof whatsappCloudConfigSchema>;

/** Largest `hub.challenge` echoed back (Meta sends a short number). */
const MAX_CHALLENGE_LENGTH = 1024;
const SIGNATURE_HEADER = 'x-hub-signature-256';

function reply(status: number, code: string, message: string): EdgeResponse {
  return { status, contentType: 'application/json', body: JSON.stringify({ error: { code, message } }) };
}

/** Constant-time equality of two strings; the length check comes first (length is not secret). */
function secretEquals(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `sha256=<hex>` with lowercase hex HMAC-SHA256 of the exact bytes received. */
export function whatsappSignature(appSecret: string, rawBody: Buffer): string {
  return `sha256=${createHmac('sha256', appSecret).update(rawBody).digest('hex')}`;
}

/** Lenient where Meta adds fields; strict only on what identifies a WhatsApp webhook. */
const envelopeSchema = z.looseObject({
  object: z.literal('whatsapp_business_account'),
  entry: z.array(
    z.looseObject({
      id: z.string().optional(),
      changes: z.array(z.looseObject({ field: z.string(), value: z.unknown() })),
    }),
  ),
});

export function checkWhatsAppEnvelope(body: unknown): string | null {
  const r = envelopeSchema.safeParse(body);
  if (r.success) return null;
  const issue = r.error.issues[0];
  const where = issue === undefined || issue.path.length === 0 ? 'body' : issue.path.map(String).join('.');
  return `not a WhatsApp Cloud API webhook: ${where}: ${issue?.message ?? 'invalid'}`;
}

export function createWhatsAppCloudSource(config: WhatsAppCloudConfig, ctx: { channelId: string }): SourceInstance {
  const appSecret = config.app_secret;
  const verifyToken = config.verify_token;
  return {
    path: config.path ?? `/webhooks/${ctx.channelId}`,
    maxBodyBytes: config.max_body_bytes,

    handleGet(req: InboundRequest): EdgeResponse {
      const mode = req.query.get('hub.mode');
      const token = req.query.get('hub.verify_token');
      const challenge = req.query.get('hub.challenge');
      if (mode === null || token === null || challenge === null) {
        return reply(400, 'VERIFY_PARAMS_MISSING', 'hub.mode, hub.verify_token and hub.challenge are required.');
      }
      if (mode !== 'subscribe') return reply(400, 'VERIFY_MODE_INVALID', 'hub.mode must be "subscribe".');
      if (challenge === '' || challenge.length > MAX_CHALLENGE_LENGTH) {
        return reply(400, 'VERIFY_CHALLENGE_INVALID', `hub.challenge must be 1 to ${MAX_CHALLENGE_LENGTH} characters.`);
      }
      if (!secretEquals(token, verifyToken)) return reply(403, 'VERIFY_TOKEN_MISMATCH', 'hub.verify_token does not match.');
      return { status: 200, contentType: 'text/plain; charset=utf-8', body: challenge };
    },

    authenticate(req: InboundRequest): EdgeResponse | null {
      const header = req.headers[SIGNATURE_HEADER];
      if (header === undefined || header.trim() === '') {
        return reply(401, 'SIGNATURE_MISSING', 'The X-Hub-Signature-256 header is missing.');
      }
      const match = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim());
      if (match?.[1] === undefined) {
        return reply(403, 'SIGNATURE_MALFORMED', 'The X-Hub-Signature-256 header is not "sha256=" followed by 64 hex digits.');
      }
      const given = Buffer.from(match[1], 'hex');
      const expected = createHmac('sha256', appSecret).update(req.rawBody).digest();
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        return reply(403, 'SIGNATURE_MISMATCH', 'The X-Hub-Signature-256 signature does not match the body.');
      }
      return null;
    },

    checkEnvelope: checkWhatsAppEnvelope,

    acceptedResponse: { status: 200, contentType: 'text/plain; charset=utf-8', body: 'OK' },

    parse: parseWhatsAppCloud,
  };
}

export const whatsappCloudSource: SourceConnector<typeof whatsappCloudConfigSchema> = {
  kind: WHATSAPP_CLOUD_KIND,
  summary: 'WhatsApp Cloud API webhooks from Meta: signed POSTs of messages and delivery statuses.',
  status: 'beta',
  since: '0.1.0',
  configSchema: whatsappCloudConfigSchema,
  create: createWhatsAppCloudSource,
};
