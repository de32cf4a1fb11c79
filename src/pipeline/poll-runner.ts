/**
 * Runs the poll loop of every pull source. Only one process polls a channel at a time (a
 * PostgreSQL advisory lock per channel), so several worker processes never race on a cursor.
 */
import type { Pool } from 'pg';
import { withClient } from '../store/checked-out-client.js';
import type { Logger } from '../core/logger.js';
import type { MessageStore } from '../store/message-store.js';
import type { RuntimeChannel } from './runtime-channel.js';

export interface PollRunnerDeps {
  pool: Pool;
  store: MessageStore;
  logger: Logger;
  enqueueIngest(eventId: string): Promise<void>;
  /** Where the gateway's webhooks are reached (PUBLIC_BASE_URL, or the listening address once known). */
  publicBaseUrl?: () => string | undefined;
}

export class PollRunner {
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];

  constructor(private readonly deps: PollRunnerDeps) {}

  start(channels: readonly RuntimeChannel[]): void {
    for (const c of channels) if (c.source.poll) this.loops.push(this.run(c));
  }

  private async run(channel: RuntimeChannel): Promise<void> {
    const { logger } = this.deps;
    const log = logger.child({ channel: channel.id, component: 'poller' });
    const lockKey = `switchboard:poll:${channel.id}`;
    while (!this.abort.signal.aborted) {
      // The advisory lock lives on one connection: if that connection is lost, so is the lock,
      // and this loop stops polling until it holds the lock again.
      const lost = new AbortController();
      const signal = AbortSignal.any([this.abort.signal, lost.signal]);
      try {
        const polled = await withClient(
          this.deps.pool,
          async (client) => {
            const got = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [lockKey]);
            if (!got.rows[0]?.ok) return false;
            try {
              log.info('polling started');
              await channel.source.poll!({
                signal,
                logger: log,
                cursor: this.deps.store.cursorStore(channel.id),
                publicBaseUrl: () => this.deps.publicBaseUrl?.(),
                emit: async (raw, contentType) => {
                  const eventId = await this.deps.store.recordInboundEvent({ channelId: channel.id, receivedAt: new Date(), contentType, raw, retention: channel.retention });
                  // Durable now; if enqueueing fails the outbox sweeper picks the event up.
                  await this.deps.enqueueIngest(eventId).catch((err: unknown) => log.warn({ eventId, err: { message: (err as Error).message } }, 'enqueue failed; event left in the outbox'));
                },
              });
            } finally {
              await client.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey]).catch(() => undefined);
            }
            return true;
          },
          () => lost.abort(),
        );
        if (!polled) await sleep(5000, this.abort.signal);
      } catch (err) {
        if (!this.abort.signal.aborted) log.warn({ err: { message: (err as Error).message } }, 'poll loop failed; restarting');
        await sleep(2000, this.abort.signal);
      }
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
