/**
 * What the three chat destinations (whatsapp_cloud_send, twilio_send, rocketchat_send) share:
 * the reply mapping (canonical message + conversation bindings -> OutboundMessage), the
 * recipient's resolution, the ledger's send-at-most-once protocol, the HTTP call with its
 * "was the request written?" verdict, and the in-process rate limiters.
 *
 * The protocol (per delivery, whatever the attempt or replay):
 *   accepted            -> done: the provider's id is recorded; never sent again.
 *   intent (no answer)  -> the previous request may have reached the provider: reconcile
 *                          (per provider) before anything else; resend only when the provider's
 *                          API makes it safe, or when an operator allowed it for this generation.
 *   not_sent            -> commit the intent, THEN write the request.
 */
import { z } from 'zod';
import type { CanonicalMessage } from '../core/canonical-message.js';
import { SwitchboardError, errorCatalogue, type ErrorCode } from '../core/errors.js';
import type { OutboundConversations, OutboundLedger, OutboundProvider, OutboundSendRecord, OutboundServices } from '../core/outbound-ledger.js';
import { outboundMessageSchema, windowOpen, type LastConversation, type OutboundMessage } from '../core/outbound.js';
import { mappingOutputInvalid } from '../mapping/mapping-output-error.js';
import type { CompiledMapping } from '../mapping/jsonata-mapping.js';

/** Config fields every chat destination has. */
export const chatSendShape = {
  timeout_ms: z.number().int().min(100).max(120_000).default(15_000).describe('Timeout of each request to the provider, in milliseconds. A timeout after the request was written is an interrupted send: reconciled, never resent blindly.'),
  conversation_channel: z
    .string()
    .min(1)
    .optional()
    .describe('Only conversations of this inbound channel decide where a reply goes (and, on WhatsApp, whether the 24-hour window is open). Absent: the patient\'s latest conversation on a source of the right kind.'),
  reconcile_ms: z
    .number()
    .int()
    .min(0)
    .max(86_400_000)
    .default(120_000)
    .describe('After an interrupted send: how long to wait for the provider to say whether it took the message (status webhook, lookup) before dead-lettering with OUTBOUND_SEND_UNCERTAIN.'),
};

/** The provider's answer became unknowable once the request was written: `unknown`; refused or never written: `not_sent`. */
export type SendOutcomeKnown = 'not_sent' | 'unknown';

export function sendError(code: ErrorCode, message: string, send: SendOutcomeKnown, options: { retryAfterMs?: number; pause?: boolean; details?: Record<string, unknown>; rejected?: unknown } = {}): SwitchboardError {
  return new SwitchboardError(code, message, {
    details: { ...options.details, send },
    ...(options.retryAfterMs !== undefined && { retryAfterMs: options.retryAfterMs }),
    ...(options.pause === true && { pauseDestination: true }),
    ...(options.rejected !== undefined && { rejectedOutput: options.rejected }),
  });
}

// ---------------------------------------------------------------------------------------------
// Mapping
// ---------------------------------------------------------------------------------------------

/** The conversation as the mapping sees it (`$conversation`), or null. */
export function conversationBinding(c: LastConversation | null): Record<string, unknown> | null {
  if (c === null) return null;
  // Absent fields are left out (not null), so `$conversation.last_message_id` is simply undefined.
  return {
    channel_id: c.channelId,
    source_kind: c.sourceKind,
    address: c.address,
    ...(c.businessEndpoint !== undefined && { business_endpoint: c.businessEndpoint }),
    last_inbound_at: c.lastInboundAt.toISOString(),
    ...(c.lastMessageId !== undefined && { last_message_id: c.lastMessageId }),
  };
}

/**
 * Evaluates the reply mapping with `$conversation`, `$window_open` and `$channel`, and validates
 * its output as an OutboundMessage. Undefined: the mapping dropped the message. A bad output is
 * MAPPING_OUTPUT_INVALID with the mapping's file:line:column.
 */
export async function renderOutbound(mapping: CompiledMapping, message: CanonicalMessage, now: Date, bindings: Record<string, unknown>): Promise<OutboundMessage | undefined> {
  const output = await mapping.evaluate(message, { now, bindings: { conversation: null, window_open: false, ...bindings } });
  if (output === undefined) return undefined;
  const json = JSON.stringify(output);
  if (json === undefined) throw mappingOutputInvalid(mapping, ['(root): the mapping returned something that is not JSON (a function?)'], { what: 'OutboundMessage' });
  const value: unknown = JSON.parse(json);
  const parsed = outboundMessageSchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `OutboundMessage${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}: ${i.message}`);
    throw mappingOutputInvalid(mapping, issues, { what: 'OutboundMessage', output: value });
  }
  return parsed.data;
}

