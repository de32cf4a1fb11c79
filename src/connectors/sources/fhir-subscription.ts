/**
 * FHIR R4 Subscription source for two-way messaging: the EHR notifies Switchboard (rest-hook)
 * when the care team writes a Communication to a patient.
 *
 * The worker role (`poll()`, one loop per channel) manages the Subscription: at start it creates
 * it (`status: requested`, `criteria`, `channel: { type: rest-hook, endpoint, payload, header }`)
 * and remembers its id (in the channel's durable cursors); every `check_interval_ms` it reads it
 * back, re-applies criteria/endpoint/header when they changed, and repairs it when the server set
 * it to `error` or `off` (set back to `requested`). Every check is followed by a catch-up search
 * from a durable cursor (as fhir_poll does), so notifications lost while Switchboard, the network
 * or the Subscription was down are found; a server that refuses Subscriptions
 * (FHIR_SUBSCRIPTION_REFUSED, logged) leaves the source working by search alone.
 *
 * The webhook (`path`) takes the notifications, authenticated by the secret the Subscription's
 * `channel.header` carries (`Authorization: Bearer <secret>`, compared in constant time):
 *  - with a payload (application/fhir+json): the resource, as R4 says an update (PUT) to
 *    `<endpoint>/<Type>/<id>`; a POST of the resource to the endpoint is taken too;
 *  - without payload (`payload: id-only`): R4's notification without content, a POST with no
 *    body: it wakes the catch-up search at once (same process; otherwise within
 *    check_interval_ms), which reads what changed; a Subscriptions Backport notification Bundle
 *    naming the resources (id-only) has each named resource read.
 * A notified resource that triggers is stored as the envelope of src/fhir/outbound-resource.ts
 * (its `inResponseTo` resolved); one that does not is answered 200 and not stored. The same
 * resource found by a notification and by the catch-up is one message (dedup key).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { SwitchboardError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { createStatusWriteBack } from '../../fhir/communication-status-writeback.js';
import { FhirRestClient, fhirClientAuthHeaders, fhirClientAuthSchema } from '../../fhir/fhir-rest-client.js';
import { OUTBOUND_RESOURCE_TYPES, parseOutboundEvent, type OutboundResourceType } from '../../fhir/outbound-resource.js';
import type { EdgeResponse, InboundRequest, PollingContext, SourceConnector, SourceInstance } from '../types.js';
import { decide, envelope, fhirOutboundTriggerShape, fhirSearchShape, searchOutboundType, triggerRules, type OutboundSearchOptions } from './fhir-outbound-common.js';
import { abortableSleep } from './poll-cursor.js';

export const FHIR_SUBSCRIPTION_KIND = 'fhir_subscription';
/** Where the Subscription's id is kept, among the channel's durable cursors. */
export const SUBSCRIPTION_ID_KEY = 'subscription:id';

export const fhirSubscriptionConfigSchema = z
  .strictObject({
    kind: z.literal(FHIR_SUBSCRIPTION_KIND).describe('Source kind: a FHIR R4 rest-hook Subscription notifies Switchboard of Communications to patients.'),
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9/_-]+$/, 'a path such as /webhooks/ehr-replies')
      .describe('The webhook path the notifications arrive on (POST, and PUT on <path>/<Type>/<id>).'),
    endpoint: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe('The URL the EHR calls (Subscription.channel.endpoint): this path as the EHR reaches Switchboard, e.g. https://switchboard.clinic.example/webhooks/ehr-replies. Default: PUBLIC_BASE_URL (or the gateway\'s listening address) + path.'),
    base_url: z.url({ protocol: /^https?$/ }).describe('FHIR base URL of the EHR, e.g. https://ehr.example.org/fhir/R4. Use ${FHIR_BASE_URL}.'),
    auth: fhirClientAuthSchema,
    criteria: z
      .string()
      .regex(/^(Communication|CommunicationRequest)(\?.*)?$/, 'a search on Communication or CommunicationRequest, e.g. Communication?status=preparation,in-progress')
      .default('Communication?status=preparation,in-progress')
      .describe('Subscription.criteria: which resources the EHR notifies about. The trigger rule is applied to what arrives in any case.'),
    payload: z
      .enum(['application/fhir+json', 'id-only'])
      .default('application/fhir+json')
      .describe('application/fhir+json: notifications carry the resource. id-only: no content (channel.payload absent); Switchboard reads what changed. Keeps message text out of the notification.'),
    secret: z
      .string()
      .min(32)
      .optional()
      .describe(
        'The shared secret of Subscription.channel.header (Authorization: Bearer <secret>), at least 32 characters; use ${FHIR_SUBSCRIPTION_SECRET}. Absent: generated at start (then the http and worker roles must run in one process).',
      ),
    check_interval_ms: z
      .number()
      .int()
      .min(10)
      .default(30_000)
      .describe('How often the Subscription is checked (repaired when error or off) and a catch-up search finds what notifications missed.'),
    ...fhirSearchShape,
    max_body_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(1024 * 1024).describe('Largest notification body accepted.'),
    ...fhirOutboundTriggerShape,
  })
  .describe('A FHIR R4 rest-hook Subscription, created and repaired by Switchboard, notifies of Communications the care team writes to patients; a catch-up search covers lost notifications.');

