/**
 * Twilio destination (WhatsApp through Twilio's Messages API): a care team's reply sent with
 * `POST /2010-04-01/Accounts/<AccountSid>/Messages.json` (form-encoded, HTTP Basic
 * AccountSid:AuthToken). Text as `Body`, media as `MediaUrl` (+ `Body` as caption), templates as
 * `ContentSid` + `ContentVariables` (the Content template's SID looked up by the template's name).
 * `StatusCallback` points at the channel's inbound twilio_whatsapp webhook, whose status callbacks
 * are matched by MessageSid.
 *
 * No double sends: Twilio has no idempotency key either. An interrupted send is reconciled from
 * Twilio's Messages list (GET Messages.json?To=&From=): a message to the same number created after
 * the intent, with the same body (any body for templates, whose text Twilio renders), not recorded
 * for another send, is taken as ours. Not found: resent only once the intent is older than
 * reconcile_ms (a request still in flight has then been answered or dropped by Twilio).
 */
import { z } from 'zod';
import { SwitchboardError, classifyTwilioSendError, parseRetryAfter } from '../../core/errors.js';
import type { OutboundServices, OutboundSendRecord } from '../../core/outbound-ledger.js';
import { isFreeForm, windowOpen, type OutboundContent, type OutboundMessage } from '../../core/outbound.js';
import { callProvider, chatSendShape, prepareReply, providerErrorText, recordDeadLetter, renderToPhone, outboundServicesOf, sendAtMostOnce, sendError } from '../chat-send.js';
import type { DeliveryContext, DeliveryOutcome, DestinationConnector, DestinationCreateContext, DestinationInstance } from '../types.js';
import { destinationBase, destinationBaseShape } from '../types.js';

export const TWILIO_SEND_KIND = 'twilio_send';
const SOURCE_KINDS = ['twilio_whatsapp'] as const;
const E164 = /^\+[1-9]\d{4,14}$/;

export const twilioSendConfigSchema = z
  .strictObject({
    kind: z.literal(TWILIO_SEND_KIND).describe('Destination kind: replies to patients on WhatsApp through Twilio\'s Messages API.'),
    ...destinationBaseShape,
    ...chatSendShape,
    account_sid: z.string().regex(/^AC[0-9a-fA-F]{32}$/, 'a Twilio Account SID (AC + 32 hex digits)').describe('The Account SID (use ${TWILIO_ACCOUNT_SID}).'),
    auth_token: z.string().min(1).describe('The account\'s Auth Token (or an API key secret with api_key_sid). Use ${TWILIO_AUTH_TOKEN}, never a literal.'),
    api_key_sid: z.string().regex(/^SK[0-9a-fA-F]{32}$/).optional().describe('An API key SID: Basic auth as api_key_sid:auth_token instead of the Account SID.'),
    from: z
      .string()
      .regex(/^(whatsapp:)?\+[1-9]\d{4,14}$/, 'the WhatsApp sender, e.g. whatsapp:+15550100100')
      .optional()
      .describe('The WhatsApp sender replies come from when the patient\'s conversation names none (whatsapp:+E.164).'),
    messaging_service_sid: z.string().regex(/^MG[0-9a-fA-F]{32}$/).optional().describe('Send through this Messaging Service instead of a fixed From.'),
    status_callback: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe('StatusCallback: the public URL of the inbound twilio_whatsapp channel\'s webhook, where Twilio reports sent / delivered / read / failed.'),
    content_templates: z
      .record(z.string().regex(/^[a-z0-9_]{1,512}$/), z.string().regex(/^HX[0-9a-fA-F]{32}$/, 'a Content SID (HX + 32 hex digits)'))
      .default({})
      .describe('Template name (as the mapping names it, optionally `name:language`) -> Content SID (HX...).'),
    api_url: z.url({ protocol: /^https?$/ }).default('https://api.twilio.com').describe('The REST API base URL.'),
  })
  .refine((c) => c.from !== undefined || c.messaging_service_sid !== undefined, { message: 'give from or messaging_service_sid', path: ['from'] })
  .describe('Sends care-team replies on WhatsApp through Twilio: Body, MediaUrl, Content templates; StatusCallback for statuses.');

export type TwilioSendConfig = z.infer<typeof twilioSendConfigSchema>;

const messageSchema = z.looseObject({
  sid: z.string().regex(/^(SM|MM)[0-9a-fA-F]{32}$/),
  status: z.string().optional(),
  to: z.string().optional(),
  from: z.string().nullable().optional(),
  body: z.string().nullable().optional(),
  date_created: z.string().nullable().optional(),
});
const listSchema = z.looseObject({ messages: z.array(messageSchema) });
const errorSchema = z.looseObject({ code: z.number().int().optional(), message: z.string().optional(), more_info: z.string().optional(), status: z.number().int().optional() });

