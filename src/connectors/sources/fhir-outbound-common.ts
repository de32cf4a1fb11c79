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
  type OutboundResource,
  type ResolvedInResponseTo,
  type TriggerRules,
  type TriggerVerdict,
} from '../../fhir/outbound-resource.js';
import type { FhirRestClient } from '../../fhir/fhir-rest-client.js';
import type { Logger } from '../../core/logger.js';

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