// ---------------------------------------------------------------------------------------------
// Recipient
// ---------------------------------------------------------------------------------------------

export interface ResolvedRecipient {
  address: NonNullable<OutboundMessage['recipient']['address']>;
  /** The conversation the reply answers (for the window and the business endpoint), if known. */
  conversation: LastConversation | null;
  how: 'explicit' | 'conversation';
}

/** The Patient reference of a message from the EHR (`conversation_id` = `Patient/123`), if it is one. */
export function patientOf(message: CanonicalMessage): string | undefined {
  return /^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(message.conversation_id) ? message.conversation_id : undefined;
}

export async function lookupConversation(conversations: OutboundConversations, patient: string | undefined, sourceKinds: readonly string[], channelId: string | undefined): Promise<LastConversation | null> {
  if (patient === undefined) return null;
  return conversations.lastConversation({ patient, sourceKinds, ...(channelId !== undefined && { channelId }) });
}

/**
 * The recipient: the message's explicit address (the mapping's choice, e.g. from the Patient's
 * telecom when there is no conversation), else the conversation the patient last wrote in.
 * For a phone address, the conversation with that number decides the window.
 */
export async function resolveRecipient(
  out: OutboundMessage,
  conversations: OutboundConversations,
  known: { patient: string | undefined; conversation: LastConversation | null },
  sourceKinds: readonly string[],
  channelId: string | undefined,
): Promise<ResolvedRecipient> {
  const scope = { sourceKinds, ...(channelId !== undefined && { channelId }) };
  const explicit = out.recipient.address;
  if (explicit !== undefined) {
    const conversation =
      explicit.kind === 'phone'
        ? known.conversation?.address.kind === 'phone' && known.conversation.address.phone === explicit.phone
          ? known.conversation
          : await conversations.lastConversation({ phone: explicit.phone, ...scope })
        : known.conversation?.address.kind === 'room' && explicit.kind === 'room' && known.conversation.address.room_id === explicit.room_id
          ? known.conversation
          : null;
    return { address: explicit, conversation, how: 'explicit' };
  }
  const conversation = out.recipient.patient === known.patient ? known.conversation : await conversations.lastConversation({ patient: out.recipient.patient, ...scope });
  if (conversation === null) {
    throw new SwitchboardError('OUTBOUND_RECIPIENT_UNRESOLVED', `${out.recipient.patient} has no conversation on ${sourceKinds.join(' or ')} and the mapping gave no address`, {
      details: { source_kinds: [...sourceKinds] },
    });
  }
  return { address: conversation.address, conversation, how: 'conversation' };
}

function sameConversation(a: LastConversation | null, b: LastConversation | null): boolean {
  return a === b || (a !== null && b !== null && a.channelId === b.channelId && a.lastInboundAt.getTime() === b.lastInboundAt.getTime() && JSON.stringify(a.address) === JSON.stringify(b.address));
}

/**
 * Runs the reply mapping and resolves its recipient. The mapping sees the conversation (and
 * window) of the recipient it chooses: when it names an address whose conversation differs from
 * the patient's latest, it runs once more with that one. Undefined: the mapping dropped it.
 */
export async function prepareReply(
  mapping: CompiledMapping,
  message: CanonicalMessage,
  mappingNow: Date,
  now: Date,
  services: OutboundServices,
  scope: { sourceKinds: readonly string[]; conversationChannel: string | undefined; channelId: string },
): Promise<{ out: OutboundMessage; recipient: ResolvedRecipient } | undefined> {
  const patient = patientOf(message);
  let known = await lookupConversation(services.conversations, patient, scope.sourceKinds, scope.conversationChannel);
  for (let pass = 0; ; pass++) {
    const out = await renderOutbound(mapping, message, mappingNow, { conversation: conversationBinding(known), window_open: windowOpen(known?.lastInboundAt, now), channel: { id: scope.channelId } });
    if (out === undefined) return undefined;
    const recipient = await resolveRecipient(out, services.conversations, { patient, conversation: known }, scope.sourceKinds, scope.conversationChannel);
    if (pass > 0 || sameConversation(recipient.conversation, known)) return { out, recipient };
    known = recipient.conversation;
  }
}

