/**
 * WhatsApp Cloud API destination: a care team's reply (an OutboundMessage from the reply
 * mapping) sent with `POST /<version>/<phone-number-id>/messages`. Text, template with
 * parameters, media by link; quoting the patient's message when the reply names it.
 *
 * WhatsApp's rules, enforced before Meta is called: free-form content only inside the 24-hour
 * customer-service window (else WHATSAPP_WINDOW_CLOSED, dead-lettered; templates always go),
 * throughput per business number and the pair rate per recipient (waited for in-process; Meta's
 * 130429 / 131056 are retried with backoff). The Graph API has no idempotency key: the ledger
 * records the intent before the request, `biz_opaque_callback_data` carries our reference so a
 * status webhook can reconcile an interrupted send (src/connectors/chat-send.ts).
 */
import { z } from 'zod';
import { SwitchboardError, classifyWhatsAppSendError, parseRetryAfter } from '../../core/errors.js';
import type { OutboundServices } from '../../core/outbound-ledger.js';
import { isFreeForm, windowOpen, type OutboundContent, type OutboundMessage } from '../../core/outbound.js';
import {
  PairLimiter,
  ThroughputLimiter,
  callProvider,
  chatSendShape,
  prepareReply,
  providerErrorText,
  recordDeadLetter,
  renderToPhone,
  outboundServicesOf,
  sendAtMostOnce,
  sendError,
} from '../chat-send.js';
import type { DeliveryContext, DeliveryOutcome, DestinationConnector, DestinationCreateContext, DestinationInstance } from '../types.js';
import { destinationBase, destinationBaseShape } from '../types.js';

export const WHATSAPP_CLOUD_SEND_KIND = 'whatsapp_cloud_send';
/** Inbound sources whose conversations a WhatsApp Cloud reply can answer. */
const SOURCE_KINDS = ['whatsapp_cloud'] as const;

export const whatsappCloudSendConfigSchema = z
  .strictObject({
    kind: z.literal(WHATSAPP_CLOUD_SEND_KIND).describe('Destination kind: replies to patients on WhatsApp through the Cloud API (Meta Graph API).'),
    ...destinationBaseShape,
    ...chatSendShape,
    phone_number_id: z
      .string()
      .regex(/^\d{1,32}$/, 'the numeric phone-number-id of the business number (WhatsApp Manager, API Setup)')
      .describe('The business number replies are sent from when the patient\'s conversation names none (use ${WHATSAPP_PHONE_NUMBER_ID}).'),
    reply_from: z
      .enum(['conversation', 'configured'])
      .default('conversation')
      .describe('conversation: reply from the number the patient wrote to (its phone-number-id, same token); configured: always from phone_number_id.'),
    access_token: z.string().min(1).describe('A system user access token with whatsapp_business_messaging. Use ${WHATSAPP_ACCESS_TOKEN}, never a literal.'),
    graph_url: z
      .url({ protocol: /^https?$/ })
      .default('https://graph.facebook.com')
      .describe('The Graph API base URL (the sandbox Graph API in a zero-config run).'),
    api_version: z.string().regex(/^v\d+\.\d+$/, 'a Graph API version such as v23.0').default('v23.0').describe('Graph API version in the path.'),
    throughput_per_second: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(80)
      .describe('Messages per second per business number (Meta: 80 by default, 20 for coexistence numbers, up to 1000 when upgraded). Per worker process.'),
    pair_interval_ms: z
      .number()
      .int()
      .min(0)
      .max(600_000)
      .default(6000)
      .describe('Least time between two messages to the same patient from the same number (Meta\'s pair rate: about one per 6 s). Per worker process.'),
  })
  .describe('Sends care-team replies on WhatsApp (Cloud API): text inside the 24-hour window, approved templates any time, media by link.');

export type WhatsAppCloudSendConfig = z.infer<typeof whatsappCloudSendConfigSchema>;

const successSchema = z.looseObject({
  messaging_product: z.literal('whatsapp').optional(),
  contacts: z.array(z.looseObject({ input: z.string().optional(), wa_id: z.string().optional() })).optional(),
  messages: z.array(z.looseObject({ id: z.string().min(1), message_status: z.string().optional() })).min(1),
});

const errorSchema = z.looseObject({
  error: z.looseObject({
    message: z.string().optional(),
    type: z.string().optional(),
    code: z.number().int().optional(),
    error_subcode: z.number().int().optional(),
    error_data: z.looseObject({ details: z.string().optional() }).optional(),
    fbtrace_id: z.string().optional(),
  }),
});

