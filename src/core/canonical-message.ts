/**
 * The canonical message: what every source turns an inbound chat event into, and what every
 * mapping receives as its input. One schema, so that one mapping can serve any source.
 *
 * Timestamps are ISO 8601 strings in UTC with a `Z` suffix (FHIR dateTime with a time SHALL
 * carry a zone). Phone numbers are E.164 with a leading `+` when the source gives a number.
 */
import { z } from 'zod';

export const CANONICAL_SCHEMA_VERSION = 1 as const;

/** An ISO 8601 instant in UTC, ending in `Z`. */
export const isoInstant = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, 'an ISO 8601 UTC instant ending in Z');

/** E.164 with its leading '+', as every message carries numbers. */
export const e164Schema = z.string().regex(/^\+[1-9]\d{4,14}$/, 'an E.164 number with its leading +, e.g. +15551234567');

export const messageKinds = [
  'text',
  'image',
  'audio',
  'video',
  'document',
  'sticker',
  'location',
  'contacts',
  'interactive',
  'button',
  'reaction',
  'order',
  'system',
  'unsupported',
  'edit',
  'revoke',
] as const;
export type MessageKind = (typeof messageKinds)[number];

export const senderSchema = z.object({
  /** E.164 with leading '+', when the source knows the number. Absent for username-only users. */
  phone: e164Schema.optional(),
  /** Source-specific user id (WhatsApp wa_id, Twilio WaId, Rocket.Chat user id). */
  platform_id: z.string().optional(),
  /** WhatsApp business-scoped user id (BSUID, e.g. `US.123456`). */
  user_id: z.string().optional(),
  parent_user_id: z.string().optional(),
  username: z.string().optional(),
  display_name: z.string().optional(),
  /** E-mail address, when the source gives one (Rocket.Chat Livechat visitors, offline messages). */
  email: z.string().optional(),
});
export type Sender = z.infer<typeof senderSchema>;

export const mediaSchema = z.object({
  kind: z.enum(['image', 'audio', 'video', 'document', 'sticker']),
  /** The source's media handle (WhatsApp media id); download happens later. */
  media_id: z.string().optional(),
  mime_type: z.string().optional(),
  /** As given by the source (WhatsApp: SHA-256, base64 or hex as sent). */
  sha256: z.string().optional(),
  url: z.string().optional(),
  filename: z.string().optional(),
  caption: z.string().optional(),
  /** audio: true for a recorded voice note. */
  voice: z.boolean().optional(),
  /** sticker: animated or static. */
  animated: z.boolean().optional(),
  /** Size in bytes as announced by the source, when it says (Rocket.Chat file size). */
  size: z.number().int().nonnegative().optional(),
  /**
   * Set once the media has been downloaded and stored by Switchboard (src/media): what a FHIR
   * Attachment needs. Absent until then (and for sources whose media is not downloaded).
   */
  attachment: z
    .object({
      /** MIME type of the stored bytes. */
      content_type: z.string(),
      /** Size in bytes of the stored bytes. */
      size: z.number().int().nonnegative(),
      /** SHA-1 of the bytes, base64: FHIR R4 Attachment.hash. */
      hash: z.string(),
      /** Where Switchboard serves the stored bytes (authenticated), when not inline. */
      url: z.string().optional(),
      /** The bytes, base64, when at most the channel's inline threshold. */
      data: z.string().optional(),
    })
    .optional(),
});
export type Media = z.infer<typeof mediaSchema>;

