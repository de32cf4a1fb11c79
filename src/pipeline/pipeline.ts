/**
 * Wires the plain pipeline functions to queues: the ingest worker, one worker per destination
 * (kept in step with the live channels on hot reload), per-destination circuit breakers,
 * enqueue helpers, and the sweeper that re-enqueues work a crash left behind (the outbox).
 */
import { DelayedError, type Job, type JobsOptions } from 'bullmq';
import { classify } from '../core/errors.js';
import { GroupCommit, type GroupCommitOptions, type MemberResult } from '../core/group-commit.js';
import type { Logger } from '../core/logger.js';
import type { DestinationInstance } from '../connectors/types.js';
import type { Metrics } from '../core/metrics.js';
import type { MediaFetcherDeps } from '../media/media-fetcher.js';
import { backoffJobOption, rateLimitError, type QueueBackend, type QueueHandle, type WorkerHandle } from '../queue/queue-backend.js';
import type { MessageStore, PendingDelivery } from '../store/message-store.js';
import type { OutboundStore } from '../store/outbound-store.js';
import { backoffDelay } from './backoff.js';
import { CircuitBreaker, type CircuitSnapshot } from './circuit-breaker.js';
import { RetryRequested, deliverOnce } from './deliver-message.js';
import { ingestEvent, logIngested, planIngest, type PlannedIngest } from './ingest-event.js';
import { INGEST_QUEUE, deliveryJobId, deliveryQueueName, type DeliveryJob, type IngestJob, type RuntimeChannel } from './runtime-channel.js';
import { isStoreUnavailable } from './store-errors.js';

export interface PipelineOptions {
  backend: QueueBackend;
  store: MessageStore;
  logger: Logger;
  /** The live channels (hot reload replaces them). */
  channels: () => readonly RuntimeChannel[];
  ingestConcurrency?: number;
  /** Worker job lock (see WorkerSettings.lockDurationMs). */
  jobLockMs: number;
  /** Age after which a stored-but-not-ingested event is re-enqueued by the sweeper. */
  outboxGraceMs?: number;
  sweepIntervalMs?: number;
  metrics?: Metrics | undefined;
  /** Where downloaded media is stored and how it is addressed (channels with a `media:` policy). */
  media?: MediaFetcherDeps | undefined;
  /** The outbound side of the store: chat destinations' ledger and conversations, Patient links. */
  outbound?: OutboundStore | undefined;
  /** Told after each delivery attempt of a chat destination and each ingest with statuses (status dispatch). */
  onOutboundActivity?: () => void;
  /** Group commit at the webhook edge (defaults: EDGE_GROUP_COMMIT). */
  edgeGroupCommit?: GroupCommitOptions | undefined;
}

/**
 * Concurrent webhooks share one transaction: at most 64 events, collected for at most 2 ms, at
 * most 4 transactions at once (the store's pool has 20 connections, the workers need theirs).
 */
export const EDGE_GROUP_COMMIT: GroupCommitOptions = { maxBatch: 64, maxWaitMs: 2, maxInFlight: 4 };

/** Members of a failed batch are tried again alone, this many at a time. */
const EDGE_RETRY_CONCURRENCY = 4;

interface EdgeEvent {
  channel: RuntimeChannel;
  e: { receivedAt: Date; contentType: string | undefined; raw: Buffer };
  planned: PlannedIngest;
}

const STORE_DOWN_DELAY_MS = 2000;
const ORDERING_WAIT_MS = 500;
const INGEST_RETRY = { attempts: 20, initial_delay_ms: 500, max_delay_ms: 60_000, max_age_ms: 7 * 86_400_000 };

interface DestinationWorker {
  worker: WorkerHandle;
  concurrency: number;
  breaker: CircuitBreaker;
}

