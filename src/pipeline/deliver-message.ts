/**
 * Delivery: one attempt at one delivery. Success, a drop by the mapping, or a permanent failure
 * ends it; a retryable failure asks the queue for another attempt, unless attempts are exhausted,
 * in which case the delivery is dead-lettered with its cause. The store is the dead-letter queue:
 * entries are listed, inspected, replayed and discarded through the admin API.
 */
import { SwitchboardError, classify, type Classification } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DestinationInstance } from '../connectors/types.js';
import { resolveMessageMedia, withFreshMediaLinks, type MediaFetcherDeps } from '../media/media-fetcher.js';
import type { MediaPolicy } from '../media/media-policy.js';
import type { MessageStore } from '../store/message-store.js';
import type { OutboundStore } from '../store/outbound-store.js';
import type { DeliveryJob } from './runtime-channel.js';

export interface DeliverDeps {
  store: MessageStore;
  destination: DestinationInstance;
  channelId: string;
  logger: Logger;
  /** Media download before delivery, when the channel has a media policy. */
  media?: { policy: MediaPolicy; fetcher: MediaFetcherDeps } | undefined;
  /** The outbound side of the store (ledger, conversations), for chat destinations and Patient links. */
  outbound?: OutboundStore | undefined;
}

/** `waiting`: per-conversation ordering holds this delivery until an earlier one settles. */
export type AttemptResult = 'delivered' | 'dropped' | 'dead_lettered' | 'skipped' | 'waiting';

/** Thrown to ask the queue for a retry after backoff. */
export class RetryRequested extends Error {
  readonly classification: Classification;
  constructor(c: Classification) {
    super(`${c.code}: ${c.message}`);
    this.name = 'RetryRequested';
    this.classification = c;
  }
}

export interface AttemptReport {
  result: AttemptResult;
  /** For `waiting`: how long to wait before trying again, when known. */
  waitMs?: number;
  /** When the message was received (for latency), once it was loaded. */
  receivedAt?: string;
  /** The failure, when the attempt failed (also for dead-lettered ones). */
  failure?: Classification;
}

export async function deliverOnce(
  deps: DeliverDeps,
  job: DeliveryJob,
  attempt: { attemptsMade: number; signal: AbortSignal },
): Promise<AttemptReport> {
  const log = deps.logger.child({ correlationId: job.messageId, deliveryId: job.deliveryId, channel: deps.channelId, destination: deps.destination.name });
  const loaded = await deps.store.loadPendingDelivery(job.deliveryId);
  if (!loaded) return { result: 'skipped' }; // already delivered, dead-lettered or discarded: a stale or duplicate job
  if (loaded.delivery.generation !== job.generation) return { result: 'skipped' };
  if (deps.destination.ordering === 'per_conversation') {
    // Hold a young message for the reorder window, then while an earlier one is still pending.
    const age = Date.now() - Date.parse(loaded.message.received_at);
    if (age < deps.destination.orderingWindowMs) return { result: 'waiting', waitMs: deps.destination.orderingWindowMs - age };
    if (await deps.store.hasEarlierPending(job.deliveryId)) return { result: 'waiting' };
  }
  const attemptNo = attempt.attemptsMade + 1;
  const startedAt = new Date();
  const mappingVersion = deps.destination.mapping.version;
  try {
    let message = loaded.message;
    if (deps.media) {
      // Download once, store durably, and keep the enriched message so that retries and the
      // other destinations do not download again. Failures retry and dead-letter like delivery.
      const enriched = await resolveMessageMedia(message, deps.media.policy, deps.media.fetcher, attempt.signal);
      if (enriched !== message) {
        await deps.store.updateCanonical(loaded.delivery.messageId, enriched);
        message = enriched;
      }
      // Signed links expire: each attempt (a retry, a replay weeks later) gets links valid from now.
      message = withFreshMediaLinks(message, deps.media.fetcher);
    }
    const outcome = await deps.destination.deliver(message, {
      deliveryId: job.deliveryId,
      messageId: job.messageId,
      attempt: attemptNo,
      signal: attempt.signal,
      logger: log,
      now: new Date(loaded.message.received_at),
      generation: job.generation,
      outbound: deps.outbound && { ledger: deps.outbound, conversations: deps.outbound },
    });
    const result = outcome.detail['dropped'] === true ? 'dropped' : 'delivered';
    if (outcome.patient !== undefined && deps.outbound) await deps.outbound.linkPatient(loaded.delivery.messageId, outcome.patient);
    await deps.store.recordAttempt({ attemptId: loaded.attemptId, deliveryId: job.deliveryId, generation: job.generation, attempt: attemptNo, startedAt, result, mappingVersion, detail: outcome.detail });
    log.info({ attempt: attemptNo, result, ...outcome.detail }, 'delivery done');
    return { result, receivedAt: loaded.message.received_at };
  } catch (err) {
    const c = classify(err);
    const response = err instanceof SwitchboardError ? err.details['operation_outcome'] : undefined;
    const detail = Object.fromEntries(Object.entries(c.details).filter(([k]) => k !== 'operation_outcome'));
    // A pause is about the destination, not the message: it never dead-letters the message.
    const age = Date.now() - Date.parse(loaded.message.received_at);
    const exhausted = !c.pauseDestination && (attemptNo >= deps.destination.retry.attempts || age > deps.destination.retry.max_age_ms);
    const final = !c.pauseDestination && (c.disposition === 'permanent' || exhausted);
    await deps.store.recordAttempt({
      attemptId: loaded.attemptId,
      deliveryId: job.deliveryId,
      generation: job.generation,
      attempt: attemptNo,
      startedAt,
      result: final ? 'dead_lettered' : 'retry',
      mappingVersion,
      detail,
      error: c,
      response,
      rejected: err instanceof SwitchboardError ? err.rejectedOutput : undefined,
    });
    if (final) {
      log.warn({ attempt: attemptNo, code: c.code, disposition: c.disposition, exhausted, ageMs: age }, 'delivery dead-lettered');
      if (deps.destination.onDeadLettered && deps.outbound) {
        await deps.destination.onDeadLettered(job.deliveryId, c, { ledger: deps.outbound, conversations: deps.outbound }).catch((hookErr: unknown) => {
          log.warn({ code: classify(hookErr).code }, 'recording the dead letter as an outbound status failed');
        });
      }
      return { result: 'dead_lettered', failure: c, receivedAt: loaded.message.received_at };
    }
    log.info({ attempt: attemptNo, code: c.code, retryAfterMs: c.retryAfterMs }, 'delivery failed; will retry');
    throw new RetryRequested(c);
  }
}
