/**
 * The outbound contract: a care team's reply on its way from the EHR to the patient's chat.
 *
 * - `OutboundMessage` is what a reply mapping produces from an EHR Communication or
 *   CommunicationRequest, and what a chat destination (`whatsapp_cloud_send`, `twilio_send`,
 *   `rocketchat_send`) sends.
 * - `OutboundStatus` is what the chat provider later says about it (sent, delivered, read, failed);
 *   `OutboundStatusListener` is told of each status once it is durably recorded.
 * - `ConversationLookup` is the store's answer to "where did this patient last write to us", used
 *   to choose the number or room a reply goes out on and to check WhatsApp's 24-hour window.
 *
 * Schemas and types only: no I/O here. Compatibility: fields are only ever added, as optional.
 */
import { z } from 'zod';
import { e164Schema, isoInstant } from './canonical-message.js';

export const OUTBOUND_SCHEMA_VERSION = 1 as const;

// ---------------------------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------------------------

/** Free-form text. WhatsApp accepts it only inside the 24-hour customer-service window. */
export const outboundTextSchema = z.strictObject({
  type: z.literal('text'),
  /** WhatsApp's limit for a text body is 4096 characters. */
  body: z.string().min(1).max(4096),
  /** WhatsApp: render a preview of the first URL in the body. Default false. */
  preview_url: z.boolean().optional(),
});

/** A template parameter: text only (the common case for body parameters). */
export const templateParameterSchema = z.string().min(1).max(1024);

/**
 * An approved template (WhatsApp message template; on Twilio a Content template, whose
 * `ContentSid` the `twilio_send` destination looks up by `name`). The only content WhatsApp
 * accepts outside the 24-hour window.
 */
export const outboundTemplateSchema = z.strictObject({
  type: z.literal('template'),
  /** The template's name as approved, e.g. `appointment_reply_available`. */
  name: z.string().regex(/^[a-z0-9_]{1,512}$/, 'a template name: lower-case letters, digits and underscores'),
  /** The template's language code as approved, e.g. `en_US`, `en`, `pt_BR`. */
  language: z.string().regex(/^[a-z]{2,3}(_[A-Za-z0-9]{2,8})?$/, 'a language code such as en_US or en'),
  /** Values for the body's {{1}}, {{2}}, ... in order. */
  body_parameters: z.array(templateParameterSchema).default([]),
  /** Values for a text header's {{1}}, when the template has one. */
  header_parameters: z.array(templateParameterSchema).optional(),
});

export const outboundMediaKinds = ['image', 'audio', 'video', 'document'] as const;

/** Media by link: the provider fetches it from `url` (https, reachable by the provider). */
export const outboundMediaSchema = z.strictObject({
  type: z.literal('media'),
  kind: z.enum(outboundMediaKinds),
  url: z.url({ protocol: /^https?$/ }),
  /** e.g. `application/pdf`, `image/jpeg`. */
  mime_type: z.string().regex(/^[\w.+-]+\/[\w.+-]+$/, 'a MIME type such as application/pdf'),
  /** Not allowed by WhatsApp on audio. */
  caption: z.string().max(1024).optional(),
  /** Documents: the file name shown to the patient. */
  filename: z.string().max(240).optional(),
});

export const outboundContentSchema = z.discriminatedUnion('type', [outboundTextSchema, outboundTemplateSchema, outboundMediaSchema]);
export type OutboundContent = z.infer<typeof outboundContentSchema>;
export type OutboundText = z.infer<typeof outboundTextSchema>;
export type OutboundTemplate = z.infer<typeof outboundTemplateSchema>;
export type OutboundMedia = z.infer<typeof outboundMediaSchema>;

/** Whether content is free-form, i.e. allowed by WhatsApp only inside the customer-service window. */
export function isFreeForm(content: OutboundContent): boolean {
  return content.type !== 'template';
}

// ---------------------------------------------------------------------------------------------
// Recipient and origin
// ---------------------------------------------------------------------------------------------