// ---------------------------------------------------------------------------------------------
// Send at most once
// ---------------------------------------------------------------------------------------------

export type Reconcile =
  /** Wait for a status webhook that names our reference or the id (WhatsApp). */
  | { kind: 'await_status' }
  /**
   * Ask the provider whether it has the message (Twilio's Messages list, Rocket.Chat's
   * chat.getMessage by our _id). Not found: resend `immediately` when the provider refuses a
   * second message with the same id anyway (Rocket.Chat), else only once the intent is older
   * than reconcile_ms (a request still in flight has then been answered or dropped).
   */
  | { kind: 'lookup'; resendWhenNotFound: 'immediately' | 'after_reconcile_ms'; find(record: OutboundSendRecord, signal: AbortSignal): Promise<string | null> };

export interface SendOnceInput {
  services: OutboundServices;
  provider: OutboundProvider;
  deliveryId: string;
  channelId: string;
  destination: string;
  generation: number | undefined;
  message: OutboundMessage;
  reconcile: Reconcile;
  reconcileMs: number;
  signal: AbortSignal;
  /** Waits for rate limits; runs before the intent is recorded, so a wait is never mistaken for a send. */
  beforeIntent?(): Promise<void>;
  /** Builds the request with our reference (callback data, message id). */
  request(record: OutboundSendRecord): unknown;
  /** Writes the request; throws a SwitchboardError whose `details.send` says whether it may have been sent. */
  send(request: unknown, record: OutboundSendRecord): Promise<string>;
}

export interface SendOnceResult {
  providerMessageId: string;
  /** How this attempt ended: a new request, or an earlier one found accepted. */
  via: 'sent' | 'reconciled' | 'resent_after_lookup' | 'resent_by_operator';
  requests: number;
  callbackRef: string;
}

/** One attempt of a chat send, following the ledger protocol (module comment). */
export async function sendAtMostOnce(input: SendOnceInput): Promise<SendOnceResult> {
  const { ledger } = input.services;
  let record = await ledger.open({
    deliveryId: input.deliveryId,
    channelId: input.channelId,
    destination: input.destination,
    provider: input.provider,
    origin: input.message.origin,
    correlationId: input.message.correlation_id,
  });
  const done = (r: OutboundSendRecord, via: SendOnceResult['via']): SendOnceResult => ({ providerMessageId: r.providerMessageId ?? '', via, requests: r.requests, callbackRef: r.callbackRef });
  // Accepted by an earlier attempt (its answer, or a status webhook that named it since).
  if (record.state === 'accepted') return done(record, 'reconciled');
  let via: SendOnceResult['via'] = 'sent';
  if (record.state === 'intent') {
    if (record.resendGeneration !== null && record.resendGeneration === input.generation) {
      via = 'resent_by_operator';
    } else {
      const settled = await reconcileInterrupted(ledger, record, input);
      if (settled.state === 'accepted') return done(settled, 'reconciled');
      record = settled;
      via = 'resent_after_lookup';
    }
  }
  await input.beforeIntent?.();
  const request = input.request(record);
  await ledger.recordIntent(input.deliveryId, request);
  let id: string;
  try {
    id = await input.send(request, record);
  } catch (err) {
    if (err instanceof SwitchboardError && err.details['send'] === 'not_sent') await ledger.recordNotSent(input.deliveryId);
    throw err;
  }
  await ledger.recordAccepted(input.deliveryId, id);
  return { providerMessageId: id, via, requests: record.requests + 1, callbackRef: record.callbackRef };
}

/** How long one attempt waits in-process for a reconciling status before handing back to the queue. */
const RECONCILE_WAIT_PER_ATTEMPT_MS = 10_000;
const RECONCILE_POLL_MS = 250;

/**
 * An earlier request may have reached the provider. Returns the record once accepted, or (lookup
 * providers only) the record to send again when the provider says it never got it. Otherwise
 * throws OUTBOUND_SEND_RECONCILING (retry later) or, once `reconcileMs` passed since the intent,
 * OUTBOUND_SEND_UNCERTAIN (dead letter: the operator decides).
 */