/** The Graph API body for one message (without the callback reference). */
export function graphMessageBody(content: OutboundContent, to: string, inReplyTo: string | undefined): Record<string, unknown> {
  const base: Record<string, unknown> = { messaging_product: 'whatsapp', recipient_type: 'individual', to: to.replace(/^\+/, '') };
  if (inReplyTo !== undefined) base['context'] = { message_id: inReplyTo };
  switch (content.type) {
    case 'text':
      return { ...base, type: 'text', text: { body: content.body, preview_url: content.preview_url ?? false } };
    case 'template': {
      const components: Record<string, unknown>[] = [];
      if (content.header_parameters && content.header_parameters.length > 0) {
        components.push({ type: 'header', parameters: content.header_parameters.map((text) => ({ type: 'text', text })) });
      }
      if (content.body_parameters.length > 0) components.push({ type: 'body', parameters: content.body_parameters.map((text) => ({ type: 'text', text })) });
      return { ...base, type: 'template', template: { name: content.name, language: { code: content.language }, ...(components.length > 0 && { components }) } };
    }
    case 'media': {
      const media: Record<string, unknown> = { link: content.url };
      if (content.caption !== undefined && content.kind !== 'audio') media['caption'] = content.caption;
      if (content.filename !== undefined && content.kind === 'document') media['filename'] = content.filename;
      return { ...base, type: content.kind, [content.kind]: media };
    }
  }
}

