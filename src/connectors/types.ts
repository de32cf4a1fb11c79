/**
 * Connector contracts. A connector is one declaration: a snake_case `kind`, a strict zod schema
 * (its parser, its type, its docs and its JSON Schema), examples, and `create()`. Connectors are
 * listed explicitly in `registry.ts`; nothing registers itself on import.
 */
import { z } from 'zod';
import type { CanonicalMessage, ParseResult } from '../core/canonical-message.js';
import type { Logger } from '../core/logger.js';
import type { OutboundStatusListener } from '../core/outbound.js';
import type { CompiledMapping } from '../mapping/jsonata-mapping.js';
import type { PublicJwk } from '../fhir/smart-backend.js';
import type { Classification } from '../core/errors.js';
import type { OutboundServices } from '../core/outbound-ledger.js';
import { circuitBreakerSchema, retryPolicySchema, type CircuitBreakerPolicy, type RetryPolicy } from '../core/policies.js';

export interface ConnectorSpec<Schema extends z.ZodObject> {
  kind: string;
  summary: string;
  status: 'stable' | 'beta' | 'experimental';
  /** Switchboard version that introduced it. */
  since: string;
  /** Strict object schema with `kind: z.literal(<kind>)`. Field `.describe()` texts become docs. */
  configSchema: Schema;
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/** An HTTP request as the edge saw it, before any parsing. Header names are lower-case. */
export interface InboundRequest {
  method: string;
  /** Path + query exactly as received. */
  url: string;
  headers: Readonly<Record<string, string | undefined>>;
  query: URLSearchParams;
  rawBody: Buffer;
}

/** What the edge answers. `reason` is a plain sentence for the caller (never PHI). */
export interface EdgeResponse {
  status: number;
  body?: string;
  contentType?: string;
}

export interface SourceParseContext {
  channelId: string;
  receivedAt: Date;
}

/** Durable per-channel cursors for polling sources (stored in the message store). */
export interface SourceCursorStore {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
}

export interface PollingContext {
  signal: AbortSignal;
  logger: Logger;
  cursor: SourceCursorStore;
  /**
   * Stores one raw event and enqueues its ingest; resolves once the event is durable. Advance the
   * cursor only after this resolves, so a crash neither skips nor (beyond dedup) repeats messages.
   */
  emit(raw: Buffer, contentType: string): Promise<void>;
  /**
   * Where the gateway's webhooks are reached from outside (PUBLIC_BASE_URL, or the listening
   * address once the HTTP server is up; undefined before). For sources that register a webhook
   * at their peer (fhir_subscription's Subscription endpoint).
   */
  publicBaseUrl?: () => string | undefined;
}

export interface SourceInstance {
  /** Webhook path the channel serves (GET and POST); undefined for sources that only poll. */
  readonly path: string | undefined;
  /** How the webhook body is decoded before `checkEnvelope`: JSON (default) or form-urlencoded. */
  readonly bodyFormat?: 'json' | 'form';
  /**
   * Pull sources: runs until `ctx.signal` aborts, emitting raw events. Started by the worker
   * role, one loop per channel.
   */
  poll?(ctx: PollingContext): Promise<void>;
  /** Largest accepted body; larger bodies get 413 before any work. */
  readonly maxBodyBytes: number;
  /** GET on the path, e.g. the WhatsApp verification handshake. */
  handleGet(req: InboundRequest): EdgeResponse;
  /**
   * Checks the request's authenticity over the raw bytes (signature, token). Returns null when
   * accepted, or the response to send (401/403) when not. Must be constant-time in secrets.
   */
  authenticate(req: InboundRequest): EdgeResponse | null;
  /**
   * Checks the decoded body (JSON value, or for `form` a record of field → value or values) is an
   * event this source understands. Returns null, or a plain reason
   * for a 400. Runs at the edge so that garbage is refused before it is stored.
   */
  checkEnvelope(body: unknown): string | null;
  /** The answer after the event is stored and enqueued. */
  readonly acceptedResponse: EdgeResponse;
  /**
   * FHIR R4 rest-hook notifications: the webhook also takes PUT on `<path>/<Type>/<id>` (a
   * notification with a payload is an update of the resource, the endpoint being the service base)
   * and an empty body (a notification without payload; `checkEnvelope` then gets undefined).
   */
  readonly restHook?: boolean;
  /**
   * Optional: turns an authenticated request whose body passed `checkEnvelope` into the raw events
   * to store, with I/O (e.g. reading the resource an id-only notification names). Runs before the
   * 2xx; a throw answers 503 so that the sender retries. Absent: the body is the one event.
   */
  prepare?(req: InboundRequest, body: unknown, signal: AbortSignal): Promise<{ raw: Buffer; contentType: string }[]>;
  /**
   * Sources of outbound messages (the FHIR sources): writes the chat provider's statuses of the
   * messages this source produced back to where they came from (the originating Communication).
   */
  readonly outboundStatusListener?: OutboundStatusListener;
  /**
   * Turns a stored raw event into canonical messages and statuses. Deterministic for the same
   * bytes and context; never throws on odd input. May be async (e.g. a JSONata extraction).
   */
  parse(raw: Buffer, ctx: SourceParseContext): ParseResult | Promise<ParseResult>;
}

export interface SourceConnector<Schema extends z.ZodObject = z.ZodObject> extends ConnectorSpec<Schema> {
  create(config: z.infer<Schema>, ctx: { channelId: string }): SourceInstance;
}

// ---------------------------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------------------------

/** Fields every destination has, whatever its kind. */
export const destinationBaseShape = {
  name: z
    .string()
    .regex(/^[a-z][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, _ and -, starting with a letter')
    .describe('Unique within the channel; names the delivery queue and dead-letter queue.'),
  mapping: z.string().describe('Path of the JSONata mapping, relative to the channel file.'),
  when: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Routing: a JSONata predicate on the canonical message. When it is false the message never reaches this destination (recorded as not routed). Absent: every message.',
    ),
  retry: retryPolicySchema.default({ attempts: 10, initial_delay_ms: 1000, max_delay_ms: 300_000, max_age_ms: 86_400_000 }),
  circuit_breaker: circuitBreakerSchema.default({ enabled: true, failure_threshold: 5, open_ms: 30_000, max_open_ms: 600_000 }),
  ordering: z
    .enum(['none', 'per_conversation'])
    .default('none')
    .describe(
      'none: deliveries run in parallel (no head-of-line blocking). per_conversation: messages of one conversation are delivered in the order received; a message waits while an earlier one of the same conversation is pending, other conversations are not held up, and a dead-lettered message no longer blocks its conversation.',
    ),
  ordering_window_ms: z
    .number()
    .int()
    .min(0)
    .max(600_000)
    .default(2000)
    .describe(
      'per_conversation only: a message waits this long after it was received before it is delivered, so that an earlier message of its conversation that reached Switchboard later (senders do not guarantee order) still goes first.',
    ),
  concurrency: z.number().int().min(1).max(256).default(8).describe('Deliveries in flight at once, per worker process.'),
};

export interface DeliveryContext {
  deliveryId: string;
  messageId: string;
  /** Attempt number, 1-based. */
  attempt: number;
  signal: AbortSignal;
  logger: Logger;
  /** The received time of the message, as the mapping clock. */
  now: Date;
  /** The delivery's generation (a replay makes a new one). */
  generation?: number;
  /** The outbound ledger and the patients' conversations (chat destinations); given by the pipeline. */
  outbound?: OutboundServices | undefined;
}

export interface DeliveryOutcome {
  /** PHI-free facts about what the destination did: resource id, HTTP status, created or matched... */
  detail: Record<string, string | number | boolean | null>;
  /**
   * The Patient the message was delivered for (`Patient/123`), when the destination matched one
   * (fhir_r4): the store links the patient's conversation to it, through its blind index, so a
   * reply from the EHR finds where the patient wrote. PHI: never in `detail`.
   */
  patient?: string;
}

/** What a destination would send for a message, built without any network I/O. */
export interface RenderedOutput {
  /** The mapping returned nothing: the message is not sent to this destination. */
  dropped: boolean;
  /** e.g. `application/fhir+json`, `x-application/hl7-v2+er7`. */
  contentType: string;
  /** A JSON resource, or the wire text (HL7 ER7 with \r separators). Undefined when dropped. */
  body: unknown;
}

export interface RenderOptions {
  now: Date;
  /** Values that delivery would look up (e.g. `patient` for fhir_r4); the caller supplies them. */
  bindings: Record<string, unknown>;
  /** Delivery id, for destinations that derive ids from it (HL7 MSH-10). */
  deliveryId?: string;
}

export interface DestinationInstance {
  readonly name: string;
  readonly retry: RetryPolicy;
  readonly circuitBreaker: CircuitBreakerPolicy;
  readonly ordering: 'none' | 'per_conversation';
  /** per_conversation: how long a message waits after receipt for late-arriving earlier ones. */
  readonly orderingWindowMs: number;
  readonly concurrency: number;
  /** The mapping in use, with its content hash as version. */
  readonly mapping: CompiledMapping;
  /** Maps and sends one message. Throws a SwitchboardError (or anything: classified as retryable INTERNAL). */
  deliver(message: CanonicalMessage, ctx: DeliveryContext): Promise<DeliveryOutcome>;
  /**
   * Maps and validates without sending: what `deliver` would send. Used by mapping and channel
   * tests and by `switchboard map`. Throws the same typed errors as deliver for bad output.
   */
  render(message: CanonicalMessage, options: RenderOptions): Promise<RenderedOutput>;
  /**
   * Cheap reachability (and, where the protocol allows, authentication) check, used by readiness
   * and `validate --environment`. Resolves to what it verified, in words, e.g.
   * "reachable: MLLP connection opened (plain TCP, no authentication)".
   */
  healthcheck(signal: AbortSignal): Promise<string>;
  /**
   * Called once a delivery of this destination is dead-lettered (chat destinations record the
   * failure as an outbound status for the EHR). Errors are logged, never fail the delivery.
   */
  onDeadLettered?(deliveryId: string, failure: Classification, outbound: OutboundServices): Promise<void>;
  /** Public keys this destination signs with (SMART Backend Services), for /.well-known/jwks.json. */
  publicJwks?(): readonly PublicJwk[];
  close(): Promise<void>;
}

type DestinationBaseConfig = z.infer<z.ZodObject<typeof destinationBaseShape>>;

/** The DestinationInstance fields every connector takes straight from the shared config shape. */
export function destinationBase(
  config: DestinationBaseConfig,
  mapping: CompiledMapping,
): Pick<DestinationInstance, 'name' | 'retry' | 'circuitBreaker' | 'ordering' | 'orderingWindowMs' | 'concurrency' | 'mapping'> {
  return {
    name: config.name,
    retry: config.retry,
    circuitBreaker: config.circuit_breaker,
    ordering: config.ordering,
    orderingWindowMs: config.ordering_window_ms,
    concurrency: config.concurrency,
    mapping,
  };
}

export interface DestinationCreateContext {
  channelId: string;
  logger: Logger;
  mapping: CompiledMapping;
}

export interface DestinationConnector<Schema extends z.ZodObject = z.ZodObject> extends ConnectorSpec<Schema> {
  create(config: z.infer<Schema>, ctx: DestinationCreateContext): DestinationInstance;
}

/** The connectors a channel file may name, listed explicitly (nothing registers itself on import). */
export type ConnectorRegistry = {
  sources: readonly SourceConnector[];
  destinations: readonly DestinationConnector[];
};
