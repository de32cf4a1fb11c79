/**
 * Rocket.Chat destination: a care team's reply posted to the patient's room (a channel, a direct
 * message, or an Omnichannel visitor's room, where the user is the agent) with
 * `POST /api/v1/chat.sendMessage` (`X-Auth-Token`, `X-User-Id`). Text as `msg`, media by link as
 * an attachment; Rocket.Chat has no templates.
 *
 * No double sends: the message `_id` is ours (the send's reference), so Rocket.Chat cannot store
 * the same reply twice (the id is its primary key). An interrupted send is reconciled with
 * `GET /api/v1/chat.getMessage?msgId=<our _id>`: found, it is done; not found, it is resent at
 * once with the same `_id`. Rocket.Chat has no delivery receipts: accepted is `sent`.
 */
import { z } from 'zod';
import { SwitchboardError, classifyRocketChatSendError } from '../../core/errors.js';
import type { OutboundServices } from '../../core/outbound-ledger.js';
import type { OutboundContent, OutboundMessage } from '../../core/outbound.js';
import { callProvider, chatSendShape, outboundServicesOf, prepareReply, providerErrorText, recordDeadLetter, renderOutbound, sendAtMostOnce, sendError, type HttpAnswer } from '../chat-send.js';
import type { DeliveryContext, DeliveryOutcome, DestinationConnector, DestinationCreateContext, DestinationInstance } from '../types.js';
import { destinationBase, destinationBaseShape } from '../types.js';

export const ROCKETCHAT_SEND_KIND = 'rocketchat_send';
const SOURCE_KINDS = ['rocketchat_webhook', 'rocketchat_poll'] as const;

export const rocketChatSendConfigSchema = z
  .strictObject({
    kind: z.literal(ROCKETCHAT_SEND_KIND).describe('Destination kind: replies to patients in Rocket.Chat rooms (channels, direct messages, Omnichannel).'),
    ...destinationBaseShape,
    ...chatSendShape,
    server_url: z.url({ protocol: /^https?$/ }).describe('The Rocket.Chat server, e.g. https://chat.example.org (use ${ROCKETCHAT_URL}).'),
    auth_token: z.string().min(1).describe('A personal access token of the user that posts (X-Auth-Token). Use ${ROCKETCHAT_AUTH_TOKEN}, never a literal.'),
    user_id: z.string().min(1).describe('That user\'s id (X-User-Id), e.g. ${ROCKETCHAT_USER_ID}. For Omnichannel rooms: an agent of the department.'),
  })
  .describe('Sends care-team replies to Rocket.Chat rooms with chat.sendMessage and our own message _id (a resend cannot duplicate).');

export type RocketChatSendConfig = z.infer<typeof rocketChatSendConfigSchema>;

const sentSchema = z.looseObject({ success: z.literal(true), message: z.looseObject({ _id: z.string().min(1) }) });
const foundSchema = z.looseObject({ success: z.literal(true).optional(), message: z.looseObject({ _id: z.string().min(1) }) });
const failureSchema = z.looseObject({ success: z.boolean().optional(), error: z.string().optional(), errorType: z.string().optional(), message: z.string().optional() });
const visitorRoomSchema = z.looseObject({ room: z.looseObject({ _id: z.string().min(1) }) });

/** The `message` of chat.sendMessage (without `_id` and `rid`). */
export function rocketChatMessage(content: OutboundContent): { msg: string; attachments?: Record<string, unknown>[] } {
  switch (content.type) {
    case 'text':
      return { msg: content.body };
    case 'media': {
      const field = content.kind === 'image' ? 'image_url' : content.kind === 'audio' ? 'audio_url' : content.kind === 'video' ? 'video_url' : undefined;
      const attachment: Record<string, unknown> = { title: content.filename ?? content.caption ?? content.kind, title_link: content.url, ...(field !== undefined ? { [field]: content.url } : { title_link_download: true }) };
      return { msg: content.caption ?? '', attachments: [attachment] };
    }
    case 'template':
      throw new SwitchboardError('ROCKETCHAT_REQUEST_INVALID', `Rocket.Chat has no message templates (${content.name}): the reply mapping must give text`, { details: { content_type: 'template' } });
  }
}

