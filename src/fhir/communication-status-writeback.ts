/**
 * Statuses back to the EHR: the OutboundStatusListener that writes what the chat provider says
 * about a reply (sent, delivered, read, failed) onto the Communication (or CommunicationRequest)
 * it came from.
 *
 * Mapping (R4 Communication.status is event-status: preparation | in-progress | not-done |
 * on-hold | stopped | completed | entered-in-error | unknown):
 *
 * | outbound status | Communication                                        | CommunicationRequest       |
 * |-----------------|------------------------------------------------------|----------------------------|
 * | sent            | status `completed`, `sent` = when (unless already set) | status `completed`         |
 * | delivered       | status `completed`, `received` = when                | status `completed`         |
 * | read            | status `completed`, the read time in the extension   | status `completed`         |
 * | failed          | status `not-done`, `statusReason` = the Switchboard error code (coding) and its PHI-free reason (text) | status unchanged, `statusReason` likewise |
 *
 * Every write also sets the extension OUTBOUND_DELIVERY_EXTENSION: `status` (valueCode: the
 * latest outbound status), `at` (valueDateTime), `provider-message-id` (valueString: the wamid or
 * SID, for tracing), and for read, `read-at`. The extension is what makes the write idempotent and
 * ordered: a status that does not move past the recorded one (src/core/outbound.ts movesForward)
 * changes nothing, so a repeated or late status is a no-op.
 *
 * Writes are conditional: the resource is read, the change applied, and written with
 * `If-Match: W/"<versionId read>"`; on a version conflict (412, or 409) it is read again and the
 * change re-applied, a few times, then the conflict is thrown (retryable: the dispatcher retries).
 */
import { z } from 'zod';
import { SwitchboardError, classify } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { movesForward, outboundStatusValues, type OutboundStatusEvent, type OutboundStatusListener, type OutboundStatusValue } from '../core/outbound.js';
import { versionFromEtag, type FhirRestClient } from './fhir-rest-client.js';

export const OUTBOUND_DELIVERY_EXTENSION = 'https://switchboard.example/fhir/StructureDefinition/outbound-delivery';
export const OUTBOUND_ERROR_CODE_SYSTEM = 'https://switchboard.example/CodeSystem/outbound-error';

/** How many times a version conflict is re-read and re-applied before giving up (retried later). */
const MAX_CONFLICT_ROUNDS = 5;

const extensionSchema = z.looseObject({ url: z.string(), valueCode: z.string().optional() });
const writableSchema = z.looseObject({
  resourceType: z.enum(['Communication', 'CommunicationRequest']),
  id: z.string().min(1),
  meta: z.looseObject({ versionId: z.string().optional() }).optional(),
  status: z.string().optional(),
  sent: z.string().optional(),
  extension: z.array(extensionSchema.extend({ extension: z.array(extensionSchema).optional() })).optional(),
});
type Writable = z.infer<typeof writableSchema> & Record<string, unknown>;

/** The outbound status recorded on a resource by an earlier write-back, if any. */
export function recordedStatus(resource: { extension?: unknown }): OutboundStatusValue | undefined {
  const parsed = writableSchema.shape.extension.safeParse(resource.extension);
  const ext = parsed.success ? (parsed.data ?? []).find((e) => e.url === OUTBOUND_DELIVERY_EXTENSION) : undefined;
  const code = ext?.extension?.find((e) => e.url === 'status')?.valueCode;
  return (outboundStatusValues as readonly string[]).includes(code ?? '') ? (code as OutboundStatusValue) : undefined;
}