export type FhirSubscriptionConfig = z.infer<typeof fhirSubscriptionConfigSchema>;

const subscriptionSchema = z.looseObject({
  resourceType: z.literal('Subscription'),
  id: z.string().min(1),
  status: z.string(),
  criteria: z.string().optional(),
  error: z.string().optional(),
  channel: z
    .looseObject({ type: z.string(), endpoint: z.string().optional(), payload: z.string().optional(), header: z.array(z.string()).optional() })
    .optional(),
});
type SubscriptionBody = z.infer<typeof subscriptionSchema>;

const notificationBundleSchema = z.looseObject({
  resourceType: z.literal('Bundle'),
  entry: z.array(z.looseObject({ fullUrl: z.string().optional(), resource: z.unknown().optional() })).optional(),
});

/** Equal-length digests, so the comparison takes the same time whatever the given value. */
function sameSecret(given: string, expected: string, key: Buffer): boolean {
  const a = createHmac('sha256', key).update(given).digest();
  const b = createHmac('sha256', key).update(expected).digest();
  return timingSafeEqual(a, b);
}

export interface SubscriptionState {
  id: string | undefined;
  /** The status last read from the server. */
  status: string | undefined;
  /** How often the Subscription was repaired (set back to requested after error or off). */
  repairs: number;
}