function createWhatsAppCloudSend(config: WhatsAppCloudSendConfig, ctx: DestinationCreateContext): DestinationInstance {
  const { mapping, channelId } = ctx;
  const throughput = new ThroughputLimiter(config.throughput_per_second);
  const pairs = new PairLimiter(config.pair_interval_ms);
  const graph = config.graph_url.replace(/\/+$/, '');

  async function deliver(message: Parameters<DestinationInstance['deliver']>[0], dctx: DeliveryContext): Promise<DeliveryOutcome> {
    const svc = outboundServicesOf(dctx, 'whatsapp_cloud_send');
    const now = new Date();
    const prepared = await prepareReply(mapping, message, dctx.now, now, svc, { sourceKinds: SOURCE_KINDS, conversationChannel: config.conversation_channel, channelId });
    if (prepared === undefined) return { detail: { dropped: true, mapping_version: mapping.version } };
    const { out, recipient } = prepared;
    if (recipient.address.kind !== 'phone') {
      throw new SwitchboardError('OUTBOUND_RECIPIENT_UNRESOLVED', `whatsapp_cloud_send sends to phone numbers; the recipient is a ${recipient.address.kind}`, { details: { address_kind: recipient.address.kind } });
    }
    const to = recipient.address.phone;
    const from = config.reply_from === 'conversation' && recipient.conversation?.businessEndpoint && /^\d{1,32}$/.test(recipient.conversation.businessEndpoint) ? recipient.conversation.businessEndpoint : config.phone_number_id;
    // The ledger row exists from here on, so a refusal below reaches the EHR as a failed status.
    await svc.ledger.open({ deliveryId: dctx.deliveryId, channelId, destination: config.name, provider: WHATSAPP_CLOUD_SEND_KIND, origin: out.origin, correlationId: out.correlation_id });
    const open = windowOpen(recipient.conversation?.lastInboundAt, now);
    if (isFreeForm(out.content) && !open) {
      throw new SwitchboardError(
        'WHATSAPP_WINDOW_CLOSED',
        recipient.conversation === null
          ? 'a free-form reply to a patient who never wrote on WhatsApp: only an approved template may open the conversation'
          : 'a free-form reply more than 24 hours after the patient\'s last message: the mapping must choose an approved template',
        { details: { content_type: out.content.type, last_inbound_at: recipient.conversation?.lastInboundAt.toISOString() ?? null }, rejectedOutput: out },
      );
    }
    const pairKey = `${from}:${to}`;
    const result = await sendAtMostOnce({
      services: svc,
      provider: WHATSAPP_CLOUD_SEND_KIND,
      deliveryId: dctx.deliveryId,
      channelId,
      destination: config.name,
      generation: dctx.generation,
      message: out,
      reconcile: { kind: 'await_status' },
      reconcileMs: config.reconcile_ms,
      signal: dctx.signal,
      beforeIntent: async () => {
        await throughput.acquire(from, dctx.signal);
        await pairs.acquire(pairKey, dctx.signal);
      },
      request: (record) => ({ ...graphMessageBody(out.content, to, out.in_reply_to), biz_opaque_callback_data: record.callbackRef }),
      send: (request) => post(from, request, out, pairKey, dctx.signal),
    });
    return {
      detail: {
        provider: 'whatsapp_cloud',
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

  async function post(from: string, request: unknown, out: OutboundMessage, pairKey: string, signal: AbortSignal): Promise<string> {
    const answer = await callProvider(
      'the Graph API',
      `${graph}/${config.api_version}/${from}/messages`,
      { method: 'POST', headers: { authorization: `Bearer ${config.access_token}`, 'content-type': 'application/json' }, body: JSON.stringify(request) },
      config.timeout_ms,
      signal,
    );
    if (answer.status >= 200 && answer.status < 300) {
      const ok = successSchema.safeParse(answer.body);
      if (!ok.success) {
        throw sendError('OUTBOUND_RESPONSE_INVALID', `the Graph API answered ${answer.status} without messages[].id: the message may have been sent`, 'unknown', { details: { http_status: answer.status } });
      }
      return ok.data.messages[0]!.id;
    }
    const parsed = errorSchema.safeParse(answer.body);
    const code = parsed.success ? parsed.data.error.code : undefined;
    const verdict = classifyWhatsAppSendError(answer.status, code);
    let retryAfterMs = parseRetryAfter(answer.headers.get('retry-after'));
    if (verdict.code === 'WHATSAPP_PAIR_RATE_LIMITED') {
      pairs.penalise(pairKey, config.pair_interval_ms);
      retryAfterMs ??= config.pair_interval_ms;
    }
    if (verdict.code === 'WHATSAPP_THROUGHPUT_LIMITED') retryAfterMs ??= 1000;
    const title = parsed.success ? providerErrorText(parsed.data.error.message) : '';
    throw sendError(verdict.code, `the Graph API refused the message (${answer.status}${code !== undefined ? `, code ${code}` : ''}${title ? `: ${title}` : ''})`, 'not_sent', {
      ...(retryAfterMs !== undefined && { retryAfterMs }),
      pause: verdict.pause,
      details: { http_status: answer.status, provider_code: code ?? null, fbtrace_id: parsed.success ? (parsed.data.error.fbtrace_id ?? null) : null },
      ...(verdict.code !== 'WHATSAPP_THROUGHPUT_LIMITED' && verdict.code !== 'WHATSAPP_PAIR_RATE_LIMITED' && { rejected: out }),
    });
  }

  return {
    ...destinationBase(config, mapping),
    deliver,
    async render(message, options) {
      const r = await renderToPhone(mapping, message, options.now, options.bindings, channelId);
      return r === undefined ? { dropped: true, contentType: 'application/json', body: undefined } : { dropped: false, contentType: 'application/json', body: graphMessageBody(r.out.content, r.to, r.out.in_reply_to) };
    },
    async healthcheck(signal: AbortSignal): Promise<string> {
      const answer = await callProvider('the Graph API', `${graph}/${config.api_version}/${config.phone_number_id}?fields=id,display_phone_number`, { headers: { authorization: `Bearer ${config.access_token}` } }, config.timeout_ms, signal);
      if (answer.status !== 200) {
        const parsed = errorSchema.safeParse(answer.body);
        const verdict = classifyWhatsAppSendError(answer.status, parsed.success ? parsed.data.error.code : undefined);
        throw new SwitchboardError(verdict.code, `the Graph API answered ${answer.status} for the business number`, { details: { http_status: answer.status } });
      }
      return 'reachable: the Graph API answered for the business number with the access token';
    },
    onDeadLettered: recordDeadLetter,
    async close(): Promise<void> {},
  };
}

export const whatsappCloudSendDestination: DestinationConnector<typeof whatsappCloudSendConfigSchema> = {
  kind: WHATSAPP_CLOUD_SEND_KIND,
  summary: 'WhatsApp Cloud API: care-team replies to patients (24-hour window, templates, media by link), sent at most once.',
  status: 'beta',
  since: '0.2.0',
  configSchema: whatsappCloudSendConfigSchema,
  create: createWhatsAppCloudSend,
};