const whatsapp = (n: string) => (n.startsWith('whatsapp:') ? n : `whatsapp:${n}`);

/** The form fields of one message (without From / MessagingServiceSid / StatusCallback). */
export function twilioMessageForm(content: OutboundContent, to: string, templates: Readonly<Record<string, string>>): Record<string, string | string[]> {
  const base = { To: whatsapp(to) };
  switch (content.type) {
    case 'text':
      return { ...base, Body: content.body };
    case 'media':
      return { ...base, MediaUrl: [content.url], ...(content.caption !== undefined && { Body: content.caption }) };
    case 'template': {
      const sid = templates[`${content.name}:${content.language}`] ?? templates[content.name];
      if (sid === undefined) {
        throw new SwitchboardError('TWILIO_REQUEST_INVALID', `no Content SID for template ${content.name} (${content.language}): add it to content_templates`, { details: { template: content.name, language: content.language } });
      }
      const variables = Object.fromEntries(content.body_parameters.map((v, i) => [String(i + 1), v]));
      return { ...base, ContentSid: sid, ...(content.body_parameters.length > 0 && { ContentVariables: JSON.stringify(variables) }) };
    }
  }
}

function formBody(fields: Record<string, string | string[]>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const one of Array.isArray(v) ? v : [v]) p.append(k, one);
  return p.toString();
}

