/**
 * What the two FHIR sources (fhir_poll, fhir_subscription) share: the trigger options of their
 * channel files, the raw event they store (the envelope of src/fhir/outbound-resource.ts), and
 * the resolution of `inResponseTo` (is the answered Communication one Switchboard created from a
 * patient message, and with which provider message id?).
 */
import { z } from 'zod';
import {
  DEFAULT_OWN_IDENTIFIER_SYSTEMS,
  outboundResourceSchema,
  outboundTrigger,
  type OutboundEnvelope,
  type OutboundResourceType,
  type OutboundResource,
  type ResolvedInResponseTo,
  type TriggerRules,
  type TriggerVerdict,
} from '../../fhir/outbound-resource.js';
import type { FhirRestClient } from '../../fhir/fhir-rest-client.js';
import type { Logger } from '../../core/logger.js';
import type { PollingContext } from '../types.js';
import { advance, newerThan, readTimeCursor, type Sortable, type TimeCursor } from './poll-cursor.js';

/** Config fields both FHIR sources have. */
export const fhirOutboundTriggerShape = {
  own_identifier_systems: z
    .array(z.string().min(1))
    .default([...DEFAULT_OWN_IDENTIFIER_SYSTEMS])
    .describe(
      'Identifier systems of the Communications Switchboard creates from patient messages (the identifier_system of your inbound fhir_r4 destinations). A Communication carrying one is never sent to a patient: this is the no-loop rule.',
    ),
  require_in_response_to: z
    .boolean()
    .default(false)
    .describe('Only Communications whose inResponseTo points at a Communication Switchboard created (a reply to a patient message). Default false: any Communication to a Patient in preparation or in-progress.'),
};

/** The search settings both FHIR sources have (fhir_poll's search, fhir_subscription's catch-up). */
export const fhirSearchShape = {
  page_size: z.number().int().min(1).max(1000).default(50).describe('_count of each search page.'),
  start_at: z
    .union([z.enum(['beginning', 'now']), z.iso.datetime({ offset: true })])
    .default('now')
    .describe('Where the search starts the first time (no cursor yet): "now" (only resources updated from now on), "beginning", or an ISO instant.'),
  timeout_ms: z.number().int().min(100).max(300_000).default(15_000).describe('Timeout of one FHIR request.'),
};

export function triggerRules(config: { own_identifier_systems: readonly string[]; require_in_response_to: boolean }): TriggerRules {
  return { ownIdentifierSystems: config.own_identifier_systems, requireInResponseTo: config.require_in_response_to };
}

export function envelope(baseUrl: string, resource: unknown, inResponseTo: ResolvedInResponseTo[]): Buffer {
  const event: OutboundEnvelope = { fhir_outbound: { base_url: baseUrl, resource, in_response_to: inResponseTo } };
  return Buffer.from(JSON.stringify(event), 'utf8');
}

const identifiedSchema = z.looseObject({
  resourceType: z.string(),
  identifier: z.array(z.looseObject({ system: z.string().optional(), value: z.string().optional() })).optional(),
});

/**
 * For each `inResponseTo`: the reference and, when the answered Communication carries an
 * identifier in one of the own systems, that identifier (its value is the provider's message id,
 * e.g. the wamid, which the reply quotes). A logical reference by identifier needs no read; a
 * literal `Communication/<id>` is read. A failed read leaves the entry unresolved (logged, no PHI).
 */
export async function resolveInResponseTo(
  client: FhirRestClient,
  resource: OutboundResource,
  ownSystems: readonly string[],
  signal: AbortSignal,
  logger: Logger,
): Promise<ResolvedInResponseTo[]> {
  const own = new Set(ownSystems);
  const out: ResolvedInResponseTo[] = [];
  for (const ref of resource.inResponseTo ?? []) {
    const entry: ResolvedInResponseTo = ref.reference ? { reference: ref.reference } : {};
    const logical = ref.identifier;
    if (logical?.system !== undefined && logical.value !== undefined && own.has(logical.system)) {
      out.push({ ...entry, identifier: { system: logical.system, value: logical.value } });
      continue;
    }
    const m = /(?:^|\/)Communication\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref.reference ?? '');
    if (m && (!/^https?:/.test(ref.reference ?? '') || (ref.reference ?? '').startsWith(`${client.baseUrl}/`))) {
      try {
        const res = await client.read('Communication', m[1]!, signal);
        const answered = identifiedSchema.safeParse(res.body);
        const id = answered.success ? (answered.data.identifier ?? []).find((i) => i.system !== undefined && own.has(i.system) && i.value) : undefined;
        if (id) entry.identifier = { system: id.system!, value: id.value! };
      } catch (err) {
        logger.warn({ err: { code: (err as { code?: string }).code, message: (err as Error).message } }, 'fhir source: the answered Communication could not be read; inResponseTo left unresolved');
      }
    }
    out.push(entry);
  }
  return out;
}

/**
 * The verdict for a resource a source fetched or was notified of, resolving `inResponseTo` only
 * when it matters (the resource triggers, or would with the resolution).
 */