async function reconcileInterrupted(ledger: OutboundLedger, record: OutboundSendRecord, input: SendOnceInput): Promise<OutboundSendRecord> {
  const intentAt = record.intentAt?.getTime() ?? 0;
  const deadline = intentAt + input.reconcileMs;
  const details = { requests: record.requests, reconcile: input.reconcile.kind, callback_ref: record.callbackRef, intent_at: record.intentAt?.toISOString() ?? null };
  if (input.reconcile.kind === 'lookup') {
    const found = await input.reconcile.find(record, input.signal);
    if (found !== null) {
      await ledger.recordAccepted(record.deliveryId, found);
      return { ...record, state: 'accepted', providerMessageId: found };
    }
    // Not (yet) at the provider: once the intent is older than reconcile_ms, a request still in
    // flight then would have been answered or timed out: the provider never took it.
    if (input.reconcile.resendWhenNotFound === 'immediately' || Date.now() >= deadline) return record;
    throw new SwitchboardError('OUTBOUND_SEND_RECONCILING', 'an earlier request may still reach the provider; looking again before any resend', {
      retryAfterMs: Math.max(1000, Math.min(deadline - Date.now(), 30_000)),
      details,
    });
  }
  // await_status: the status intake marks the send accepted when a webhook names it.
  const until = Math.min(deadline, Date.now() + RECONCILE_WAIT_PER_ATTEMPT_MS);
  for (;;) {
    const now = await ledger.get(record.deliveryId);
    if (now?.state === 'accepted') return now;
    if (Date.now() >= until || input.signal.aborted) break;
    await sleep(RECONCILE_POLL_MS, input.signal);
  }
  if (Date.now() >= deadline) {
    throw new SwitchboardError(
      'OUTBOUND_SEND_UNCERTAIN',
      `an earlier request may have been sent and no status confirmed it within ${Math.round(input.reconcileMs / 1000)} s; not resent (replay with resend_uncertain to send again)`,
      { details },
    );
  }
  throw new SwitchboardError('OUTBOUND_SEND_RECONCILING', 'an earlier request may have been sent; waiting for its status before any resend', {
    retryAfterMs: Math.max(500, Math.min(deadline - Date.now(), 10_000)),
    details,
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/** Errors that mean the request never left this machine (connection refused, DNS). */
const NOT_WRITTEN_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'UND_ERR_CONNECT_TIMEOUT', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_TLS_CERT_ALTNAME_INVALID']);

function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e instanceof Error; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (e as { errors?: unknown }).errors;
    if (Array.isArray(inner) && inner[0] instanceof Error) {
      const c = (inner[0] as { code?: unknown }).code;
      if (typeof c === 'string') return c;
    }
    e = e.cause;
  }
  return undefined;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  /** Parsed JSON, or the text when it is not JSON, or undefined when empty. */
  body: unknown;
}

/**
 * One HTTP request to a provider. A failure before the request was written is OUTBOUND_NETWORK
 * (`not_sent`); a timeout or a lost connection after it is OUTBOUND_SEND_INTERRUPTED (`unknown`).
 * Messages carry the provider's name and codes, never the URL (it can hold a phone number).
 */
export async function callProvider(provider: string, url: string, init: RequestInit, timeoutMs: number, outer: AbortSignal): Promise<HttpAnswer> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.any([outer, AbortSignal.timeout(timeoutMs)]) });
  } catch (err) {
    const code = causeCode(err);
    if (code !== undefined && NOT_WRITTEN_CODES.has(code)) {
      throw sendError('OUTBOUND_NETWORK', `${provider} could not be reached (${code}); nothing was sent`, 'not_sent', { details: { network_code: code } });
    }
    const name = err instanceof Error ? err.name : 'Error';
    throw sendError('OUTBOUND_SEND_INTERRUPTED', `${provider} did not answer (${name === 'TimeoutError' ? `timeout after ${timeoutMs} ms` : (code ?? name)}) after the request was written: it may have been sent`, 'unknown', {
      details: { network_code: code ?? name },
    });
  }
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    throw sendError('OUTBOUND_SEND_INTERRUPTED', `${provider} answered ${res.status} but the connection was lost reading its body: the send may have happened`, 'unknown', {
      details: { http_status: res.status, network_code: causeCode(err) ?? null },
    });
  }
  let body: unknown = undefined;
  if (text !== '') {
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      body = text;
    }
  }
  return { status: res.status, headers: res.headers, body };
}