/** An explicit address, overriding what the conversation lookup would choose. */
export const outboundAddressSchema = z.discriminatedUnion('kind', [
  /** A phone number (WhatsApp Cloud API, Twilio WhatsApp). */
  z.strictObject({ kind: z.literal('phone'), phone: e164Schema }),
  /** A Rocket.Chat room (a channel, a direct-message room, or an Omnichannel visitor's room). */
  z.strictObject({ kind: z.literal('room'), room_id: z.string().min(1) }),
  /** A Rocket.Chat Omnichannel visitor by token: the reply goes to the visitor's open room. */
  z.strictObject({ kind: z.literal('visitor'), visitor_token: z.string().min(1) }),
]);
export type OutboundAddress = z.infer<typeof outboundAddressSchema>;

export const outboundRecipientSchema = z.strictObject({
  /** The FHIR Patient the reply is for, e.g. `Patient/123` (Communication.recipient). */
  patient: z.string().regex(/^Patient\/[A-Za-z0-9\-.]{1,64}$/, 'a Patient reference such as Patient/123'),
  /** When given, the reply goes here; otherwise the conversation the patient last wrote in decides. */
  address: outboundAddressSchema.optional(),
});
export type OutboundRecipient = z.infer<typeof outboundRecipientSchema>;

export const outboundOriginSchema = z.strictObject({
  resource_type: z.enum(['Communication', 'CommunicationRequest']),
  /** The logical id on the EHR. */
  id: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/, 'a FHIR logical id'),
  /** meta.versionId of the version the reply was made from. */
  version_id: z.string().min(1).max(64),
  /** The EHR's base URL, when the channel knows it (several EHRs behind one gateway). */
  base_url: z.string().optional(),
});
export type OutboundOrigin = z.infer<typeof outboundOriginSchema>;

/** `Communication/123`: the origin as a FHIR reference. */
export function originReference(origin: Pick<OutboundOrigin, 'resource_type' | 'id'>): string {
  return `${origin.resource_type}/${origin.id}`;
}

/**
 * The idempotency key of an outbound message: one EHR resource is sent at most once, whatever
 * its later versions. It is the reference without the version on purpose: writing statuses back
 * to the Communication makes new versions of it, which must not become new sends. The version
 * the reply was made from is recorded beside it (`origin.version_id`). Unique per channel.
 */
export function outboundIdempotencyKey(origin: OutboundOrigin): string {
  return origin.base_url ? `${origin.base_url.replace(/\/+$/, '')}/${originReference(origin)}` : originReference(origin);
}

// ---------------------------------------------------------------------------------------------
// The message
// ---------------------------------------------------------------------------------------------

export const outboundMessageSchema = z.strictObject({
  schema_version: z.literal(OUTBOUND_SCHEMA_VERSION).default(OUTBOUND_SCHEMA_VERSION),
  content: outboundContentSchema,
  recipient: outboundRecipientSchema,
  origin: outboundOriginSchema,
  /** Carried through logs, queues and statuses; usually the channel's id for the origin. */
  correlation_id: z.string().min(1).max(200),
  /**
   * The provider's id of the patient message being answered (a WhatsApp wamid), to quote it.
   * From the Communication's `inResponseTo` when Switchboard created that Communication.
   */
  in_reply_to: z.string().min(1).optional(),
});
export type OutboundMessage = z.infer<typeof outboundMessageSchema>;
/** As written by a mapping (defaults not yet applied). */
export type OutboundMessageInput = z.input<typeof outboundMessageSchema>;

// ---------------------------------------------------------------------------------------------
// Statuses
// ---------------------------------------------------------------------------------------------

export const outboundStatusValues = ['sent', 'delivered', 'read', 'failed'] as const;
export type OutboundStatusValue = (typeof outboundStatusValues)[number];

/**
 * Statuses only move forward, in the order of `outboundStatusValues` (sent < delivered < read;
 * failed is terminal): whether `next` moves past `current` (a late `sent` after `read` does not).
 */
export function movesForward(current: OutboundStatusValue | undefined, next: OutboundStatusValue): boolean {
  return current === undefined || outboundStatusValues.indexOf(next) > outboundStatusValues.indexOf(current);
}