/** Stored, but the queue refused the jobs: the outbox sweeper enqueues them later. */
export class EnqueueFailed extends Error {
  constructor(
    readonly eventId: string,
    override readonly cause: unknown,
  ) {
    super(`event ${eventId} stored but not enqueued: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'EnqueueFailed';
  }
}

export interface DestinationStatus {
  channel: string;
  destination: string;
  paused: boolean;
  circuit: CircuitSnapshot | null;
  counts: Record<string, number>;
}

export class Pipeline {
  private readonly ingestQueue: QueueHandle<IngestJob>;
  private readonly deliveryQueues = new Map<string, QueueHandle<DeliveryJob>>();
  private ingestWorker: WorkerHandle | undefined;
  private readonly destinationWorkers = new Map<string, DestinationWorker>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private running = false;
  private readonly edge: GroupCommit<EdgeEvent, string>;

  constructor(private readonly o: PipelineOptions) {
    this.ingestQueue = o.backend.queue<IngestJob>(INGEST_QUEUE);
    this.edge = new GroupCommit(o.edgeGroupCommit ?? EDGE_GROUP_COMMIT, (batch) => this.commitEdge(batch));
  }

  private channel(id: string): RuntimeChannel | undefined {
    return this.o.channels().find((c) => c.id === id);
  }

  private destination(channelId: string, name: string): DestinationInstance | undefined {
    return this.channel(channelId)?.destinations.find((d) => d.name === name);
  }

  private deliveryQueue(channelId: string, destination: string): QueueHandle<DeliveryJob> {
    const name = deliveryQueueName(channelId, destination);
    let q = this.deliveryQueues.get(name);
    if (!q) {
      q = this.o.backend.queue<DeliveryJob>(name);
      this.deliveryQueues.set(name, q);
    }
    return q;
  }

  /** Job id = event id: re-enqueueing a stored event (sweeper, retry) never duplicates the job. */
  async enqueueIngest(eventId: string, opts: { revive?: boolean } = {}): Promise<void> {
    if (opts.revive && (await this.ingestQueue.removeIfFailed(eventId))) {
      this.o.logger.warn({ eventId }, 'ingest job had been failed by the queue (stalled); revived from the outbox');
    }
    await this.ingestQueue.add('ingest', { eventId }, { jobId: eventId, attempts: INGEST_RETRY.attempts, backoff: backoffJobOption() });
  }

  /**
   * Enqueues pending deliveries (idempotent: the job id is the delivery and its generation).
   * `revive`: the store says these are still pending, so a job BullMQ has failed for them (its
   * worker died repeatedly) is removed and added again instead of blocking them forever.
   */
  async enqueueDeliveries(channelId: string, pending: readonly PendingDelivery[], opts: { revive?: boolean } = {}): Promise<void> {
    const byQueue = new Map<QueueHandle<DeliveryJob>, { name: string; data: DeliveryJob; opts: JobsOptions }[]>();
    for (const p of pending) {
      const dest = this.destination(channelId, p.destination);
      if (!dest) {
        this.o.logger.warn({ channel: channelId, destination: p.destination, deliveryId: p.deliveryId }, 'delivery for a destination that is not loaded; left pending');
        continue;
      }
      const queue = this.deliveryQueue(channelId, p.destination);
      if (opts.revive && (await queue.removeIfFailed(deliveryJobId(p.deliveryId, p.generation)))) {
        this.o.logger.warn({ channel: channelId, destination: p.destination, deliveryId: p.deliveryId }, 'delivery job had been failed by the queue (stalled); revived from the store');
      }
      const jobs = byQueue.get(queue) ?? [];
      jobs.push({
        name: 'deliver',
        data: { deliveryId: p.deliveryId, generation: p.generation, messageId: p.messageId },
        // Attempts are enforced by the pipeline (attempt count and max age); BullMQ's count is a backstop.
        opts: { jobId: deliveryJobId(p.deliveryId, p.generation), attempts: dest.retry.attempts + 1, backoff: backoffJobOption() },
      });
      byQueue.set(queue, jobs);
    }
    // One round trip per destination queue, whatever the number of deliveries.
    await Promise.all([...byQueue].map(([queue, jobs]) => queue.addBulk(jobs)));
  }

  /**
   * The webhook edge: parses, de-duplicates and routes the raw event, stores the event, its
   * messages and their deliveries in one transaction, then enqueues the deliveries. Resolves once
   * all of it is committed and enqueued. A store failure rejects with the store's error (nothing
   * was kept); an enqueue failure with `EnqueueFailed` (stored; the sweeper enqueues it later).
   * A parser that throws, against its contract, leaves the event to the ingest queue instead.
   */
  async acceptEvent(channel: RuntimeChannel, e: { receivedAt: Date; contentType: string | undefined; raw: Buffer }): Promise<string> {
    let planned: PlannedIngest | undefined;
    try {
      planned = await planIngest(this.o.logger, channel, e.raw, e.receivedAt, undefined);
    } catch (err) {
      this.o.logger.warn({ channel: channel.id, code: classify(err).code }, 'parse at the edge failed; the event goes through the ingest queue');
    }
    if (!planned) {
      const eventId = await this.o.store.recordInboundEvent({ channelId: channel.id, ...e, retention: channel.retention });
      await this.enqueueIngest(eventId).catch((err: unknown) => {
        throw new EnqueueFailed(eventId, err);
      });
      return eventId;
    }
    return this.edge.submit({ channel, e, planned });
  }

  /**
   * One group commit at the edge: the batch's events in one transaction, then their deliveries
   * enqueued with one addBulk per destination queue. Should the transaction fail, each event is
   * tried again alone, so that one bad event fails only its own request.
   */
  private async commitEdge(batch: readonly EdgeEvent[]): Promise<MemberResult<string>[]> {
    let stored: { eventId: string; pending: PendingDelivery[] }[];
    try {
      stored = await this.o.store.recordInboundIngestedMany(batch.map((b) => ({ event: { channelId: b.channel.id, ...b.e, retention: b.channel.retention }, plan: b.planned.plan })));
    } catch (err) {
      if (batch.length === 1) return [{ ok: false, error: err }];
      this.o.logger.warn({ events: batch.length, code: classify(err).code }, 'group commit at the edge failed; its events are stored one by one');
      const results: MemberResult<string>[] = new Array(batch.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(EDGE_RETRY_CONCURRENCY, batch.length) }, async () => {
          for (let i = next++; i < batch.length; i = next++) results[i] = (await this.commitEdge([batch[i]!]))[0]!;
        }),
      );
      return results;
    }
    const byChannel = new Map<string, number[]>();
    for (const [i, b] of batch.entries()) {
      logIngested(this.o.logger, stored[i]!.eventId, b.channel.id, b.planned, stored[i]!.pending.length);
      this.countIngested(b.channel.id, b.planned);
      if (b.planned.statuses > 0) this.o.onOutboundActivity?.();
      byChannel.set(b.channel.id, [...(byChannel.get(b.channel.id) ?? []), i]);
    }
    const results: MemberResult<string>[] = stored.map((s) => ({ ok: true, value: s.eventId }));
    await Promise.all(
      [...byChannel].map(async ([channelId, members]) => {
        try {
          await this.enqueueDeliveries(channelId, members.flatMap((i) => stored[i]!.pending));
        } catch (err) {
          for (const i of members) results[i] = { ok: false, error: new EnqueueFailed(stored[i]!.eventId, err) };
        }
      }),
    );
    return results;
  }

  private countIngested(channelId: string, r: { messages: number; filtered: number; statuses: number }): void {
    const m = this.o.metrics?.ingested;
    m?.inc({ channel: channelId, outcome: 'routed' }, r.messages - r.filtered);
    m?.inc({ channel: channelId, outcome: 'filtered' }, r.filtered);
    m?.inc({ channel: channelId, outcome: 'status' }, r.statuses);
  }

  /** Starts the ingest worker and one worker per destination of every loaded channel. */
  startWorkers(): void {
    const { backend, store, logger } = this.o;
    this.running = true;
    this.ingestWorker = backend.worker<IngestJob>(
      INGEST_QUEUE,
      async (job, token) => {
        try {
          const res = await ingestEvent({ store, logger, channel: (id) => this.channel(id) }, job.data.eventId);
          if (res) {
            await this.enqueueDeliveries(res.channelId, res.pending);
            this.countIngested(res.channelId, res);
            if (res.statuses > 0) this.o.onOutboundActivity?.();
          }
        } catch (err) {
          await this.deferIfStoreDown(job, token, err);
          throw err;
        }
      },
      {
        concurrency: this.o.ingestConcurrency ?? 8,
        lockDurationMs: this.o.jobLockMs,
        backoff: (attemptsMade) => backoffDelay(INGEST_RETRY, attemptsMade, undefined),
        onFailed: (jobId, err) => logger.warn({ eventId: jobId, err: { message: err.message } }, 'ingest failed'),
      },
    );
    void this.syncWorkers();
  }

  /**
   * Brings destination workers in line with the live channels: starts workers for new
   * destinations, restarts those whose concurrency changed, closes those removed (their queued
   * jobs wait until the destination comes back). In-flight jobs finish on the version they began.
   */
  async syncWorkers(): Promise<void> {
    if (!this.running) return;
    const wanted = new Map<string, { channel: RuntimeChannel; dest: DestinationInstance }>();
    for (const channel of this.o.channels()) for (const dest of channel.destinations) wanted.set(deliveryQueueName(channel.id, dest.name), { channel, dest });
    for (const [name, w] of this.destinationWorkers) {
      const next = wanted.get(name);
      if (!next || next.dest.concurrency !== w.concurrency) {
        this.destinationWorkers.delete(name);
        await w.worker.close();
      }
    }
    for (const [name, { channel, dest }] of wanted) {
      if (!this.destinationWorkers.has(name)) this.destinationWorkers.set(name, this.startDestinationWorker(channel.id, dest));
    }
  }

  private startDestinationWorker(channelId: string, initial: DestinationInstance): DestinationWorker {
    const { backend, store, logger } = this.o;
    const name = deliveryQueueName(channelId, initial.name);
    const breaker = new CircuitBreaker(initial.circuitBreaker);
    let handle: WorkerHandle | undefined;
    const worker = backend.worker<DeliveryJob>(
      name,
      async (job, token, signal) => {
        // The live version at the start of the job; a reload mid-job does not change it.
        const dest = this.destination(channelId, initial.name) ?? initial;
        const wait = breaker.admit();
        if (wait > 0 && handle) {
          // Circuit open: hold the whole queue (every worker) without spending this job's attempt.
          await handle.rateLimit(wait);
          throw rateLimitError();
        }
        let report;
        try {
          const policy = this.channel(channelId)?.media;
          const media = policy && this.o.media ? { policy, fetcher: this.o.media } : undefined;
          report = await deliverOnce({ store, destination: dest, channelId, logger, media, outbound: this.o.outbound }, job.data, {
            attemptsMade: job.attemptsMade,
            signal: signal ?? new AbortController().signal,
          });
        } catch (err) {
          if (dest.onDeadLettered) this.o.onOutboundActivity?.();
          if (err instanceof RetryRequested) {
            this.o.metrics?.deliveryAttempts.inc({ channel: channelId, destination: dest.name, result: 'retry', code: err.classification.code });
            if (err.classification.pauseDestination && token !== undefined) {
              await this.pauseForOperator(channelId, dest.name, err.classification.code, err.classification.message);
              await job.moveToDelayed(Date.now() + 1000, token);
              throw new DelayedError();
            }
            this.tripIfNeeded(breaker, channelId, dest.name, err.classification.code);
          } else {
            await this.deferIfStoreDown(job, token, err);
          }
          throw err;
        }
        if (dest.onDeadLettered) this.o.onOutboundActivity?.();
        if (report.result === 'waiting' && token !== undefined) {
          await job.moveToDelayed(Date.now() + Math.max(report.waitMs ?? ORDERING_WAIT_MS, 50), token);
          throw new DelayedError();
        }
        if (report.result === 'delivered' || report.result === 'dropped' || report.result === 'dead_lettered') {
          this.o.metrics?.deliveryAttempts.inc({ channel: channelId, destination: dest.name, result: report.result, code: report.failure?.code ?? '' });
        }
        if (report.result === 'delivered' && report.receivedAt) {
          this.o.metrics?.deliveryLatency.observe({ channel: channelId, destination: dest.name }, (Date.now() - Date.parse(report.receivedAt)) / 1000);
        }
        if (report.result === 'delivered' || report.result === 'dropped') breaker.onSuccess();
        else if (report.failure && report.failure.disposition === 'retryable') this.tripIfNeeded(breaker, channelId, dest.name, report.failure.code);
        return report.result;
      },
      {
        concurrency: initial.concurrency,
        lockDurationMs: this.o.jobLockMs,
        backoff: (attemptsMade, err) => {
          const dest = this.destination(channelId, initial.name) ?? initial;
          return backoffDelay(dest.retry, attemptsMade, err instanceof RetryRequested ? err.classification.retryAfterMs : undefined);
        },
      },
    );
    handle = worker;
    return { worker, concurrency: initial.concurrency, breaker };
  }

  private tripIfNeeded(breaker: CircuitBreaker, channelId: string, destination: string, code: string): void {
    const pause = breaker.onFailure();
    if (pause !== undefined) {
      this.o.logger.error(
        { alert: 'circuit_open', channel: channelId, destination, code, pauseMs: pause, circuit: breaker.snapshot() },
        'circuit opened: the destination keeps failing; deliveries paused, then one probe',
      );
    }
  }

  /**
   * When the store is unreachable, park the job without spending an attempt: the message is not
   * at fault, and burning its attempts would dead-letter good messages during an outage.
   */
  private async deferIfStoreDown(job: Job, token: string | undefined, err: unknown): Promise<void> {
    if (!isStoreUnavailable(err) || token === undefined) return;
    this.o.logger.warn({ jobId: job.id, queue: job.queueName }, 'store unavailable; job deferred without spending an attempt');
    await job.moveToDelayed(Date.now() + STORE_DOWN_DELAY_MS, token);
    throw new DelayedError();
  }

  /** Pauses a destination's queue for every worker process; its messages stay pending. */
  /** `by`: who paused it (a principal's label); unset when the gateway paused it itself. */
  async pauseForOperator(channelId: string, destination: string, code: string, reason: string, by?: string): Promise<void> {
    await this.deliveryQueue(channelId, destination).pause();
    this.o.logger.error(
      { alert: 'destination_paused', channel: channelId, destination, code, reason, by: by ?? 'system:pipeline' },
      'destination paused: it cannot take messages until an operator resumes it (POST /admin/destinations/:channel/:destination/resume)',
    );
  }

  async resumeDestination(channelId: string, destination: string, by?: string): Promise<void> {
    await this.deliveryQueue(channelId, destination).resume();
    this.destinationWorkers.get(deliveryQueueName(channelId, destination))?.breaker.onSuccess();
    this.o.logger.info({ channel: channelId, destination, ...(by !== undefined && { by }) }, 'destination resumed');
  }

  /** Every destination with its pause state, this process's circuit and its queue counts. */
  async destinations(): Promise<DestinationStatus[]> {
    const out: DestinationStatus[] = [];
    for (const c of this.o.channels()) {
      for (const d of c.destinations) {
        const name = deliveryQueueName(c.id, d.name);
        const q = this.deliveryQueue(c.id, d.name);
        out.push({
          channel: c.id,
          destination: d.name,
          paused: await q.isPaused(),
          circuit: this.destinationWorkers.get(name)?.breaker.snapshot() ?? null,
          counts: await q.counts(),
        });
      }
    }
    return out;
  }

  workersRunning(): boolean {
    return (this.ingestWorker?.isRunning() ?? false) && [...this.destinationWorkers.values()].every((w) => w.worker.isRunning());
  }

  /** Re-enqueues events and deliveries a crash left between "stored" and "enqueued". */
  async sweep(): Promise<{ events: number; deliveries: number }> {
    const grace = this.o.outboxGraceMs ?? 30_000;
    const events = await this.o.store.pendingEvents(grace);
    for (const id of events) await this.enqueueIngest(id, { revive: true });
    const deliveries = await this.o.store.pendingDeliveries(grace);
    const byChannel = new Map<string, PendingDelivery[]>();
    for (const d of deliveries) byChannel.set(d.channelId, [...(byChannel.get(d.channelId) ?? []), d]);
    for (const [channelId, list] of byChannel) await this.enqueueDeliveries(channelId, list, { revive: true });
    if (events.length + deliveries.length > 0) {
      this.o.logger.info({ events: events.length, deliveries: deliveries.length }, 'outbox sweep re-enqueued work');
    }
    return { events: events.length, deliveries: deliveries.length };
  }

  startSweeper(): void {
    const every = this.o.sweepIntervalMs ?? 60_000;
    this.sweepTimer = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = this.sweep()
        .then(() => undefined)
        .catch((err: unknown) => this.o.logger.warn({ code: classify(err).code, err: { message: classify(err).message } }, 'outbox sweep failed'))
        .finally(() => {
          this.sweeping = undefined;
        });
    }, every);
    this.sweepTimer.unref();
  }

  async counts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = { [INGEST_QUEUE]: await this.ingestQueue.counts() };
    for (const [name, q] of this.deliveryQueues) out[name] = await q.counts();
    return out;
  }

  /** Stops taking work and waits for in-flight jobs, up to `deadlineMs`; then forces. */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.running = false;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.sweeping;
    const workers = [...(this.ingestWorker ? [this.ingestWorker] : []), ...[...this.destinationWorkers.values()].map((w) => w.worker)];
    const graceful = Promise.all(workers.map((w) => w.close()));
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), deadlineMs).unref());
    if ((await Promise.race([graceful.then(() => 'ok' as const), timer])) === 'timeout') {
      this.o.logger.warn('workers did not drain in time; closing forcibly (their jobs will be recovered as stalled)');
      await Promise.allSettled(workers.map((w) => w.close(true)));
    }
    await Promise.allSettled([this.ingestQueue.close(), ...[...this.deliveryQueues.values()].map((q) => q.close())]);
  }
}