function createRocketChatSend(config: RocketChatSendConfig, ctx: DestinationCreateContext): DestinationInstance {
  const { mapping, channelId } = ctx;
  const server = config.server_url.replace(/\/+$/, '');
  const headers = { 'x-auth-token': config.auth_token, 'x-user-id': config.user_id };

  function refused(answer: HttpAnswer, what: string, out?: OutboundMessage): never {
    const parsed = failureSchema.safeParse(answer.body);
    const verdict = classifyRocketChatSendError(answer.status);
    const reset = Number(answer.headers.get('x-ratelimit-reset'));
    const retryAfterMs = verdict.code === 'ROCKETCHAT_RATE_LIMITED' ? (Number.isFinite(reset) && reset > Date.now() ? Math.min(reset - Date.now(), 3_600_000) : 1000) : undefined;
    const reason = parsed.success ? providerErrorText(parsed.data.errorType ?? parsed.data.error ?? parsed.data.message) : '';
    throw sendError(verdict.code, `Rocket.Chat refused ${what} (${answer.status}${reason ? `: ${reason}` : ''})`, 'not_sent', {
      ...(retryAfterMs !== undefined && { retryAfterMs }),
      pause: verdict.pause,
      details: { http_status: answer.status, provider_code: parsed.success ? (parsed.data.errorType ?? null) : null },
      ...(out !== undefined && verdict.code === 'ROCKETCHAT_REQUEST_INVALID' && { rejected: out }),
    });
  }

  async function roomOf(address: NonNullable<OutboundMessage['recipient']['address']>, signal: AbortSignal): Promise<string> {
    if (address.kind === 'room') return address.room_id;
    if (address.kind === 'visitor') {
      const answer = await callProvider('Rocket.Chat', `${server}/api/v1/livechat/room?token=${encodeURIComponent(address.visitor_token)}`, { headers }, config.timeout_ms, signal);
      if (answer.status !== 200) refused(answer, 'the visitor\'s room look-up');
      const room = visitorRoomSchema.safeParse(answer.body);
      if (!room.success) throw new SwitchboardError('OUTBOUND_RESPONSE_INVALID', 'Rocket.Chat answered the visitor\'s room look-up without a room', { details: { http_status: answer.status } });
      return room.data.room._id;
    }
    throw new SwitchboardError('OUTBOUND_RECIPIENT_UNRESOLVED', 'rocketchat_send sends to rooms and Omnichannel visitors; the recipient is a phone number', { details: { address_kind: address.kind } });
  }

  async function deliver(message: Parameters<DestinationInstance['deliver']>[0], dctx: DeliveryContext): Promise<DeliveryOutcome> {
    const svc = outboundServicesOf(dctx, 'rocketchat_send');
    const prepared = await prepareReply(mapping, message, dctx.now, new Date(), svc, { sourceKinds: SOURCE_KINDS, conversationChannel: config.conversation_channel, channelId });
    if (prepared === undefined) return { detail: { dropped: true, mapping_version: mapping.version } };
    const { out, recipient } = prepared;
    await svc.ledger.open({ deliveryId: dctx.deliveryId, channelId, destination: config.name, provider: ROCKETCHAT_SEND_KIND, origin: out.origin, correlationId: out.correlation_id });
    const body = rocketChatMessage(out.content);
    const rid = await roomOf(recipient.address, dctx.signal);
    const result = await sendAtMostOnce({
      services: svc,
      provider: ROCKETCHAT_SEND_KIND,
      deliveryId: dctx.deliveryId,
      channelId,
      destination: config.name,
      generation: dctx.generation,
      message: out,
      reconcile: {
        kind: 'lookup',
        resendWhenNotFound: 'immediately',
        find: async (record, signal) => {
          const answer = await callProvider('Rocket.Chat', `${server}/api/v1/chat.getMessage?msgId=${encodeURIComponent(record.callbackRef)}`, { headers }, config.timeout_ms, signal);
          if (answer.status === 200) {
            const found = foundSchema.safeParse(answer.body);
            return found.success ? found.data.message._id : null;
          }
          if (answer.status === 400 || answer.status === 404) return null; // "message not found"
          return refused(answer, 'the message look-up');
        },
      },
      reconcileMs: config.reconcile_ms,
      signal: dctx.signal,
      request: (record) => ({ message: { _id: record.callbackRef, rid, ...body } }),
      send: async (request) => {
        const answer = await callProvider('Rocket.Chat', `${server}/api/v1/chat.sendMessage`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(request) }, config.timeout_ms, dctx.signal);
        if (answer.status !== 200) return refused(answer, 'the message', out);
        const sent = sentSchema.safeParse(answer.body);
        if (!sent.success) throw sendError('OUTBOUND_RESPONSE_INVALID', `Rocket.Chat answered ${answer.status} without the message: it may have been posted`, 'unknown', { details: { http_status: answer.status } });
        return sent.data.message._id;
      },
    });
    // No receipts in Rocket.Chat: accepted is sent.
    await svc.ledger.recordStatus(dctx.deliveryId, { status: 'sent', provider_message_id: result.providerMessageId, at: new Date().toISOString() });
    return {
      detail: { provider: 'rocketchat', provider_message_id: result.providerMessageId, via: result.via, requests: result.requests, content_type: out.content.type, recipient_from: recipient.how, mapping_version: mapping.version },
    };
  }

  return {
    ...destinationBase(config, mapping),
    deliver,
    async render(message, options) {
      const out = await renderOutbound(mapping, message, options.now, { ...options.bindings, channel: { id: channelId } });
      if (out === undefined) return { dropped: true, contentType: 'application/json', body: undefined };
      return { dropped: false, contentType: 'application/json', body: { message: rocketChatMessage(out.content) } };
    },
    async healthcheck(signal: AbortSignal): Promise<string> {
      const answer = await callProvider('Rocket.Chat', `${server}/api/v1/me`, { headers }, config.timeout_ms, signal);
      if (answer.status !== 200) refused(answer, 'the credentials');
      return 'reachable: Rocket.Chat answered /api/v1/me with the token';
    },
    onDeadLettered: recordDeadLetter,
    async close(): Promise<void> {},
  };
}

export const rocketChatSendDestination: DestinationConnector<typeof rocketChatSendConfigSchema> = {
  kind: ROCKETCHAT_SEND_KIND,
  summary: 'Rocket.Chat: care-team replies to the patient\'s room or Omnichannel visitor, with our own message _id (resends cannot duplicate).',
  status: 'beta',
  since: '0.2.0',
  configSchema: rocketChatSendConfigSchema,
  create: createRocketChatSend,
};