function createTwilioSend(config: TwilioSendConfig, ctx: DestinationCreateContext): DestinationInstance {
  const { mapping, channelId } = ctx;
  const api = config.api_url.replace(/\/+$/, '');
  const messagesUrl = `${api}/2010-04-01/Accounts/${config.account_sid}/Messages.json`;
  const authorization = `Basic ${Buffer.from(`${config.api_key_sid ?? config.account_sid}:${config.auth_token}`).toString('base64')}`;

  async function refused(answer: { status: number; headers: Headers; body: unknown }, out: OutboundMessage): Promise<never> {
    const parsed = errorSchema.safeParse(answer.body);
    const code = parsed.success ? parsed.data.code : undefined;
    const verdict = classifyTwilioSendError(answer.status, code);
    const retryAfterMs = parseRetryAfter(answer.headers.get('retry-after')) ?? (verdict.code === 'TWILIO_RATE_LIMITED' ? 1000 : undefined);
    const text = parsed.success ? providerErrorText(parsed.data.message) : '';
    throw sendError(verdict.code, `Twilio refused the message (${answer.status}${code !== undefined ? `, error ${code}` : ''}${text ? `: ${text}` : ''})`, 'not_sent', {
      ...(retryAfterMs !== undefined && { retryAfterMs }),
      pause: verdict.pause,
      details: { http_status: answer.status, provider_code: code ?? null },
      ...(verdict.code !== 'TWILIO_RATE_LIMITED' && { rejected: out }),
    });
  }

  /** Reconciliation: a message in Twilio's list that is this send. */
  async function findInList(form: Record<string, string | string[]>, from: string | undefined, record: OutboundSendRecord, services: OutboundServices, signal: AbortSignal): Promise<string | null> {
    const q = new URLSearchParams({ To: String(form['To']), PageSize: '50' });
    if (from !== undefined) q.set('From', from);
    const answer = await callProvider('Twilio', `${messagesUrl}?${q.toString()}`, { headers: { authorization } }, config.timeout_ms, signal);
    if (answer.status !== 200) {
      const verdict = classifyTwilioSendError(answer.status, errorSchema.safeParse(answer.body).data?.code);
      throw new SwitchboardError(verdict.code, `Twilio answered ${answer.status} to the Messages list while reconciling an interrupted send`, { details: { http_status: answer.status } });
    }
    const list = listSchema.safeParse(answer.body);
    if (!list.success) throw new SwitchboardError('OUTBOUND_RESPONSE_INVALID', 'Twilio\'s Messages list is not the documented shape', { details: { http_status: answer.status } });
    const after = (record.intentAt?.getTime() ?? 0) - 5000;
    const body = typeof form['Body'] === 'string' ? form['Body'] : undefined;
    for (const m of list.data.messages) {
      const created = m.date_created ? Date.parse(m.date_created) : NaN;
      if (!(created >= after)) continue;
      if (form['ContentSid'] === undefined && body !== undefined && m.body !== body) continue;
      // A message another send already claims is not ours.
      const owner = await services.ledger.findByProviderId(TWILIO_SEND_KIND, m.sid);
      if (owner !== null && owner !== record.deliveryId) continue;
      return m.sid;
    }
    return null;
  }

  async function deliver(message: Parameters<DestinationInstance['deliver']>[0], dctx: DeliveryContext): Promise<DeliveryOutcome> {
    const svc = outboundServicesOf(dctx, 'twilio_send');
    const now = new Date();
    const prepared = await prepareReply(mapping, message, dctx.now, now, svc, { sourceKinds: SOURCE_KINDS, conversationChannel: config.conversation_channel, channelId });
    if (prepared === undefined) return { detail: { dropped: true, mapping_version: mapping.version } };
    const { out, recipient } = prepared;
    if (recipient.address.kind !== 'phone') {
      throw new SwitchboardError('OUTBOUND_RECIPIENT_UNRESOLVED', `twilio_send sends to phone numbers; the recipient is a ${recipient.address.kind}`, { details: { address_kind: recipient.address.kind } });
    }
    const endpoint = recipient.conversation?.businessEndpoint?.replace(/^whatsapp:/, '');
    const from = config.messaging_service_sid !== undefined ? undefined : endpoint !== undefined && E164.test(endpoint) ? whatsapp(endpoint) : config.from !== undefined ? whatsapp(config.from) : undefined;
    await svc.ledger.open({ deliveryId: dctx.deliveryId, channelId, destination: config.name, provider: TWILIO_SEND_KIND, origin: out.origin, correlationId: out.correlation_id });
    const open = windowOpen(recipient.conversation?.lastInboundAt, now);
    if (isFreeForm(out.content) && !open) {
      throw new SwitchboardError('TWILIO_WINDOW_CLOSED', 'a free-form WhatsApp reply outside the 24-hour window (Twilio would fail it with 63016): the mapping must choose a Content template', {
        details: { content_type: out.content.type, last_inbound_at: recipient.conversation?.lastInboundAt.toISOString() ?? null },
        rejectedOutput: out,
      });
    }
    const form = {
      ...twilioMessageForm(out.content, recipient.address.phone, config.content_templates),
      ...(from !== undefined ? { From: from } : { MessagingServiceSid: config.messaging_service_sid! }),
      ...(config.status_callback !== undefined && { StatusCallback: config.status_callback }),
    };
    const result = await sendAtMostOnce({
      services: svc,
      provider: TWILIO_SEND_KIND,
      deliveryId: dctx.deliveryId,
      channelId,
      destination: config.name,
      generation: dctx.generation,
      message: out,
      reconcile: { kind: 'lookup', resendWhenNotFound: 'after_reconcile_ms', find: (record, signal) => findInList(form, from, record, svc, signal) },
      reconcileMs: config.reconcile_ms,
      signal: dctx.signal,
      request: () => form,
      send: async () => {
        const answer = await callProvider('Twilio', messagesUrl, { method: 'POST', headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' }, body: formBody(form) }, config.timeout_ms, dctx.signal);
        if (answer.status < 200 || answer.status >= 300) return refused(answer, out);
        const created = messageSchema.safeParse(answer.body);
        if (!created.success) throw sendError('OUTBOUND_RESPONSE_INVALID', `Twilio answered ${answer.status} without a Message SID: the message may have been created`, 'unknown', { details: { http_status: answer.status } });
        return created.data.sid;
      },
    });
    return {
      detail: {
        provider: 'twilio',
        provider_message_id: result.providerMessageId,
        via: result.via,
        requests: result.requests,
        content_type: out.content.type,
        window_open: open,
        recipient_from: recipient.how,
        mapping_version: mapping.version,
      },
    };
  }

  return {
    ...destinationBase(config, mapping),
    deliver,
    async render(message, options) {
      const r = await renderToPhone(mapping, message, options.now, options.bindings, channelId);
      return r === undefined ? { dropped: true, contentType: 'application/x-www-form-urlencoded', body: undefined } : { dropped: false, contentType: 'application/x-www-form-urlencoded', body: twilioMessageForm(r.out.content, r.to, config.content_templates) };
    },
    async healthcheck(signal: AbortSignal): Promise<string> {
      const answer = await callProvider('Twilio', `${api}/2010-04-01/Accounts/${config.account_sid}.json`, { headers: { authorization } }, config.timeout_ms, signal);
      if (answer.status !== 200) {
        const verdict = classifyTwilioSendError(answer.status, errorSchema.safeParse(answer.body).data?.code);
        throw new SwitchboardError(verdict.code, `Twilio answered ${answer.status} for the account`, { details: { http_status: answer.status } });
      }
      return 'reachable: Twilio answered for the account with the credentials';
    },
    onDeadLettered: recordDeadLetter,
    async close(): Promise<void> {},
  };
}

export const twilioSendDestination: DestinationConnector<typeof twilioSendConfigSchema> = {
  kind: TWILIO_SEND_KIND,
  summary: 'Twilio Messages API (WhatsApp): care-team replies to patients, Content templates, media by link, sent at most once.',
  status: 'beta',
  since: '0.2.0',
  configSchema: twilioSendConfigSchema,
  create: createTwilioSend,
};
