/**
 * Per-channel media policy: whether to download, size and type limits, the inline threshold, and
 * the credentials each source needs. Meant as an optional channel-level `media:` block (the lead
 * wires it into the channel schema); its keys follow the secrets rule (tokens as ${VAR}).
 */
import { z } from 'zod';

export const DEFAULT_ALLOWED_TYPES = ['image/*', 'audio/*', 'video/*', 'application/pdf'];

export const mediaPolicySchema = z
  .strictObject({
    download: z.boolean().default(true).describe('Download media before delivery. false: deliver attachments with their source URL only.'),
    max_bytes: z
      .number()
      .int()
      .positive()
      .default(16 * 1024 * 1024)
      .describe('Largest file downloaded, in bytes (WhatsApp: images 5 MB, audio/video 16 MB, documents 100 MB). Larger: MEDIA_TOO_LARGE (dead-lettered).'),
    allowed_types: z
      .array(z.string().regex(/^[a-z0-9.+-]+\/(\*|[a-z0-9.+-]+)$/i, 'a MIME type such as image/png, or image/*'))
      .min(1)
      .default(DEFAULT_ALLOWED_TYPES)
      .describe('Content types accepted (type/subtype or type/*). Others: MEDIA_TYPE_REFUSED (dead-lettered).'),
    inline_max_bytes: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('Files up to this size go inline into the attachment (base64 data); larger ones get a URL served by Switchboard. 0: always a URL.'),
    timeout_ms: z.number().int().min(100).default(60_000).describe('Timeout of each media HTTP request.'),
    whatsapp: z
      .strictObject({
        access_token: z.string().min(1).describe('A WhatsApp Cloud API access token (system user). Use ${WHATSAPP_ACCESS_TOKEN}.'),
        graph_base_url: z.url({ protocol: /^https?$/ }).default('https://graph.facebook.com').describe('Graph API base URL.'),
        api_version: z.string().regex(/^v\d+\.\d+$/).default('v23.0').describe('Graph API version, e.g. v23.0.'),
      })
      .optional()
      .describe('Credentials for WhatsApp Cloud API media ids.'),
    twilio: z
      .strictObject({
        account_sid: z.string().min(1).describe('Account SID (or API key SID) for HTTP Basic auth. Use ${TWILIO_ACCOUNT_SID}.'),
        auth_token: z.string().min(1).describe('Auth token (or API key secret). Use ${TWILIO_AUTH_TOKEN}.'),
      })
      .optional()
      .describe('Credentials for Twilio MediaUrlN.'),
    http: z
      .strictObject({
        headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/), z.string()).default({}).describe('Headers sent with each download, e.g. x-auth-token / x-user-id for Rocket.Chat.'),
      })
      .optional()
      .describe('Plain URL downloads (Rocket.Chat, generic chat webhooks).'),
  })
  .describe('How a channel downloads and stores media.');

export type MediaPolicy = z.infer<typeof mediaPolicySchema>;

/** Whether `contentType` (parameters ignored) matches one of `allowed` (type/subtype or type/*). */
export function contentTypeAllowed(contentType: string, allowed: readonly string[]): boolean {
  const t = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  if (!/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(t)) return false;
  const [major] = t.split('/');
  return allowed.some((a) => {
    const p = a.toLowerCase();
    return p === t || (p.endsWith('/*') && p.slice(0, -2) === major);
  });
}
