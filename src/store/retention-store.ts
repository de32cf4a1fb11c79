/**
 * Retention of the message store by dropping whole partitions, never row by row. Every table is
 * range-partitioned by `(carried, prune_after)` into weekly partitions: `<table>_wYYYYMMDD` (the
 * Monday that starts the week) for live rows, `<table>_mYYYYMMDD` for rows carried there without
 * their payloads (the delivery path reads live rows only); a week's partitions go once the week is
 * over. Before they go, in the same
 * transaction as the drop (and once before it, without the lock, so that transaction stays short):
 *
 * - what is still needed is held back: a message with a pending or dead-lettered delivery, with
 *   its event, deliveries, attempts, operator actions and media references, and an event not yet
 *   ingested, move to a later week with their payloads (`HOLD_DAYS` from today); they are looked at
 *   again when that week is over;
 * - rows whose metadata is kept longer than their payloads (`keep_until` past the week) are
 *   carried to the week of `keep_until` with their payload columns emptied.
 *
 * Media files a dropped week referred to and no other row does are deleted after the drop commits
 * (through `media_deletions`, so a crash in between leaves them to the next run).
 */
import type { Pool, PoolClient } from 'pg';
import type { AuditRecorder, AuditResource } from '../core/audit.js';
import type { Logger } from '../core/logger.js';
import { systemPrincipal, type Principal } from '../core/principal.js';
import { addDays, retentionWeek, utcDay } from '../core/retention.js';
import { withClient, withTransaction } from './checked-out-client.js';

/** Tables in the order their partitions are handled; each shares the weekly partitioning. */
export const retentionTables = ['delivery_attempts', 'delivery_actions', 'deliveries', 'message_media', 'messages', 'message_statuses', 'inbound_events'] as const;
export type RetentionTable = (typeof retentionTables)[number];

/** Payload columns emptied when a row is carried past its payload retention. */
const payloadColumns: Record<RetentionTable, readonly string[]> = {
  inbound_events: ['raw', 'error'],
  messages: ['canonical'],
  message_statuses: ['detail'],
  deliveries: ['last_error', 'outcome'],
  delivery_attempts: ['response', 'error', 'detail', 'rejected'],
  delivery_actions: ['reason'],
  // Nothing but a payload reference: it goes with the payloads, never carried.
  message_media: [],
};

/** How far ahead a held-back row moves: it is looked at again when that week is over. */
export const HOLD_DAYS = 7;

export const PRUNE_LOCK = 0x5b_0a_2d_12; // "switchboard store prune": one pruning run at a time

export interface PartitionInfo {
  table: RetentionTable;
  name: string;
  rows: number;
  bytes: number;
}

export interface WeekPlan {
  /** The Monday that starts the week (YYYY-MM-DD). */
  week: string;
  partitions: PartitionInfo[];
  held: { pendingDeliveries: number; deadLetteredDeliveries: number; messages: number; eventsNotIngested: number };
  /** Rows whose metadata is kept longer: carried to a later week without their payloads. */
  carried: number;
}

export interface PruneResult {
  weeks: WeekPlan[];
  /** Media files deleted because no remaining row refers to them. */
  mediaFilesDeleted: number;
}

/** Deletes a stored media file by its content address (hex); a file already gone is no error. */
export type MediaRemover = (key: string) => Promise<void>;

/** Live rows (not carried) of the week [$1, $2). */
const live = `carried = false AND prune_after >= $1::date AND prune_after < $2::date`;

