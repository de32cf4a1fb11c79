/**
 * The EHR side of two-way messaging, without I/O: which FHIR resources become outbound messages
 * (the trigger, with its no-loop rule) and how one becomes a CanonicalMessage.
 *
 * Trigger:
 *  - a `Communication` whose recipient is exactly one Patient, with status `preparation` or
 *    `in-progress` and at least one payload; optionally (require_in_response_to) only when it
 *    answers (`inResponseTo`) a Communication Switchboard created from a patient message;
 *  - a `CommunicationRequest` with status `active`, recipient exactly one Patient and a payload.
 * Never: a Communication Switchboard itself created for an inbound message (it carries an
 * identifier in one of the channel's own identifier systems, or Switchboard's `patient-message`
 * category), whatever its status. Such Communications are `completed` anyway; the rule holds
 * even when an EHR workflow changes their status.
 *
 * The raw event the FHIR sources store is the envelope `{ "fhir_outbound": { base_url, resource,
 * in_response_to } }` (the resource as received, plus what the source resolved about the
 * Communications it answers); parse also accepts a bare resource.
 */
import { z } from 'zod';
import type { CanonicalMessage, IgnoredPart, Media, ParseResult } from '../core/canonical-message.js';
import { CANONICAL_SCHEMA_VERSION } from '../core/canonical-message.js';
import { outboundIdempotencyKey } from '../core/outbound.js';

/** Switchboard's own category for the Communications it creates from patient messages. */
export const SWITCHBOARD_CATEGORY_SYSTEM = 'https://switchboard.example/CodeSystem/communication-category';
export const PATIENT_MESSAGE_CATEGORY_CODE = 'patient-message';
/** The identifier systems the shipped inbound channels use for the Communications they create. */
export const DEFAULT_OWN_IDENTIFIER_SYSTEMS = [
  'https://switchboard.example/sid/whatsapp-message-id',
  'https://switchboard.example/sid/twilio-message-sid',
  'https://switchboard.example/sid/rocketchat-message-id',
] as const;

export const OUTBOUND_RESOURCE_TYPES = ['Communication', 'CommunicationRequest'] as const;
export type OutboundResourceType = (typeof OUTBOUND_RESOURCE_TYPES)[number];

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

// ---------------------------------------------------------------------------------------------
// Edge schemas: what we read of a resource (loose: everything else is kept as received)
// ---------------------------------------------------------------------------------------------

const referenceSchema = z.looseObject({
  reference: z.string().optional(),
  type: z.string().optional(),
  identifier: z.looseObject({ system: z.string().optional(), value: z.string().optional() }).optional(),
  display: z.string().optional(),
});
const attachmentSchema = z.looseObject({
  contentType: z.string().optional(),
  url: z.string().optional(),
  title: z.string().optional(),
  size: z.number().optional(),
});
const payloadSchema = z.looseObject({
  contentString: z.string().optional(),
  contentAttachment: attachmentSchema.optional(),
  contentReference: referenceSchema.optional(),
});
const codingSchema = z.looseObject({ system: z.string().optional(), code: z.string().optional() });

export const outboundResourceSchema = z.looseObject({
  resourceType: z.enum(OUTBOUND_RESOURCE_TYPES),
  id: z.string().regex(FHIR_ID),
  meta: z.looseObject({ versionId: z.string().min(1).optional(), lastUpdated: z.string().optional() }).optional(),
  identifier: z.array(z.looseObject({ system: z.string().optional(), value: z.string().optional() })).optional(),
  status: z.string().optional(),
  category: z.array(z.looseObject({ coding: z.array(codingSchema).optional() })).optional(),
  recipient: z.array(referenceSchema).optional(),
  sender: referenceSchema.optional(),
  /** CommunicationRequest's author of the request. */
  requester: referenceSchema.optional(),
  inResponseTo: z.array(referenceSchema).optional(),
  sent: z.string().optional(),
  /** CommunicationRequest: when it was asked for. */
  authoredOn: z.string().optional(),
  payload: z.array(payloadSchema).optional(),
});
export type OutboundResource = z.infer<typeof outboundResourceSchema>;

/** What a source resolved about one `inResponseTo` entry. */
export const resolvedInResponseToSchema = z.object({
  reference: z.string().optional(),
  /** The answered Communication's identifier in one of the channel's own systems, when it has one. */
  identifier: z.object({ system: z.string(), value: z.string() }).optional(),
});
export type ResolvedInResponseTo = z.infer<typeof resolvedInResponseToSchema>;