/** The resource with `event` applied (a new object; the input is not changed). */
export function applyStatus(resource: Writable, event: OutboundStatusEvent): Writable {
  const { status } = event;
  const next: Writable = { ...resource };
  delete next.meta;
  const isCommunication = resource.resourceType === 'Communication';
  const prior = (resource.extension ?? []).find((e) => e.url === OUTBOUND_DELIVERY_EXTENSION);
  const readAt = status.status === 'read' ? status.at : prior?.extension?.find((e) => e.url === 'read-at')?.['valueDateTime'];
  const providerId = status.provider_message_id ?? prior?.extension?.find((e) => e.url === 'provider-message-id')?.['valueString'];
  const sub: { url: string; [k: string]: unknown }[] = [
    { url: 'status', valueCode: status.status },
    { url: 'at', valueDateTime: status.at },
    ...(typeof providerId === 'string' ? [{ url: 'provider-message-id', valueString: providerId }] : []),
    ...(typeof readAt === 'string' ? [{ url: 'read-at', valueDateTime: readAt }] : []),
  ];
  next.extension = [...(resource.extension ?? []).filter((e) => e.url !== OUTBOUND_DELIVERY_EXTENSION), { url: OUTBOUND_DELIVERY_EXTENSION, extension: sub }];

  if (status.status === 'failed') {
    if (isCommunication) next.status = 'not-done';
    const error = status.error!;
    next.statusReason = {
      coding: [{ system: OUTBOUND_ERROR_CODE_SYSTEM, code: error.code, ...(error.provider_code ? { display: `provider code ${error.provider_code}` } : {}) }],
      text: error.reason,
    };
    return next;
  }
  next.status = 'completed';
  if (isCommunication) {
    if (status.status === 'sent' && resource.sent === undefined) next.sent = status.at;
    if (status.status === 'delivered') next.received = status.at;
  }
  return next;
}

export type WriteBackResult = 'updated' | 'unchanged';

export interface StatusWriteBackOptions {
  /** The client for the EHR the event's origin lives on. */
  client: FhirRestClient;
  logger?: Logger;
  /** Per request; the dispatcher's own retry covers failures. */
  signal?: () => AbortSignal;
}

/** Writes one status back; resolves 'unchanged' when it does not move past the recorded one. */
export async function writeBackStatus(event: OutboundStatusEvent, o: StatusWriteBackOptions): Promise<WriteBackResult> {
  const { origin } = event;
  if (origin.base_url !== undefined && origin.base_url.replace(/\/+$/, '') !== o.client.baseUrl) {
    throw new SwitchboardError('FHIR_HTTP_PERMANENT', `the status's origin is on another FHIR server than the channel's source; not written back`, {
      details: { http_status: null, resource_type: origin.resource_type },
    });
  }
  let conflict: SwitchboardError | undefined;
  for (let round = 0; round < MAX_CONFLICT_ROUNDS; round++) {
    const read = await o.client.read(origin.resource_type, origin.id, o.signal?.());
    const parsed = writableSchema.safeParse(read.body);
    if (!parsed.success || parsed.data.id !== origin.id || parsed.data.resourceType !== origin.resource_type) {
      throw new SwitchboardError('FHIR_RESPONSE_INVALID', `FHIR server answered the ${origin.resource_type} read with another resource`, { details: { http_status: read.status } });
    }
    const current = parsed.data as Writable;
    if (!movesForward(recordedStatus(current), event.status.status)) return 'unchanged';
    const version = current.meta?.versionId ?? versionFromEtag(read.headers.get('etag'));
    try {
      await o.client.update({ ...applyStatus(current, event), resourceType: current.resourceType, id: current.id }, version, o.signal?.());
      o.logger?.debug({ channel: event.channelId, delivery: event.deliveryId, status: event.status.status, resource_type: origin.resource_type }, 'outbound status written back to the EHR');
      return 'updated';
    } catch (err) {
      if (!(err instanceof SwitchboardError) || err.code !== 'FHIR_VERSION_CONFLICT') throw err;
      // Someone else wrote it since our read: read again and re-apply.
      conflict = err;
    }
  }
  throw conflict!;
}

/**
 * The listener for one FHIR source's channel. Retryable failures (the EHR unreachable, 5xx, 401,
 * a conflict that kept coming back) are thrown, so the dispatcher retries them in order. A
 * permanent one (the Communication deleted: 404/410; the update refused: 400/403/422) would block
 * the message's later statuses for ever: it is logged as an error (codes only) and given up; the
 * status stays recorded in the store.
 */
export function createStatusWriteBack(o: StatusWriteBackOptions & { log?: () => Logger | undefined }): OutboundStatusListener {
  return {
    async onStatus(event) {
      try {
        await writeBackStatus(event, { ...o, ...(o.log?.() ? { logger: o.log() } : {}) });
      } catch (err) {
        const c = classify(err);
        if (c.disposition !== 'permanent') throw err;
        (o.log?.() ?? o.logger)?.error(
          { channel: event.channelId, delivery: event.deliveryId, status: event.status.status, resource_type: event.origin.resource_type, code: c.code, http_status: c.details['http_status'] ?? null },
          'outbound status not written back to the EHR: permanent failure; the status stays recorded',
        );
      }
    },
  };
}
