/**
 * The outbound ledger: what a chat destination records about each send so that no message is
 * sent twice. The intent is committed BEFORE the request goes out, the provider's message id
 * after; an attempt that finds an intent without an answer knows the previous request may have
 * reached the provider and reconciles instead of resending. Implemented by the store
 * (src/store/outbound-store.ts); types only here.
 */
import type { ConversationQuery, LastConversation, OutboundOrigin, OutboundStatus, OutboundStatusValue } from './outbound.js';

/** The chat providers a ledger row can belong to (the destination kinds). */
export const outboundProviders = ['whatsapp_cloud_send', 'twilio_send', 'rocketchat_send'] as const;
export type OutboundProvider = (typeof outboundProviders)[number];

/**
 * - `not_sent`: no request is out (first attempt, or the last one was refused or never written).
 * - `intent`: a request was (or was about to be) written and no answer is recorded: it may have
 *   been sent.
 * - `accepted`: the provider took the message and its id is recorded.
 */
export type OutboundSendState = 'not_sent' | 'intent' | 'accepted';

export interface OutboundSendRecord {
  deliveryId: string;
  provider: OutboundProvider;
  state: OutboundSendState;
  /**
   * Our own reference of this send (random, not PHI): WhatsApp `biz_opaque_callback_data`,
   * Rocket.Chat `message._id`. Stable across attempts and replays of the delivery.
   */
  callbackRef: string;
  /** How many requests were written so far (0 before the first). */
  requests: number;
  /** When the latest intent was committed. */
  intentAt: Date | null;
  providerMessageId: string | null;
  /** The delivery generation for which an operator allowed a resend after OUTBOUND_SEND_UNCERTAIN. */
  resendGeneration: number | null;
  /** The last status passed on (moving forward), if any. */
  lastStatus: OutboundStatusValue | null;
}

export interface OutboundSendOpen {
  deliveryId: string;
  channelId: string;
  destination: string;
  provider: OutboundProvider;
  origin: OutboundOrigin;
  correlationId: string;
}

export interface OutboundLedger {
  /** The record of a delivery's send, or null before `open`. */
  get(deliveryId: string): Promise<OutboundSendRecord | null>;
  /** The record of this delivery's send, created (state `not_sent`) on the first call. */
  open(input: OutboundSendOpen): Promise<OutboundSendRecord>;
  /** The delivery whose send the provider's message id belongs to, if any. */
  findByProviderId(provider: OutboundProvider, providerMessageId: string): Promise<string | null>;
  /** Commits the intent (with the request, encrypted) before the request is written; it uses up an operator's resend permission. */
  recordIntent(deliveryId: string, request: unknown): Promise<void>;
  /** The provider answered with its message id. */
  recordAccepted(deliveryId: string, providerMessageId: string): Promise<void>;
  /** The request was refused or never written: a later attempt may send. */
  recordNotSent(deliveryId: string): Promise<void>;
  /** A status Switchboard itself knows (Rocket.Chat's accepted = sent; its own failures). */
  recordStatus(deliveryId: string, status: OutboundStatus): Promise<void>;
}

/** A lookup that can also be narrowed to the inbound sources a destination can answer on. */
export type OutboundConversationQuery = ConversationQuery & { sourceKinds?: readonly string[] };

export interface OutboundConversations {
  lastConversation(query: OutboundConversationQuery): Promise<LastConversation | null>;
}

/** What a chat destination needs from the store at delivery time (given by the pipeline). */
export interface OutboundServices {
  ledger: OutboundLedger;
  conversations: OutboundConversations;
}