export const outboundEnvelopeSchema = z.object({
  fhir_outbound: z.object({
    base_url: z.string().optional(),
    resource: z.unknown(),
    in_response_to: z.array(resolvedInResponseToSchema).default([]),
  }),
});
export type OutboundEnvelope = z.input<typeof outboundEnvelopeSchema>;

// ---------------------------------------------------------------------------------------------
// The trigger
// ---------------------------------------------------------------------------------------------

export interface TriggerRules {
  /** Identifier systems of the Communications Switchboard creates (the inbound channels'). */
  ownIdentifierSystems: readonly string[];
  /** Only Communications that answer one Switchboard created (resolved in_response_to). */
  requireInResponseTo: boolean;
}

export type TriggerVerdict = { trigger: true; patient: string } | { trigger: false; reason: string };

/** `Patient/123` from a literal reference (relative or absolute); undefined for anything else. */
export function patientReference(ref: { reference?: string | undefined; type?: string | undefined } | undefined): string | undefined {
  const m = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref?.reference ?? '');
  return m ? `Patient/${m[1]}` : undefined;
}

/** Whether Switchboard created this resource from a patient message: never an outbound trigger. */
export function createdBySwitchboard(resource: OutboundResource, ownIdentifierSystems: readonly string[]): boolean {
  const own = new Set(ownIdentifierSystems);
  if ((resource.identifier ?? []).some((i) => i.system !== undefined && own.has(i.system))) return true;
  return (resource.category ?? []).some((c) =>
    (c.coding ?? []).some((k) => k.system === SWITCHBOARD_CATEGORY_SYSTEM && k.code === PATIENT_MESSAGE_CATEGORY_CODE),
  );
}

function hasContent(resource: OutboundResource): boolean {
  return (resource.payload ?? []).some((p) => (p.contentString !== undefined && p.contentString.trim() !== '') || p.contentAttachment?.url !== undefined);
}

/** Whether a resource becomes an outbound message, and if not, why (PHI-free). */
export function outboundTrigger(resource: OutboundResource, rules: TriggerRules, inResponseTo: readonly ResolvedInResponseTo[] = []): TriggerVerdict {
  if (createdBySwitchboard(resource, rules.ownIdentifierSystems)) {
    return { trigger: false, reason: 'created by Switchboard from a patient message (own identifier system or patient-message category): never sent back' };
  }
  const wanted = resource.resourceType === 'Communication' ? ['preparation', 'in-progress'] : ['active'];
  if (!wanted.includes(resource.status ?? '')) {
    return { trigger: false, reason: `status ${JSON.stringify(resource.status ?? null)} is not ${wanted.join(' or ')}` };
  }
  const patients = [...new Set((resource.recipient ?? []).map(patientReference).filter((p): p is string => p !== undefined))];
  if (patients.length === 0) return { trigger: false, reason: 'no recipient is a Patient' };
  if (patients.length > 1) return { trigger: false, reason: 'several Patient recipients: a reply goes to one patient' };
  if (!hasContent(resource)) return { trigger: false, reason: 'no payload with text or an attachment URL' };
  if (rules.requireInResponseTo && resource.resourceType === 'Communication' && !inResponseTo.some((r) => r.identifier !== undefined)) {
    return { trigger: false, reason: 'does not answer a Communication Switchboard created (require_in_response_to)' };
  }
  return { trigger: true, patient: patients[0]! };
}

// ---------------------------------------------------------------------------------------------
// Parse
// ---------------------------------------------------------------------------------------------

export interface OutboundParseOptions extends TriggerRules {
  /** The source kind, e.g. `fhir_poll`. */
  sourceKind: string;
  /** The configured base URL, used when the event does not carry one. */
  baseUrl?: string;
  receivedAt: Date;
}

