/**
 * Passes recorded outbound statuses to the OutboundStatusListener (the EHR write-back), in order
 * per message, one at a time per message, at least once. Runs when told there is something new
 * (an ingest with statuses, a chat delivery attempt) and on a timer; one run at a time per
 * process, and one process at a time (a PostgreSQL advisory lock), so order holds across workers.
 * A listener error stops that message's statuses (later ones wait) and is retried with backoff.
 */
import type { Pool } from 'pg';
import { classify } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { OutboundStatusListener } from '../core/outbound.js';
import { withClient } from '../store/checked-out-client.js';
import type { OutboundStore } from '../store/outbound-store.js';

const LOCK_KEY = 0x5b_0a_2d_50; // "switchboard outbound status dispatch"

export interface OutboundStatusDispatchOptions {
  pool: Pool;
  store: OutboundStore;
  listener: OutboundStatusListener;
  logger: Logger;
  /** Periodic run, for statuses another process recorded. Default 2000 ms. */
  intervalMs?: number;
}

export class OutboundStatusDispatch {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  /** Per delivery: failures in a row and when to try again. */
  private readonly backoff = new Map<string, { failures: number; until: number }>();
  private stopped = false;

  constructor(private readonly o: OutboundStatusDispatchOptions) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), this.o.intervalMs ?? 2000);
    this.timer.unref();
    this.kick();
  }

  /** Something new may be there: run now (or right after the current run). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.runOnce()
      .catch((err: unknown) => this.o.logger.warn({ code: classify(err).code, err: { message: classify(err).message } }, 'outbound status dispatch failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Waits for the current run (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.idle();
  }

  private async runOnce(): Promise<void> {
    await withClient(this.o.pool, async (lock) => {
      const got = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LOCK_KEY]);
      if (!got.rows[0]?.ok) return;
      try {
        for (let round = 0; round < 50 && !this.stopped; round++) {
          const batch = await this.o.store.statusesToNotify(200);
          if (batch.length === 0) return;
          let progressed = false;
          const blocked = new Set<string>();
          for (const item of batch) {
            const id = item.event.deliveryId;
            if (blocked.has(id)) continue;
            const wait = this.backoff.get(id);
            if (wait && wait.until > Date.now()) {
              blocked.add(id);
              continue;
            }
            try {
              await this.o.listener.onStatus(item.event);
              await this.o.store.markNotified(item.id);
              this.backoff.delete(id);
              progressed = true;
            } catch (err) {
              blocked.add(id);
              const failures = (wait?.failures ?? 0) + 1;
              this.backoff.set(id, { failures, until: Date.now() + Math.min(60_000, 500 * 2 ** (failures - 1)) });
              this.o.logger.warn({ deliveryId: id, seq: item.event.seq, failures, code: classify(err).code }, 'outbound status listener failed; retried later, later statuses wait');
            }
          }
          if (!progressed) return;
        }
      } finally {
        await lock.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
      }
    });
  }
}

/** The default listener: statuses are recorded in the store (outbound_statuses) and nothing else. */
export const recordOnlyStatusListener: OutboundStatusListener = {
  async onStatus(): Promise<void> {},
};
