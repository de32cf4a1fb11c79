/**
 * FHIR pull source for two-way messaging: finds the Communications (and CommunicationRequests)
 * the care team writes to patients in the EHR by searching
 * `[base]/<Type>?<search>&_lastUpdated=ge<cursor>&_sort=_lastUpdated&_count=<page_size>`,
 * for EHRs that offer no Subscriptions. No webhook; `poll()` runs in the worker role, one loop
 * per channel (src/pipeline/poll-runner.ts).
 *
 * The cursor (durable, ctx.cursor, key `fhir:<Type>`) is the newest `meta.lastUpdated` emitted
 * and the ids emitted at exactly that instant. The search asks `ge` (not `gt`) and skips those
 * ids, so resources sharing a timestamp across a page boundary are neither skipped nor repeated.
 * Paging: after a page that moved the cursor, the next page is a fresh search from the cursor
 * (keyset paging: a resource leaving the result set between two pages, e.g. a reply whose status
 * a write-back just set to completed, cannot shift an unseen one past an offset); the Bundle's
 * `next` link is followed when a page held nothing new (more resources share one instant than a
 * page holds). Each resource that triggers (src/fhir/outbound-resource.ts) is emitted as one
 * event; the cursor moves only after the emit resolved (the event is durable), so a crash
 * neither skips nor repeats one. Later versions of an emitted resource (status write-backs)
 * come back in later searches and are dropped by the pipeline's dedup key, which is the
 * resource's reference without its version.
 */
import { z } from 'zod';
import type { ParseResult } from '../../core/canonical-message.js';
import type { Logger } from '../../core/logger.js';
import { createStatusWriteBack } from '../../fhir/communication-status-writeback.js';
import { FhirRestClient, fhirClientAuthHeaders, fhirClientAuthSchema } from '../../fhir/fhir-rest-client.js';
import { OUTBOUND_RESOURCE_TYPES, parseOutboundEvent } from '../../fhir/outbound-resource.js';
import type { PollingContext, SourceConnector, SourceInstance, SourceParseContext } from '../types.js';

export { DEFAULT_SEARCH, fhirCursorKey } from './fhir-outbound-common.js';
import { fhirOutboundTriggerShape, fhirSearchShape, searchOutboundType, triggerRules, type OutboundSearchOptions } from './fhir-outbound-common.js';
import { abortableSleep } from './poll-cursor.js';

export const FHIR_POLL_KIND = 'fhir_poll';

export const fhirPollConfigSchema = z
  .strictObject({
    kind: z.literal(FHIR_POLL_KIND).describe('Source kind: searches a FHIR R4 server for new Communications to patients.'),
    base_url: z.url({ protocol: /^https?$/ }).describe('FHIR base URL, e.g. https://ehr.example.org/fhir/R4. Use ${FHIR_BASE_URL}.'),
    auth: fhirClientAuthSchema,
    resource_types: z
      .array(z.enum(OUTBOUND_RESOURCE_TYPES))
      .min(1)
      .default(['Communication'])
      .describe('Which resources become outbound messages: Communication (a message written to the patient) and/or CommunicationRequest (a request that one be sent).'),
    search: z
      .strictObject({ Communication: z.string().optional(), CommunicationRequest: z.string().optional() })
      .default({})
      .describe(
        'Extra search parameters per type (a query string without _lastUpdated, _sort or _count). Default: Communication "status=preparation,in-progress", CommunicationRequest "status=active". The trigger rule is applied to what comes back in any case.',
      ),
    interval_ms: z.number().int().min(10).default(10_000).describe('Pause between two polling rounds, once caught up.'),
    ...fhirSearchShape,
    ...fhirOutboundTriggerShape,
  })
  .describe('Polls a FHIR R4 server (_lastUpdated with a durable cursor) for Communications the care team writes to patients.');

export type FhirPollConfig = z.infer<typeof fhirPollConfigSchema>;

export function createFhirPollSource(config: FhirPollConfig, _ctx: { channelId: string }): SourceInstance {
  const rules = triggerRules(config);
  const baseUrl = config.base_url.replace(/\/+$/, '');
  const searchOptions: OutboundSearchOptions = { baseUrl, rules, search: config.search, pageSize: config.page_size, startAt: config.start_at };
  /** The worker's logger once polling started (the write-back logs its permanent failures). */
  let logger: Logger | undefined;

  return {
    path: undefined,
    maxBodyBytes: 0,
    handleGet: () => ({ status: 405, body: '' }),
    authenticate: () => ({ status: 405, body: '' }),
    checkEnvelope: () => 'fhir_poll has no webhook',
    acceptedResponse: { status: 405 },

    async poll(ctx: PollingContext): Promise<void> {
      logger = ctx.logger;
      const client = new FhirRestClient({ baseUrl, headers: fhirClientAuthHeaders(config.auth), timeoutMs: config.timeout_ms });
      while (!ctx.signal.aborted) {
        for (const type of config.resource_types) {
          if (ctx.signal.aborted) break;
          try {
            await searchOutboundType(client, searchOptions, type, ctx);
          } catch (err) {
            if (ctx.signal.aborted) break;
            // Codes and statuses only: never a URL (it may name a patient) or a body.
            const e = err as { code?: unknown; details?: { http_status?: unknown } };
            ctx.logger.warn({ type, code: e.code ?? null, http_status: e.details?.http_status ?? null, err: { message: (err as Error).message } }, 'fhir poll failed; retried next round');
          }
        }
        await abortableSleep(config.interval_ms, ctx.signal);
      }
    },

    outboundStatusListener: createStatusWriteBack({ client: new FhirRestClient({ baseUrl, headers: fhirClientAuthHeaders(config.auth), timeoutMs: config.timeout_ms }), log: () => logger }),

    parse: (raw: Buffer, parseCtx: SourceParseContext): ParseResult =>
      parseOutboundEvent(raw, { ...rules, sourceKind: FHIR_POLL_KIND, baseUrl, receivedAt: parseCtx.receivedAt }),
  };
}

export const fhirPollSource: SourceConnector<typeof fhirPollConfigSchema> = {
  kind: FHIR_POLL_KIND,
  summary: 'Polls a FHIR R4 server (_lastUpdated, durable cursor) for Communications the care team writes to patients: the outbound side of two-way messaging.',
  status: 'experimental',
  since: '0.2.0',
  configSchema: fhirPollConfigSchema,
  create: createFhirPollSource,
};
