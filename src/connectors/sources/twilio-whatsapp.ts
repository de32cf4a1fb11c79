/**
 * Twilio WhatsApp webhook source: form-encoded POSTs signed with `X-Twilio-Signature` over the
 * public URL and the sorted parameters (twilio-whatsapp-signature.ts), an envelope check at the
 * edge, and the parser (twilio-whatsapp-parse.ts). Reference: chat-sources.md section 2.
 *
 * The answer is an empty TwiML document, so Twilio sends nothing back to the patient.
 */
import { z } from 'zod';
import type { EdgeResponse, InboundRequest, SourceConnector, SourceInstance } from '../types.js';
import { TWILIO_SID, TWILIO_WHATSAPP_KIND, parseTwilioWhatsApp } from './twilio-whatsapp-parse.js';
import {
  signatureAlgorithmFrom,
  validateTwilioSignature,
  validateTwilioSignatureWithBody,
  type TwilioParams,
} from './twilio-whatsapp-signature.js';

/** Twilio's form posts are small (a few KB; 10 media URLs at most). */
export const TWILIO_MAX_BODY_BYTES = 256 * 1024;

export const twilioWhatsAppConfigSchema = z
  .strictObject({
    kind: z.literal(TWILIO_WHATSAPP_KIND).describe('Source kind: Twilio\'s WhatsApp (Messaging) webhook.'),
    path: z
      .string()
      .regex(/^\/webhooks\/[^\s?#]+$/, 'a path starting with /webhooks/, without query, fragment or spaces')
      .optional()
      .describe('Webhook path that receives Twilio\'s POSTs. Default: /webhooks/<channel id>.'),
    auth_token: z
      .string()
      .min(1)
      .describe('The Twilio Auth Token (Console > Account info) that signs every request (X-Twilio-Signature). Use ${TWILIO_AUTH_TOKEN}.'),
    public_base_url: z
      .url({ protocol: /^https?$/ })
      .regex(/^[^?#]*$/, 'a base URL without query or fragment')
      .optional()
      .describe(
        'The public scheme://host[:port][/prefix] Twilio calls, e.g. https://hooks.clinic.example. The signed URL is this plus the request path and query. Set it behind a proxy or load balancer; without it the URL is rebuilt from X-Forwarded-Proto/X-Forwarded-Host/Host.',
      ),
    max_body_bytes: z
      .number()
      .int()
      .positive()
      .default(TWILIO_MAX_BODY_BYTES)
      .describe('Largest accepted POST body in bytes; larger bodies get 413. Default 256 KiB.'),
  })
  .describe('Receives WhatsApp messages and status callbacks from Twilio (form-encoded, X-Twilio-Signature).');

export type TwilioWhatsAppConfig = z.infer<typeof twilioWhatsAppConfigSchema>;

/** Empty TwiML: Twilio replies nothing to the patient. */
export const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>';

function reply(status: number, code: string, message: string): EdgeResponse {
  return { status, contentType: 'application/json', body: JSON.stringify({ error: { code, message } }) };
}

/** The first value of a (possibly comma-joined) forwarding header. */
function firstHeader(v: string | undefined): string | undefined {
  const first = v?.split(',')[0]?.trim();
  return first === undefined || first === '' ? undefined : first;
}

/** The URL Twilio signed: public_base_url + path and query as received. */
export function twilioSignedUrl(req: InboundRequest, publicBaseUrl: string | undefined): string | undefined {
  if (publicBaseUrl !== undefined) return publicBaseUrl.replace(/\/+$/, '') + req.url;
  const host = firstHeader(req.headers['x-forwarded-host']) ?? firstHeader(req.headers['host']);
  if (host === undefined) return undefined;
  const proto = firstHeader(req.headers['x-forwarded-proto'])?.toLowerCase() === 'https' ? 'https' : 'http';
  return `${proto}://${host}${req.url}`;
}

/** Form body -> name -> value or values, exactly as Twilio's validator sees the parameters. */
function formParams(raw: Buffer): TwilioParams {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

function single(body: Record<string, unknown>, name: string): string | undefined {
  const v = body[name];
  return typeof v === 'string' ? v : undefined;
}

export function checkTwilioEnvelope(body: unknown): string | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'not a Twilio webhook: the body is not form-encoded';
  const b = body as Record<string, unknown>;
  const sid = single(b, 'MessageSid') ?? single(b, 'SmsMessageSid') ?? single(b, 'SmsSid');
  if (sid === undefined) return 'not a Twilio Messaging webhook: MessageSid is missing or repeated';
  if (!TWILIO_SID.test(sid)) return 'not a Twilio Messaging webhook: MessageSid is not a Twilio SID';
  const account = single(b, 'AccountSid');
  if (account === undefined || !/^AC[0-9a-fA-F]{32}$/.test(account)) return 'not a Twilio Messaging webhook: AccountSid is missing or not an account SID';
  return null;
}

export function createTwilioWhatsAppSource(config: TwilioWhatsAppConfig, ctx: { channelId: string }): SourceInstance {
  const authToken = config.auth_token;
  return {
    path: config.path ?? `/webhooks/${ctx.channelId}`,
    bodyFormat: 'form',
    maxBodyBytes: config.max_body_bytes,

    handleGet(): EdgeResponse {
      // A GET webhook carries its parameters in the query and has no body to store durably.
      return reply(405, 'METHOD_NOT_SUPPORTED', 'Configure the Twilio webhook with HTTP POST.');
    },

    authenticate(req: InboundRequest): EdgeResponse | null {
      const signature = req.headers['x-twilio-signature'];
      if (signature === undefined || signature.trim() === '') {
        return reply(401, 'SIGNATURE_MISSING', 'The X-Twilio-Signature header is missing.');
      }
      const algorithm = signatureAlgorithmFrom(req.headers['x-twilio-webhooks-signature-settings']);
      if (algorithm === undefined) {
        return reply(403, 'SIGNATURE_ALGORITHM_UNSUPPORTED', 'X-Twilio-Webhooks-Signature-Settings names an algorithm other than HMAC_SHA1 or HMAC_SHA256.');
      }
      const url = twilioSignedUrl(req, config.public_base_url);
      if (url === undefined) return reply(403, 'SIGNATURE_MISMATCH', 'The signed URL cannot be rebuilt: no Host header and no public_base_url.');
      const ok = req.query.has('bodySHA256')
        ? validateTwilioSignatureWithBody(authToken, signature.trim(), url, req.rawBody, algorithm)
        : validateTwilioSignature(authToken, signature.trim(), url, formParams(req.rawBody), algorithm);
      if (!ok) return reply(403, 'SIGNATURE_MISMATCH', 'The X-Twilio-Signature signature does not match the URL and parameters.');
      return null;
    },

    checkEnvelope: checkTwilioEnvelope,

    acceptedResponse: { status: 200, contentType: 'text/xml; charset=utf-8', body: EMPTY_TWIML },

    parse: parseTwilioWhatsApp,
  };
}

export const twilioWhatsAppSource: SourceConnector<typeof twilioWhatsAppConfigSchema> = {
  kind: TWILIO_WHATSAPP_KIND,
  summary: 'Twilio WhatsApp webhooks: signed form POSTs of inbound messages and status callbacks.',
  status: 'beta',
  since: '0.2.0',
  configSchema: twilioWhatsAppConfigSchema,
  create: createTwilioWhatsAppSource,
};
