/**
 * Rocket.Chat webhook source: outgoing-webhook integrations (the integration token travels in the
 * JSON body) and Omnichannel/Livechat webhooks (`X-RocketChat-Livechat-Token` header). Both are
 * static shared secrets compared in constant time; TLS is mandatory in front of this route.
 * Reference: chat-sources.md sections 3.1 and 3.2; parser in rocketchat-webhook-parse.ts.
 *
 * The answer is 200 with an EMPTY body: Rocket.Chat posts a JSON answer with `text` back into the
 * room. Raw bodies are never logged (old servers put password hashes in File Uploaded payloads).
 */
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { EdgeResponse, InboundRequest, SourceConnector, SourceInstance } from '../types.js';
import { ROCKETCHAT_WEBHOOK_KIND, isRecord, parseRocketChatWebhook, rocketChatEnvelopeKind } from './rocketchat-webhook-parse.js';

/** Livechat close events list every message of the session, so allow generous bodies. */
export const ROCKETCHAT_MAX_BODY_BYTES = 5 * 1024 * 1024;
const LIVECHAT_HEADER = 'x-rocketchat-livechat-token';

export const rocketChatWebhookConfigSchema = z
  .strictObject({
    kind: z.literal(ROCKETCHAT_WEBHOOK_KIND).describe('Source kind: Rocket.Chat outgoing and Omnichannel (Livechat) webhooks.'),
    path: z
      .string()
      .regex(/^\/webhooks\/[^\s?#]+$/, 'a path starting with /webhooks/, without query, fragment or spaces')
      .optional()
      .describe('Webhook path Rocket.Chat posts to. Default: /webhooks/<channel id>.'),
    accept: z
      .array(z.enum(['outgoing', 'livechat']))
      .min(1)
      .default(['outgoing', 'livechat'])
      .describe('Which webhooks this channel accepts: "outgoing" (Administration > Integrations > Outgoing) and/or "livechat" (Omnichannel > Webhooks).'),
    outgoing_token: z
      .string()
      .min(1)
      .optional()
      .describe('The outgoing integration\'s Token; Rocket.Chat sends it as "token" in every body. Required when accept lists "outgoing". Use ${ROCKETCHAT_OUTGOING_TOKEN}.'),
    livechat_token: z
      .string()
      .min(1)
      .optional()
      .describe('Omnichannel "Secret Token", sent as X-RocketChat-Livechat-Token. Required when accept lists "livechat". Use ${ROCKETCHAT_LIVECHAT_TOKEN}.'),
    site_url: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe('The Rocket.Chat server URL, to make relative file links absolute. Default: the payload\'s siteUrl (outgoing webhooks only).'),
    staff_users: z
      .array(z.string().min(1))
      .default([])
      .describe('Usernames or user ids of clinic staff. Outgoing-webhook messages from them get author_role "staff"; Livechat tells agents apart by itself.'),
    max_body_bytes: z
      .number()
      .int()
      .positive()
      .default(ROCKETCHAT_MAX_BODY_BYTES)
      .describe('Largest accepted POST body in bytes; larger bodies get 413. Default 5 MiB.'),
  })
  .superRefine((c, ctx) => {
    if (c.accept.includes('outgoing') && c.outgoing_token === undefined) {
      ctx.addIssue({ code: 'custom', path: ['outgoing_token'], message: 'accept lists "outgoing": set outgoing_token (e.g. ${ROCKETCHAT_OUTGOING_TOKEN})' });
    }
    if (c.accept.includes('livechat') && c.livechat_token === undefined) {
      ctx.addIssue({ code: 'custom', path: ['livechat_token'], message: 'accept lists "livechat": set livechat_token (e.g. ${ROCKETCHAT_LIVECHAT_TOKEN})' });
    }
  })
  .describe('Receives Rocket.Chat outgoing-webhook and Omnichannel (Livechat) webhook POSTs.');

export type RocketChatWebhookConfig = z.infer<typeof rocketChatWebhookConfigSchema>;

function reply(status: number, code: string, message: string): EdgeResponse {
  return { status, contentType: 'application/json', body: JSON.stringify({ error: { code, message } }) };
}

function secretEquals(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The `token` of an outgoing-webhook body, without keeping anything else of the body. */
function bodyToken(raw: Buffer): string | undefined {
  try {
    const body: unknown = JSON.parse(raw.toString('utf8').replace(/^\uFEFF/, ''));
    return isRecord(body) && typeof body.token === 'string' ? body.token : undefined;
  } catch {
    return undefined;
  }
}

export function checkRocketChatEnvelope(body: unknown): string | null {
  if (!isRecord(body)) return 'not a Rocket.Chat webhook: the body is not a JSON object';
  if (rocketChatEnvelopeKind(body) === undefined) return 'not a Rocket.Chat webhook: neither "token" (outgoing) nor "type" (Omnichannel)';
  if (body.messages !== undefined && !Array.isArray(body.messages)) return 'not a Rocket.Chat Omnichannel webhook: messages is not an array';
  return null;
}

export function createRocketChatWebhookSource(config: RocketChatWebhookConfig, ctx: { channelId: string }): SourceInstance {
  const acceptOutgoing = config.accept.includes('outgoing');
  const acceptLivechat = config.accept.includes('livechat');
  const roleOptions = { staffUsers: new Set(config.staff_users), siteUrl: config.site_url };
  return {
    path: config.path ?? `/webhooks/${ctx.channelId}`,
    bodyFormat: 'json',
    maxBodyBytes: config.max_body_bytes,

    handleGet(): EdgeResponse {
      return reply(405, 'METHOD_NOT_SUPPORTED', 'Rocket.Chat webhooks are POSTs.');
    },

    authenticate(req: InboundRequest): EdgeResponse | null {
      const header = req.headers[LIVECHAT_HEADER];
      if (header !== undefined) {
        if (!acceptLivechat || config.livechat_token === undefined) {
          return reply(403, 'TOKEN_NOT_ACCEPTED', 'This channel does not accept Omnichannel (Livechat) webhooks.');
        }
        if (!secretEquals(header, config.livechat_token)) return reply(403, 'TOKEN_MISMATCH', 'X-RocketChat-Livechat-Token does not match.');
        return null;
      }
      if (!acceptOutgoing || config.outgoing_token === undefined) {
        return reply(401, 'TOKEN_MISSING', 'The X-RocketChat-Livechat-Token header is missing.');
      }
      const token = bodyToken(req.rawBody);
      if (token === undefined) return reply(401, 'TOKEN_MISSING', 'The body has no "token" (outgoing webhook) and there is no X-RocketChat-Livechat-Token header.');
      if (!secretEquals(token, config.outgoing_token)) return reply(403, 'TOKEN_MISMATCH', 'The outgoing-webhook token does not match.');
      return null;
    },

    checkEnvelope: checkRocketChatEnvelope,

    // Empty body: a JSON answer with text/attachments would be posted back into the room. An
    // empty string (not undefined) keeps the status 200: Koa turns a null body into 204.
    acceptedResponse: { status: 200, contentType: 'text/plain; charset=utf-8', body: '' },

    parse: (raw, parseCtx) => parseRocketChatWebhook(raw, parseCtx, roleOptions),
  };
}

export const rocketChatWebhookSource: SourceConnector<typeof rocketChatWebhookConfigSchema> = {
  kind: ROCKETCHAT_WEBHOOK_KIND,
  summary: 'Rocket.Chat outgoing-webhook and Omnichannel (Livechat) webhooks: visitor and agent messages, session events.',
  status: 'beta',
  since: '0.2.0',
  configSchema: rocketChatWebhookConfigSchema,
  create: createRocketChatWebhookSource,
};