// ---------------------------------------------------------------------------------------------
// Rate limits (in-process, per destination instance)
// ---------------------------------------------------------------------------------------------

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A token bucket: `perSecond` sends a second per key, bursts up to one second's worth. */
export class ThroughputLimiter {
  private readonly next = new Map<string, number>();
  constructor(private readonly perSecond: number) {}
  /** Reserves a slot; resolves when it is due. */
  async acquire(key: string, signal: AbortSignal): Promise<void> {
    const interval = 1000 / this.perSecond;
    const now = Date.now();
    // `next` is the earliest time of the next free slot, at most one second of burst behind now.
    const slot = Math.max(this.next.get(key) ?? 0, now - 1000 + interval);
    this.next.set(key, slot + interval);
    await sleep(slot - now, signal);
  }
}

/** At most one message per `intervalMs` to the same business-recipient pair (WhatsApp's pair rate). */
export class PairLimiter {
  private readonly next = new Map<string, number>();
  constructor(private readonly intervalMs: number) {}
  async acquire(key: string, signal: AbortSignal): Promise<void> {
    const now = Date.now();
    if (this.next.size > 10_000) for (const [k, t] of this.next) if (t < now) this.next.delete(k);
    const slot = Math.max(this.next.get(key) ?? 0, now);
    this.next.set(key, slot + this.intervalMs);
    await sleep(slot - now, signal);
  }
  /** The provider said the pair is limited: push the next slot out. */
  penalise(key: string, ms: number): void {
    this.next.set(key, Math.max(this.next.get(key) ?? 0, Date.now() + ms));
  }
}

/**
 * A provider's error text, fit for an error message: its first line, at most 200 characters,
 * phone numbers (runs of 7 or more digits, with +, spaces, dots, dashes or brackets between)
 * replaced by <number>, since providers echo the recipient's number (Twilio 21211: "The 'To'
 * number +1… is not a valid phone number.") and error messages reach traces and the console.
 */
export function providerErrorText(text: string | undefined): string {
  return (text ?? '').split('\n')[0]!.slice(0, 200).replace(/\+?\d(?:[\s().-]*\d){6,}/g, '<number>');
}

/**
 * The failed status recorded for the EHR when a chat delivery is dead-lettered (not for uncertain
 * sends). Its reason is the code's catalogue summary, never the error's message: that quotes the
 * provider's answer, which may echo the patient's number or the reply's text.
 */
export async function recordDeadLetter(deliveryId: string, failure: { code: string; message: string; details: Record<string, unknown> }, services: OutboundServices): Promise<void> {
  if (failure.code === 'OUTBOUND_SEND_UNCERTAIN') return; // neither sent nor failed: the operator decides
  const providerCode = failure.details['provider_code'];
  const summary = (errorCatalogue as Record<string, { summary: string } | undefined>)[failure.code]?.summary ?? 'The send failed.';
  await services.ledger.recordStatus(deliveryId, {
    status: 'failed',
    at: new Date().toISOString(),
    error: { code: failure.code, ...(providerCode !== undefined && providerCode !== null && { provider_code: String(providerCode) }), reason: summary },
  });
}

/** The ledger and conversations the pipeline gives each delivery attempt; a chat destination cannot run without them. */
export function outboundServicesOf(dctx: { outbound?: OutboundServices | undefined }, kind: string): OutboundServices {
  if (!dctx.outbound) throw new SwitchboardError('INTERNAL', `${kind} needs the outbound ledger; the pipeline gave none`);
  return dctx.outbound;
}

/**
 * `render` of a phone destination (no network I/O): the mapping's output and the number it would
 * go to, from the explicit address or the `conversation` binding the caller supplies.
 */
export async function renderToPhone(mapping: CompiledMapping, message: CanonicalMessage, now: Date, bindings: Record<string, unknown>, channelId: string): Promise<{ out: OutboundMessage; to: string } | undefined> {
  const conversation = bindings['conversation'] ?? null;
  const out = await renderOutbound(mapping, message, now, { ...bindings, conversation, channel: { id: channelId } });
  if (out === undefined) return undefined;
  const bound = z.object({ address: z.object({ kind: z.literal('phone'), phone: z.string() }) }).safeParse(conversation);
  const to = out.recipient.address?.kind === 'phone' ? out.recipient.address.phone : bound.success ? bound.data.address.phone : '';
  return { out, to };
}