export const canonicalMessageSchema = z.object({
  schema_version: z.literal(CANONICAL_SCHEMA_VERSION),
  source: z.object({
    /** Source connector kind, e.g. `whatsapp_cloud`. */
    kind: z.string(),
    /** Business account (WABA id) or workspace the event arrived for. */
    account_id: z.string().optional(),
    /** The business endpoint that received it (WhatsApp phone_number_id). */
    endpoint_id: z.string().optional(),
    endpoint_display: z.string().optional(),
  }),
  /** The source's message id (WhatsApp wamid). */
  id: z.string().min(1),
  /**
   * Unique within a channel: equal keys are the same event delivered twice. Usually `id`;
   * reactions reuse their target's wamid, so their key adds the emoji (or `removed`) and time.
   */
  dedup_key: z.string().min(1),
  kind: z.enum(messageKinds),
  sent_at: isoInstant,
  received_at: isoInstant,
  sender: senderSchema,
  /**
   * Who wrote it, when the source says: the patient (WhatsApp user, Livechat visitor), staff (an
   * agent or clinic user), or the system (bots, automatic messages). Absent when unknown.
   */
  author_role: z.enum(['patient', 'staff', 'system']).optional(),
  /** Thread the message belongs to: a group id, or the sender's id for one-to-one chats. */
  conversation_id: z.string(),
  group_id: z.string().optional(),
  /** Human-readable text: body, caption, button/list title, reaction emoji, system body... */
  text: z.string().optional(),
  media: z.array(mediaSchema).default([]),
  location: z
    .object({
      latitude: z.number(),
      longitude: z.number(),
      name: z.string().optional(),
      address: z.string().optional(),
      url: z.string().optional(),
    })
    .optional(),
  /** Shared contact cards, as the source sent them. */
  contacts: z.array(z.record(z.string(), z.unknown())).optional(),
  interactive: z
    .object({
      type: z.enum(['button_reply', 'list_reply', 'nfm_reply', 'quick_reply']),
      id: z.string().optional(),
      title: z.string().optional(),
      description: z.string().optional(),
      /** Template quick-reply payload. */
      payload: z.string().optional(),
      /** WhatsApp Flows: the flow name and its parsed `response_json`. */
      flow_name: z.string().optional(),
      response: z.record(z.string(), z.unknown()).optional(),
      /** The flow response exactly as sent, kept only when it is not a JSON object (so `response` is absent). */
      response_raw: z.string().optional(),
    })
    .optional(),
  reaction: z
    .object({
      target_id: z.string(),
      /** null when the reaction was removed. */
      emoji: z.string().nullable(),
    })
    .optional(),
  order: z
    .object({
      catalog_id: z.string().optional(),
      text: z.string().optional(),
      items: z.array(
        z.object({
          product_retailer_id: z.string(),
          quantity: z.number(),
          item_price: z.number().optional(),
          currency: z.string().optional(),
        }),
      ),
    })
    .optional(),
  system: z
    .object({
      type: z.string(),
      body: z.string().optional(),
      /** user_changed_number: the new platform id, when given. */
      new_platform_id: z.string().optional(),
      new_user_id: z.string().optional(),
      /** The platform user id the sender had before the change, when the source reports it. */
      previous_user_id: z.string().optional(),
    })
    .optional(),
  /** edit: the message it replaces (with its new content in `text`/`media`). revoke: the deleted one. */
  original_id: z.string().optional(),
  unsupported: z.object({ type: z.string().optional() }).optional(),
  /** The message this one replies to. */
  reply_to: z.object({ id: z.string(), from: z.string().optional() }).optional(),
  forwarded: z.enum(['once', 'many_times']).optional(),
  referral: z.record(z.string(), z.unknown()).optional(),
  referred_product: z
    .object({ catalog_id: z.string().optional(), product_retailer_id: z.string().optional() })
    .optional(),
  /**
   * Outbound messages only (a reply the care team wrote in the EHR): the EHR resource it came
   * from, as received. `resource_type`, `id` and `version_id` are the origin of the outbound
   * message (src/core/outbound.ts); `resource` is the Communication or CommunicationRequest
   * itself, for the reply mapping. Absent on every inbound chat message.
   */
  ehr: z
    .object({
      resource_type: z.enum(['Communication', 'CommunicationRequest']),
      /** The logical id on the EHR. */
      id: z.string().min(1),
      /** meta.versionId of the version received. */
      version_id: z.string().min(1),
      /** The EHR's base URL, when the source knows it. */
      base_url: z.string().optional(),
      /**
       * The Communications this one answers (`inResponseTo`), as the source resolved them: the
       * reference, and the provider message id when Switchboard created that Communication from a
       * patient message (its identifier in one of the channel's own identifier systems).
       */
      in_response_to: z
        .array(z.object({ reference: z.string().optional(), identifier: z.object({ system: z.string(), value: z.string() }).optional() }))
        .default([]),
      resource: z.record(z.string(), z.unknown()),
    })
    .optional(),
  /** Errors the source attached to the message (e.g. WhatsApp 131051 unsupported type). */
  errors: z
    .array(z.object({ code: z.union([z.number(), z.string()]), title: z.string().optional(), detail: z.string().optional() }))
    .default([]),
});
export type CanonicalMessage = z.infer<typeof canonicalMessageSchema>;

/**
 * Codes a source parser attaches to a message's `errors` when the provider's event does not read
 * cleanly (the provider's own codes are kept as they are). One list for every source, so the same
 * fault has the same code whichever provider sent it.
 */
export const messageErrorCodes = {
  /** The message, a field or a type-specific object does not have the provider's documented shape. */
  malformed: 'switchboard.malformed',
  /** The message's type is missing or is not one the parser knows. */
  unknownType: 'switchboard.unknown_type',
  /** The provider's send time is missing or unreadable; `sent_at` fell back to the received time. */
  timestampInvalid: 'switchboard.timestamp_invalid',
} as const;

/** A delivery receipt about a message we sent; recorded, never turned into a Communication. */
export const canonicalStatusSchema = z.object({
  source_kind: z.string(),
  /** The id of the message this status concerns. */
  message_id: z.string(),
  status: z.enum(['sent', 'delivered', 'read', 'played', 'failed', 'deleted', 'unknown']),
  /** The source's own word when it is not one of ours. */
  source_status: z.string(),
  occurred_at: isoInstant,
  recipient_id: z.string().optional(),
  errors: z
    .array(z.object({ code: z.union([z.number(), z.string()]), title: z.string().optional(), detail: z.string().optional() }))
    .default([]),
  /** Our own reference echoed by the provider (WhatsApp `biz_opaque_callback_data`), for messages Switchboard sent. */
  callback_data: z.string().optional(),
  /** Unique within a channel (message id + status). */
  dedup_key: z.string(),
});
export type CanonicalStatus = z.infer<typeof canonicalStatusSchema>;

/** Parts of an inbound event that are neither messages nor statuses, kept with a reason. */
export const ignoredPartSchema = z.object({
  what: z.string(),
  reason: z.string(),
});
export type IgnoredPart = z.infer<typeof ignoredPartSchema>;

export interface ParseResult {
  messages: CanonicalMessage[];
  statuses: CanonicalStatus[];
  /** Parts recognised and deliberately not processed (calls, account updates, ...). */
  ignored: IgnoredPart[];
  /** Event-level errors the source reported (WhatsApp value.errors). */
  source_errors: { code: number | string; title?: string; detail?: string }[];
}

/** Status ranks: updates apply monotonically (sent < delivered < read < played; failed is terminal). */
export const statusRank: Record<CanonicalStatus['status'], number> = {
  unknown: 0,
  sent: 1,
  delivered: 2,
  read: 3,
  played: 4,
  deleted: 5,
  failed: 6,
};