export function createFhirSubscriptionSource(config: FhirSubscriptionConfig, ctx: { channelId: string }): SourceInstance & { subscription(): SubscriptionState } {
  const rules = triggerRules(config);
  const baseUrl = config.base_url.replace(/\/+$/, '');
  const secret = config.secret ?? randomBytes(32).toString('base64url');
  const compareKey = randomBytes(32);
  const client = new FhirRestClient({ baseUrl, headers: fhirClientAuthHeaders(config.auth), timeoutMs: config.timeout_ms });
  const [criteriaType, criteriaQuery = ''] = config.criteria.split('?') as [OutboundResourceType, string?];
  const searchOptions: OutboundSearchOptions = { baseUrl, rules, search: { [criteriaType]: criteriaQuery }, pageSize: config.page_size, startAt: config.start_at };
  const state: SubscriptionState = { id: undefined, status: undefined, repairs: 0 };
  let wake: (() => void) | undefined;
  let woken = false;
  /** The worker's logger once polling started; silent before (the http role has none). */
  let logger: Logger = createLogger({ level: 'silent' });

  let desiredChannel = channelFor(config.endpoint ?? '');
  function channelFor(endpoint: string) {
    return {
      type: 'rest-hook',
      endpoint,
      ...(config.payload === 'application/fhir+json' ? { payload: 'application/fhir+json' } : {}),
      header: [`Authorization: Bearer ${secret}`],
    };
  }

  function differs(sub: SubscriptionBody): boolean {
    const c = sub.channel;
    return (
      sub.criteria !== config.criteria ||
      c?.type !== 'rest-hook' ||
      c.endpoint !== desiredChannel.endpoint ||
      (c.payload ?? undefined) !== desiredChannel.payload ||
      JSON.stringify(c.header ?? []) !== JSON.stringify(desiredChannel.header)
    );
  }

  async function readSubscription(id: string, signal: AbortSignal): Promise<SubscriptionBody | undefined> {
    try {
      const res = await client.read('Subscription', id, signal);
      const sub = subscriptionSchema.safeParse(res.body);
      if (!sub.success) throw new SwitchboardError('FHIR_RESPONSE_INVALID', 'FHIR server answered the Subscription read with something else', { details: { http_status: res.status } });
      return sub.data;
    } catch (err) {
      const status = err instanceof SwitchboardError ? err.details.http_status : undefined;
      if (status === 404 || status === 410) return undefined;
      throw err;
    }
  }

  function refused(err: unknown): never {
    if (err instanceof SwitchboardError && err.code === 'FHIR_HTTP_PERMANENT') {
      throw new SwitchboardError('FHIR_SUBSCRIPTION_REFUSED', `FHIR server refused the Subscription (${String(err.details.http_status)})`, { details: err.details, cause: err });
    }
    throw err;
  }

  /** Creates, updates or repairs the Subscription so that it is (or becomes) active. */
  async function ensureSubscription(pctx: PollingContext): Promise<boolean> {
    const base = pctx.publicBaseUrl?.();
    const endpoint = config.endpoint ?? (base === undefined ? undefined : `${base.replace(/\/+$/, '')}${config.path}`);
    // The gateway's own address is known once its HTTP server listens: try again shortly.
    if (endpoint === undefined) return false;
    desiredChannel = channelFor(endpoint);
    const id = await pctx.cursor.get(SUBSCRIPTION_ID_KEY);
    const sub = id === null ? undefined : await readSubscription(id, pctx.signal);
    const wanted = { criteria: config.criteria, channel: desiredChannel };
    if (sub === undefined) {
      const res = await client
        .create({ resourceType: 'Subscription', status: 'requested', reason: `Switchboard channel ${ctx.channelId}: replies from the care team to patients`, ...wanted }, pctx.signal)
        .catch(refused);
      const created = subscriptionSchema.safeParse(res.body);
      if (!created.success) throw new SwitchboardError('FHIR_RESPONSE_INVALID', 'FHIR server answered the Subscription create without a Subscription', { details: { http_status: res.status } });
      await pctx.cursor.set(SUBSCRIPTION_ID_KEY, created.data.id);
      Object.assign(state, { id: created.data.id, status: created.data.status });
      pctx.logger.info({ subscription: created.data.id, status: created.data.status }, 'fhir subscription created');
      return true;
    }
    Object.assign(state, { id: sub.id, status: sub.status });
    const broken = sub.status === 'error' || sub.status === 'off';
    if (differs(sub) || broken) {
      const { meta: _meta, error: _error, ...rest } = sub;
      await client.update({ ...rest, ...wanted, status: 'requested' }, undefined, pctx.signal).catch(refused);
      if (broken) state.repairs++;
      state.status = 'requested';
      // The server's own words about the failure stay out of the log (they may echo a URL).
      pctx.logger.warn({ subscription: sub.id, was: sub.status, changed: !broken }, broken ? 'fhir subscription was not active; repaired (set back to requested)' : 'fhir subscription updated to the channel file');
    }
    return true;
  }

  async function resourcesNamed(body: unknown, req: InboundRequest, signal: AbortSignal): Promise<unknown[]> {
    if (body === undefined) return [];
    const bundle = notificationBundleSchema.safeParse(body);
    if (!bundle.success) {
      // PUT <path>/<Type>/<id>: the body is that resource.
      const m = /\/([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(req.url.split('?')[0] ?? '');
      const r = body as { resourceType?: unknown; id?: unknown };
      if (req.method === 'PUT' && (!m || r.resourceType !== m[1] || r.id !== m[2])) {
        logger.warn({ channel: ctx.channelId }, 'fhir subscription: a notification PUT names another resource than its body; not stored');
        return [];
      }
      return [body];
    }
    const out: unknown[] = [];
    for (const entry of bundle.data.entry ?? []) {
      const named = /(?:^|\/)(Communication|CommunicationRequest)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(entry.fullUrl ?? '');
      if (entry.resource !== undefined && (entry.resource as { resourceType?: unknown }).resourceType !== 'SubscriptionStatus') out.push(entry.resource);
      else if (named && (!/^https?:/.test(entry.fullUrl ?? '') || (entry.fullUrl ?? '').startsWith(`${baseUrl}/`))) {
        out.push((await client.read(named[1]!, named[2]!, signal)).body);
      }
    }
    return out;
  }

  const unauthorized: EdgeResponse = { status: 401, body: JSON.stringify({ error: { code: 'UNAUTHENTICATED', message: 'missing or wrong subscription secret' } }), contentType: 'application/json' };

  return {
    path: config.path,
    restHook: true,
    maxBodyBytes: config.max_body_bytes,
    handleGet: () => ({ status: 405, body: '' }),
    authenticate(req) {
      const header = req.headers['authorization'] ?? '';
      const m = /^Bearer (.+)$/.exec(header);
      return m && sameSecret(m[1]!, secret, compareKey) ? null : unauthorized;
    },
    checkEnvelope(body) {
      if (body === undefined) return null;
      const type = typeof body === 'object' && body !== null ? (body as { resourceType?: unknown }).resourceType : undefined;
      if (type === 'Bundle' || (typeof type === 'string' && (OUTBOUND_RESOURCE_TYPES as readonly string[]).includes(type))) return null;
      return 'not a FHIR notification: expected a Communication, a CommunicationRequest, a notification Bundle or no body';
    },
    acceptedResponse: { status: 200, body: '' },

    async prepare(req, body, signal) {
      if (body === undefined) {
        // A notification without content: search now.
        woken = true;
        wake?.();
        return [];
      }
      const events: { raw: Buffer; contentType: string }[] = [];
      for (const resource of await resourcesNamed(body, req, signal)) {
        const decided = await decide(client, resource, rules, signal, logger);
        if (decided?.verdict.trigger) events.push({ raw: envelope(baseUrl, resource, decided.inResponseTo), contentType: 'application/fhir+json' });
      }
      return events;
    },

    async poll(pctx: PollingContext): Promise<void> {
      logger = pctx.logger;
      while (!pctx.signal.aborted) {
        woken = false;
        let ensured = true;
        try {
          ensured = await ensureSubscription(pctx);
        } catch (err) {
          if (pctx.signal.aborted) break;
          const e = err as { code?: unknown; details?: { http_status?: unknown } };
          pctx.logger.warn({ code: e.code ?? null, http_status: e.details?.http_status ?? null, err: { message: (err as Error).message } }, 'fhir subscription check failed; replies are found by search meanwhile');
        }
        try {
          await searchOutboundType(client, searchOptions, criteriaType, pctx);
        } catch (err) {
          if (pctx.signal.aborted) break;
          const e = err as { code?: unknown; details?: { http_status?: unknown } };
          pctx.logger.warn({ code: e.code ?? null, http_status: e.details?.http_status ?? null, err: { message: (err as Error).message } }, 'fhir catch-up search failed; retried next round');
        }
        if (woken) continue;
        const stop = new AbortController();
        wake = () => stop.abort();
        await abortableSleep(ensured ? config.check_interval_ms : Math.min(250, config.check_interval_ms), AbortSignal.any([pctx.signal, stop.signal]));
        wake = undefined;
      }
    },

    parse: (raw, parseCtx) => parseOutboundEvent(raw, { ...rules, sourceKind: FHIR_SUBSCRIPTION_KIND, baseUrl, receivedAt: parseCtx.receivedAt }),

    outboundStatusListener: createStatusWriteBack({ client, log: () => logger }),

    subscription: () => ({ ...state }),
  };
}

export const fhirSubscriptionSource: SourceConnector<typeof fhirSubscriptionConfigSchema> = {
  kind: FHIR_SUBSCRIPTION_KIND,
  summary: 'A FHIR R4 rest-hook Subscription (created, checked and repaired by Switchboard; notifications authenticated) for Communications the care team writes to patients.',
  status: 'experimental',
  since: '0.2.0',
  configSchema: fhirSubscriptionConfigSchema,
  create: createFhirSubscriptionSource,
};