/** A FHIR instant or dateTime with time, as a UTC instant ending in Z; undefined when not one. */
export function utcInstant(value: string | undefined): string | undefined {
  if (value === undefined || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

function mediaKind(contentType: string | undefined): Media['kind'] {
  const top = (contentType ?? '').split('/')[0];
  return top === 'image' || top === 'audio' || top === 'video' ? top : 'document';
}

/** The canonical message for a triggering resource. */
export function outboundCanonicalMessage(
  resource: OutboundResource,
  patient: string,
  opts: { sourceKind: string; baseUrl: string | undefined; receivedAt: Date; inResponseTo: readonly ResolvedInResponseTo[] },
): CanonicalMessage {
  const versionId = resource.meta?.versionId ?? resource.meta?.lastUpdated ?? '1';
  const baseUrl = opts.baseUrl?.replace(/\/+$/, '');
  const origin = { resource_type: resource.resourceType, id: resource.id, version_id: versionId, ...(baseUrl ? { base_url: baseUrl } : {}) };
  const texts = (resource.payload ?? []).map((p) => p.contentString?.trim()).filter((t): t is string => t !== undefined && t !== '');
  const media: Media[] = (resource.payload ?? [])
    .map((p) => p.contentAttachment)
    .filter((a): a is NonNullable<typeof a> => a?.url !== undefined)
    .map((a) => ({
      kind: mediaKind(a.contentType),
      url: a.url!,
      ...(a.contentType ? { mime_type: a.contentType } : {}),
      ...(a.title ? { filename: a.title } : {}),
      ...(a.size !== undefined && Number.isInteger(a.size) && a.size >= 0 ? { size: a.size } : {}),
    }));
  const receivedAt = opts.receivedAt.toISOString();
  const author = resource.resourceType === 'Communication' ? resource.sender : resource.requester;
  const answered = opts.inResponseTo.find((r) => r.identifier !== undefined)?.identifier;
  return {
    schema_version: CANONICAL_SCHEMA_VERSION,
    source: { kind: opts.sourceKind, ...(baseUrl ? { endpoint_id: baseUrl } : {}) },
    id: `${resource.resourceType}/${resource.id}`,
    // One EHR resource is sent at most once, whatever its later versions (status write-backs).
    dedup_key: outboundIdempotencyKey(origin),
    kind: texts.length === 0 && media.length > 0 ? media[0]!.kind : 'text',
    sent_at: utcInstant(resource.sent) ?? utcInstant(resource.authoredOn) ?? utcInstant(resource.meta?.lastUpdated) ?? receivedAt,
    received_at: receivedAt,
    sender: {
      ...(author?.reference ? { platform_id: author.reference } : {}),
      ...(author?.display ? { display_name: author.display } : {}),
    },
    author_role: 'staff',
    conversation_id: patient,
    ...(texts.length > 0 ? { text: texts.join('\n\n') } : {}),
    media,
    ...(answered ? { reply_to: { id: answered.value } } : {}),
    errors: [],
    ehr: {
      resource_type: resource.resourceType,
      id: resource.id,
      version_id: versionId,
      ...(baseUrl ? { base_url: baseUrl } : {}),
      in_response_to: opts.inResponseTo.map((r) => ({ ...r })),
      resource: { ...resource },
    },
  };
}

/** Parses a stored outbound event (the envelope, or a bare resource). Pure; never throws. */
export function parseOutboundEvent(raw: Buffer, opts: OutboundParseOptions): ParseResult {
  const result: ParseResult = { messages: [], statuses: [], ignored: [], source_errors: [] };
  const ignore = (what: string, reason: string): ParseResult => {
    result.ignored.push({ what, reason } satisfies IgnoredPart);
    return result;
  };
  let body: unknown;
  try {
    body = raw.length === 0 ? undefined : JSON.parse(raw.toString('utf8'));
  } catch {
    return ignore('event', 'the stored body is not valid JSON');
  }
  const envelope = outboundEnvelopeSchema.safeParse(body);
  const candidate = envelope.success ? envelope.data.fhir_outbound.resource : body;
  const inResponseTo = envelope.success ? envelope.data.fhir_outbound.in_response_to : [];
  const baseUrl = (envelope.success ? envelope.data.fhir_outbound.base_url : undefined) ?? opts.baseUrl;
  const resource = outboundResourceSchema.safeParse(candidate);
  if (!resource.success) {
    const type = typeof candidate === 'object' && candidate !== null ? (candidate as { resourceType?: unknown }).resourceType : undefined;
    return ignore(typeof type === 'string' ? type : 'event', 'not a Communication or CommunicationRequest with an id');
  }
  const what = `${resource.data.resourceType}/${resource.data.id}`;
  try {
    const verdict = outboundTrigger(resource.data, opts, inResponseTo);
    if (!verdict.trigger) return ignore(what, verdict.reason);
    result.messages.push(outboundCanonicalMessage(resource.data, verdict.patient, { sourceKind: opts.sourceKind, baseUrl, receivedAt: opts.receivedAt, inResponseTo }));
  } catch {
    return ignore(what, 'the resource could not be parsed (internal error)');
  }
  return result;
}