export async function decide(
  client: FhirRestClient,
  raw: unknown,
  rules: TriggerRules,
  signal: AbortSignal,
  logger: Logger,
): Promise<{ resource: OutboundResource; verdict: TriggerVerdict; inResponseTo: ResolvedInResponseTo[] } | undefined> {
  const parsed = outboundResourceSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const resource = parsed.data;
  const first = outboundTrigger(resource, { ...rules, requireInResponseTo: false });
  if (!first.trigger || (resource.inResponseTo ?? []).length === 0) {
    return { resource, verdict: outboundTrigger(resource, rules), inResponseTo: [] };
  }
  const inResponseTo = await resolveInResponseTo(client, resource, rules.ownIdentifierSystems, signal, logger);
  return { resource, verdict: outboundTrigger(resource, rules, inResponseTo), inResponseTo };
}

// ---------------------------------------------------------------------------------------------
// The search: shared by fhir_poll and by fhir_subscription's catch-up
// ---------------------------------------------------------------------------------------------

/** What each type is searched with by default: only resources that can trigger. */
export const DEFAULT_SEARCH: Record<OutboundResourceType, string> = {
  Communication: 'status=preparation,in-progress',
  CommunicationRequest: 'status=active',
};

export function fhirCursorKey(type: OutboundResourceType): string {
  return `fhir:${type}`;
}

const resourceHeadSchema = z.looseObject({
  resourceType: z.string(),
  id: z.string().min(1),
  meta: z.looseObject({ lastUpdated: z.string() }),
});

/** Safety net against a server whose paging never ends. */
const MAX_PAGES_PER_ROUND = 10_000;

export interface OutboundSearchOptions {
  baseUrl: string;
  rules: TriggerRules;
  /** Search parameters per type (query string without _lastUpdated, _sort, _count). */
  search: Partial<Record<OutboundResourceType, string>>;
  pageSize: number;
  /** Where a type without a cursor starts. */
  startAt: 'beginning' | 'now' | string;
}

function searchUrl(client: FhirRestClient, o: OutboundSearchOptions, type: OutboundResourceType, cursor: TimeCursor): string {
  const params = new URLSearchParams(o.search[type] ?? DEFAULT_SEARCH[type]);
  for (const reserved of ['_lastUpdated', '_sort', '_count']) params.delete(reserved);
  if (cursor.ts !== null) params.set('_lastUpdated', `ge${cursor.ts}`);
  params.set('_sort', '_lastUpdated');
  params.set('_count', String(o.pageSize));
  return client.url(`${type}?${params.toString()}`);
}

/**
 * One round for one type: every resource updated since the cursor, each that triggers emitted as
 * one event, the cursor moved after each (after its emit resolved). Returns how many were emitted.
 */
export async function searchOutboundType(client: FhirRestClient, o: OutboundSearchOptions, type: OutboundResourceType, ctx: PollingContext): Promise<number> {
  const key = fhirCursorKey(type);
  let cursor: TimeCursor | null = readTimeCursor(await ctx.cursor.get(key));
  if (cursor === null) {
    const start = o.startAt;
    cursor = { ts: start === 'beginning' ? null : start === 'now' ? new Date().toISOString() : new Date(start).toISOString(), ids: [] };
    // Remember where "now" was, so a restart does not move the start forward.
    await ctx.cursor.set(key, JSON.stringify(cursor));
  }
  let emitted = 0;
  let url = searchUrl(client, o, type, cursor);
  for (let page = 0; page < MAX_PAGES_PER_ROUND && !ctx.signal.aborted; page++) {
    const bundle = await client.searchPage(url, `the ${type} search`, ctx.signal);
    const items: Sortable<unknown>[] = [];
    for (const entry of bundle.entry ?? []) {
      if (entry.search?.mode !== undefined && entry.search.mode !== 'match') continue;
      const head = resourceHeadSchema.safeParse(entry.resource);
      if (!head.success || head.data.resourceType !== type) continue;
      const ms = Date.parse(head.data.meta.lastUpdated);
      if (Number.isNaN(ms)) continue;
      items.push({ id: head.data.id, at: new Date(ms).toISOString(), at_ms: ms, raw: entry.resource });
    }
    const fresh: Sortable<unknown>[] = newerThan(cursor, items);
    for (const item of fresh) {
      const decided = await decide(client, item.raw, o.rules, ctx.signal, ctx.logger);
      if (decided?.verdict.trigger) {
        await ctx.emit(envelope(o.baseUrl, item.raw, decided.inResponseTo), 'application/fhir+json');
        emitted++;
      }
      // Durable now (or nothing to emit): move the cursor past it.
      cursor = advance<unknown>(cursor, [item]);
      await ctx.cursor.set(key, JSON.stringify(cursor));
      if (ctx.signal.aborted) return emitted;
    }
    const next = (bundle.link ?? []).find((l) => l.relation === 'next')?.url;
    if (next === undefined) return emitted;
    // Keyset paging after progress; the server's next link only through a long tie.
    url = fresh.length > 0 ? searchUrl(client, o, type, cursor) : next;
  }
  return emitted;
}