export const outboundStatusSchema = z
  .strictObject({
    status: z.enum(outboundStatusValues),
    /**
     * The provider's message id (WhatsApp wamid, Twilio Message SID, Rocket.Chat message _id).
     * Absent only for a failure before the provider accepted the message (e.g. dead-lettered by
     * Switchboard because the 24-hour window was closed).
     */
    provider_message_id: z.string().min(1).optional(),
    /** When it happened, as the provider says (or when Switchboard decided, for its own failures). */
    at: isoInstant,
    /** Failures only. */
    error: z
      .strictObject({
        /** A Switchboard error code (src/core/errors.ts), e.g. `WHATSAPP_WINDOW_CLOSED`. */
        code: z.string().min(1),
        /** The provider's own code, e.g. `131047` or Twilio `63016`, when it gave one. */
        provider_code: z.string().optional(),
        /** Human-readable, PHI-free: suitable for Communication.statusReason.text. */
        reason: z.string(),
      })
      .optional(),
  })
  // A failure always says why; any other status has no error.
  .refine((s) => (s.status === 'failed') === (s.error !== undefined), { message: 'a failed status carries error (code and reason); other statuses carry none', path: ['error'] });
export type OutboundStatus = z.infer<typeof outboundStatusSchema>;

/** One recorded status of one outbound message, as the listener receives it. */
export interface OutboundStatusEvent {
  /** The store's id of the outbound delivery. */
  deliveryId: string;
  channelId: string;
  /** The destination's name within the channel. */
  destination: string;
  origin: OutboundOrigin;
  correlationId: string;
  status: OutboundStatus;
  /** 1, 2, 3, ... per outbound message, in the order the statuses were recorded and are delivered. */
  seq: number;
}

/**
 * Implemented by the EHR side (statuses written back to the originating Communication).
 *
 * Called after the status is durably recorded, in order per message (by `seq`), one at a time
 * per message. Only statuses that move forward are passed on (a `sent` arriving after `delivered`
 * is recorded but not passed). At least once: after a crash or a thrown error the same event may
 * come again, so the implementation must be idempotent (e.g. a conditional update).
 * A thrown error is retried with backoff; it never loses or reorders later statuses.
 */
export interface OutboundStatusListener {
  onStatus(event: OutboundStatusEvent): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Conversation lookup
// ---------------------------------------------------------------------------------------------

/** Where a patient last wrote to us, as the store knows it. */
export interface LastConversation {
  channelId: string;
  /** The inbound source's kind: `whatsapp_cloud`, `twilio_whatsapp`, `rocketchat_webhook`, ... */
  sourceKind: string;
  /** Where a reply goes: the patient's number (WhatsApp, Twilio) or the room (Rocket.Chat). */
  address: OutboundAddress;
  /**
   * The business side the patient wrote to: the WhatsApp phone-number-id, the Twilio number
   * (E.164, the inbound `To`), or the Rocket.Chat workspace; the reply is sent from it.
   */
  businessEndpoint?: string;
  /** When the patient's last message was sent: the 24-hour customer-service window runs from it. */
  lastInboundAt: Date;
  /** The provider's id of that last message (a wamid), to quote it in a reply. */
  lastMessageId?: string;
}

export type ConversationQuery =
  /** By the Patient the patient's messages were delivered for (recorded at FHIR delivery). */
  | { patient: string; channelId?: string }
  /** By the patient's E.164 number; the store looks it up through its blind index only. */
  | { phone: string; channelId?: string };

/**
 * The store's query. Returns the most recent conversation matching the query (optionally
 * within one inbound channel), or null when the patient never wrote. Never stores or compares
 * phone numbers or patient references in plaintext: both go through the keyed blind index.
 */
export interface ConversationLookup {
  lastConversation(query: ConversationQuery): Promise<LastConversation | null>;
}

/** WhatsApp's customer-service window: 24 hours since the patient's last message. */
export const CUSTOMER_SERVICE_WINDOW_MS = 24 * 60 * 60 * 1000;

/** Whether the customer-service window opened by `lastInboundAt` is still open at `now`. */
export function windowOpen(lastInboundAt: Date | undefined, now: Date): boolean {
  return lastInboundAt !== undefined && now.getTime() - lastInboundAt.getTime() < CUSTOMER_SERVICE_WINDOW_MS;
}