export class RetentionStore {
  constructor(
    private readonly pool: Pool,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Every week that has partitions, oldest first. */
  async weeks(): Promise<string[]> {
    const res = await this.pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = ANY(switchboard_retention_tables())`,
    );
    const weeks = new Set<string>();
    for (const { name } of res.rows) {
      const m = /_[wm](\d{4})(\d{2})(\d{2})$/.exec(name);
      if (m) weeks.add(`${m[1]}-${m[2]}-${m[3]}`);
    }
    return [...weeks].sort();
  }

  /** Weeks that are over (every row in them is past its `prune_after`). */
  async expiredWeeks(): Promise<string[]> {
    const today = utcDay(this.now());
    return (await this.weeks()).filter((w) => addDays(w, 7) <= today);
  }

  /** What pruning would do now: per week, the partitions that would go and what is held back. */
  async plan(): Promise<WeekPlan[]> {
    const out = [];
    for (const week of await this.expiredWeeks()) out.push(await this.weekPlan(this.pool, week));
    return out;
  }

  /**
   * Rows are carried only to a week that is not over: metadata expiring in a week that is over
   * goes now with the rest.
   */
  private carryFrom(): string {
    return retentionWeek(utcDay(this.now()));
  }

  private async weekPlan(q: Pool | PoolClient, week: string): Promise<WeekPlan> {
    const carryFrom = this.carryFrom();
    const partitions: PartitionInfo[] = [];
    let carried = 0;
    for (const table of retentionTables) {
      for (const kept of [false, true]) {
        const name = partitionName(table, week, kept);
        if ((await q.query<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [name])).rows[0]?.r == null) continue;
        const r = (
          await q.query<{ rows: string; bytes: string; carried: string }>(
            `SELECT count(*) AS rows, pg_total_relation_size(to_regclass($1)) AS bytes,
                    count(*) FILTER (WHERE keep_until >= $2::date) AS carried FROM ${name}`,
            [name, carryFrom],
          )
        ).rows[0]!;
        partitions.push({ table, name, rows: Number(r.rows), bytes: Number(r.bytes) });
        if (!kept && payloadColumns[table].length > 0) carried += Number(r.carried);
      }
    }
    const hi = addDays(week, 7);
    const held = (
      await q.query<{ pending: string; dead: string; messages: string; events: string }>(
        `SELECT (SELECT count(*) FROM deliveries WHERE ${live} AND state = 'pending') AS pending,
                (SELECT count(*) FROM deliveries WHERE ${live} AND state = 'dead_lettered') AS dead,
                (SELECT count(DISTINCT message_id) FROM deliveries WHERE ${live} AND state IN ('pending', 'dead_lettered')) AS messages,
                (SELECT count(*) FROM inbound_events WHERE ${live} AND state = 'received') AS events`,
        [week, hi],
      )
    ).rows[0]!;
    return {
      week,
      partitions,
      held: { pendingDeliveries: Number(held.pending), deadLetteredDeliveries: Number(held.dead), messages: Number(held.messages), eventsNotIngested: Number(held.events) },
      carried,
    };
  }

  /**
   * Drops every week that is over, holding back and carrying forward as described above. One
   * pruning run at a time (an advisory lock: a second run returns at once with nothing done).
   * `beforeDrop` is called with each week's plan before its partitions go (the audit entry).
   */
  async prune(
    o: {
      removeMedia?: MediaRemover | undefined;
      beforeDrop?: ((plan: WeekPlan) => Promise<void>) | undefined;
      /** Runs first, under the same lock (the audit trail's own retention). */
      first?: (() => Promise<void>) | undefined;
      /** Rows carried per statement before the drop transaction (default 5000). */
      batch?: number;
      lockTimeoutMs?: number;
    } = {},
  ): Promise<PruneResult | null> {
    return withClient(this.pool, async (lockClient) => {
      const got = await lockClient.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [PRUNE_LOCK]);
      if (!got.rows[0]?.ok) return null;
      try {
        await o.first?.();
        // Files left by a run that stopped between its drop and the deletions.
        let mediaFilesDeleted = await this.deleteMedia(o.removeMedia);
        const weeks: WeekPlan[] = [];
        for (const week of await this.expiredWeeks()) {
          const holdTo = addDays(utcDay(this.now()), HOLD_DAYS);
          await this.ensureWeeks([holdTo], false);
          await this.ensureWeeks(await this.carryTargets(week), true);
          const before = await this.weekPlan(this.pool, week);
          // First without locking the tables (the bulk of the work), then again under the lock.
          await this.tx(undefined, (c) => this.holdBack(c, week, holdTo));
          await this.carryInBatches(week, o.batch ?? 5000);
          const plan = await this.tx(o.lockTimeoutMs ?? 10_000, async (c) => {
            await this.ensureWeeks([holdTo], false, c);
            await this.ensureWeeks(await this.carryTargets(week, c), true, c);
            await this.holdBack(c, week, holdTo);
            await this.carry(c, week);
            // What goes is what is left; what was held back and carried is counted from before.
            const plan: WeekPlan = { ...before, partitions: (await this.weekPlan(c, week)).partitions };
            await c.query(`INSERT INTO media_deletions (media_key) SELECT DISTINCT media_key FROM message_media WHERE ${live} ON CONFLICT DO NOTHING`, [week, addDays(week, 7)]);
            await o.beforeDrop?.(plan);
            for (const t of plan.partitions) await c.query(`DROP TABLE IF EXISTS ${t.name}`);
            return plan;
          });
          weeks.push(plan);
          mediaFilesDeleted += await this.deleteMedia(o.removeMedia);
        }
        return { weeks, mediaFilesDeleted };
      } finally {
        await lockClient.query('SELECT pg_advisory_unlock($1)', [PRUNE_LOCK]).catch(() => undefined);
      }
    });
  }

  /** The later weeks rows of `week` are carried to (their metadata's expiry). */
  private async carryTargets(week: string, c?: PoolClient): Promise<string[]> {
    const hi = this.carryFrom();
    const selects = retentionTables
      .filter((t) => payloadColumns[t].length > 0)
      .map((t) => `SELECT DISTINCT to_char(switchboard_retention_week(keep_until), 'YYYY-MM-DD') AS d FROM ${t} WHERE ${live} AND keep_until >= $3::date`);
    const res = await (c ?? this.pool).query<{ d: string }>(selects.join(' UNION '), [week, addDays(week, 7), hi]);
    return res.rows.map((r) => r.d);
  }

  private async ensureWeeks(days: readonly string[], carried: boolean, c?: PoolClient): Promise<void> {
    for (const week of new Set(days.map(retentionWeek))) await (c ?? this.pool).query('SELECT switchboard_ensure_retention_week($1::date, $2)', [week, carried]);
  }

  /** Moves what a pending or dead-lettered delivery (or the outbox) still needs out of `week`. */
  private async holdBack(c: PoolClient, week: string, holdTo: string): Promise<void> {
    const args = [week, addDays(week, 7), holdTo];
    await c.query(
      `CREATE TEMP TABLE retention_hold ON COMMIT DROP AS
         SELECT DISTINCT m.id AS message_id, m.event_id FROM messages m
          WHERE m.carried = false AND m.prune_after >= $1::date AND m.prune_after < $2::date
            AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state IN ('pending', 'dead_lettered'))`,
      [week, addDays(week, 7)],
    );
    const heldDeliveries = `(SELECT d.id FROM deliveries d JOIN retention_hold h ON h.message_id = d.message_id)`;
    await c.query(`UPDATE delivery_attempts SET prune_after = $3 WHERE ${live} AND delivery_id IN ${heldDeliveries}`, args);
    await c.query(`UPDATE delivery_actions SET prune_after = $3 WHERE ${live} AND delivery_id IN ${heldDeliveries}`, args);
    await c.query(`UPDATE deliveries SET prune_after = $3 WHERE ${live} AND message_id IN (SELECT message_id FROM retention_hold)`, args);
    await c.query(`UPDATE message_media SET prune_after = $3 WHERE ${live} AND message_id IN (SELECT message_id FROM retention_hold)`, args);
    await c.query(`UPDATE messages SET prune_after = $3 WHERE ${live} AND id IN (SELECT message_id FROM retention_hold)`, args);
    await c.query(`UPDATE inbound_events SET prune_after = $3 WHERE ${live} AND (state = 'received' OR id IN (SELECT event_id FROM retention_hold))`, args);
    await c.query('DROP TABLE retention_hold');
  }

  /** Carries the rows of `week` whose metadata is kept longer to their metadata's week, without payloads. */
  private async carry(q: Pool | PoolClient, week: string, limit?: number): Promise<number> {
    let moved = 0;
    for (const table of retentionTables) {
      const cols = payloadColumns[table];
      if (cols.length === 0) continue;
      const empty = cols.map((col) => `${col}_payload = NULL, ${col}_key_id = NULL`).join(', ');
      // Through the parent (a row changing its partition key moves partition); the range keeps
      // the plan on this week's partition, where the ctids are.
      // (carried = false, week) is one partition: the ctids of the batch are that partition's.
      const batch = limit === undefined ? '' : `AND ctid = ANY(ARRAY(SELECT ctid FROM ${table} WHERE ${live} AND keep_until >= $3::date LIMIT ${Math.max(1, Math.floor(limit))}))`;
      const r = await q.query(`UPDATE ${table} SET carried = true, prune_after = keep_until, ${empty} WHERE ${live} AND keep_until >= $3::date ${batch}`, [week, addDays(week, 7), this.carryFrom()]);
      moved += r.rowCount ?? 0;
    }
    return moved;
  }

  /** The bulk of the carrying, before the drop transaction: a statement (a transaction) a batch. */
  private async carryInBatches(week: string, batch: number): Promise<void> {
    while ((await this.carry(this.pool, week, batch)) > 0) {
      /* next batch */
    }
  }

  /** Deletes the files recorded for deletion that no row refers to any more. */
  private async deleteMedia(remove: MediaRemover | undefined): Promise<number> {
    if (!remove) return 0;
    const res = await this.pool.query<{ media_key: Buffer; referenced: boolean }>(
      `SELECT d.media_key, EXISTS (SELECT 1 FROM message_media m WHERE m.media_key = d.media_key) AS referenced FROM media_deletions d`,
    );
    let deleted = 0;
    for (const r of res.rows) {
      if (!r.referenced) {
        await remove(r.media_key.toString('hex'));
        deleted++;
      }
      await this.pool.query('DELETE FROM media_deletions WHERE media_key = $1', [r.media_key]);
    }
    return deleted;
  }

  private async tx<T>(lockTimeoutMs: number | undefined, fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.pool, async (c) => {
      if (lockTimeoutMs !== undefined) {
        // Every table of the message store, at once and in one order, so the moves and drops
        // below cannot deadlock with the gateway's transactions; readers and writers wait for
        // this short transaction, or it gives up and the next run tries again.
        await c.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
        await c.query(`LOCK TABLE ${retentionTables.join(', ')} IN ACCESS EXCLUSIVE MODE`);
      }
      return fn(c);
    });
  }
}

/** A week's partition of live rows (`_w`) or of carried ones (`_m`). */
export function partitionName(table: RetentionTable, week: string, carried = false): string {
  return `${table}_${carried ? 'm' : 'w'}${week.replaceAll('-', '')}`;
}

/** The `store.pruned` detail of a week (ids, counts and sizes: no content). */
export function weekAuditDetail(p: WeekPlan, dryRun: boolean): Record<string, string | number | boolean> {
  return {
    table: 'message store',
    week: p.week,
    dry_run: dryRun,
    rows: p.partitions.reduce((n, t) => n + t.rows, 0),
    bytes: p.partitions.reduce((n, t) => n + t.bytes, 0),
    held_messages: p.held.messages,
    held_pending: p.held.pendingDeliveries,
    held_dead_lettered: p.held.deadLetteredDeliveries,
    held_events: p.held.eventsNotIngested,
    carried: p.carried,
  };
}

export const weekAuditResources = (p: WeekPlan): AuditResource[] => p.partitions.map((t) => ({ type: 'partition', id: t.name }));

/**
 * Pruning on its own, in the gateway's worker role: every `intervalMs` (the first run after at
 * most five minutes), the audit trail's expired years and the message store's expired weeks,
 * each drop audited as `store.pruned`. One process at a time (the prune lock: a run that finds
 * another under way does nothing). Logs one line per run, never content.
 */
export function startRetentionPruner(o: {
  retention: RetentionStore;
  audit: AuditRecorder & { prune(cutoff: Date, principal: Principal, sourceAddress: string): Promise<{ name: string; entries: number }[]> };
  auditRetentionYears: number;
  removeMedia: MediaRemover;
  logger: Logger;
  intervalMs: number;
  now?: () => Date;
}): { stop(): Promise<void>; runOnce(): Promise<void> } {
  const principal = systemPrincipal('retention');
  const now = o.now ?? (() => new Date());
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  const runOnce = async (): Promise<void> => {
    let auditDropped: { name: string; entries: number }[] = [];
    try {
      const cutoff = new Date(now());
      cutoff.setUTCFullYear(cutoff.getUTCFullYear() - o.auditRetentionYears);
      const result = await o.retention.prune({
        first: async () => {
          auditDropped = await o.audit.prune(cutoff, principal, 'gateway');
        },
        removeMedia: o.removeMedia,
        beforeDrop: (p) => o.audit.record({ action: 'store.pruned', principal, outcome: 'success', resources: weekAuditResources(p), sourceAddress: 'gateway', detail: weekAuditDetail(p, false) }),
      });
      if (result === null) {
        o.logger.info('store prune: another process is pruning; skipped');
        return;
      }
      const sum = (f: (p: WeekPlan) => number) => result.weeks.reduce((n, p) => n + f(p), 0);
      o.logger.info(
        {
          weeks: result.weeks.map((p) => p.week),
          rows: sum((p) => p.partitions.reduce((n, t) => n + t.rows, 0)),
          bytes: sum((p) => p.partitions.reduce((n, t) => n + t.bytes, 0)),
          heldMessages: sum((p) => p.held.messages),
          carried: sum((p) => p.carried),
          mediaFilesDeleted: result.mediaFilesDeleted,
          auditPartitions: auditDropped.map((d) => d.name),
        },
        result.weeks.length === 0 && auditDropped.length === 0 ? 'store prune: nothing to drop' : `store prune: dropped ${result.weeks.length} week(s) of the message store, ${auditDropped.length} year(s) of the audit trail`,
      );
    } catch (err) {
      o.logger.warn({ err: { message: (err as Error).message } }, 'store prune failed; the next run tries again');
    }
  };
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = runOnce().finally(() => {
        running = undefined;
        schedule(o.intervalMs);
      });
    }, ms);
    timer.unref();
  };
  if (o.intervalMs > 0) schedule(Math.min(o.intervalMs, 5 * 60_000));
  return {
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
