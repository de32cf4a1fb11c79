/**
 * The audit trail: table `audit_events`, append-only in the database (a trigger refuses UPDATE,
 * DELETE and TRUNCATE) and hash-chained. Each entry carries the previous entry's hash, and its own
 * hash is an HMAC-SHA256 under the audit key (kept wrapped in `encryption_keys`): someone who can
 * write to the database but does not hold the key-encryption keys can neither forge an entry nor
 * re-chain the trail after removing one. Writers are serialised by an advisory lock, so the chain
 * is linear across processes. Entries hold ids, codes and counts, never message content.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { AuditAction, AuditEntry, AuditOutcome, AuditRecorder, AuditResource, RecordedAuditEntry } from '../core/audit.js';
import type { Principal, PrincipalKind, RoleName } from '../core/principal.js';
import { withClient } from './checked-out-client.js';

const AUDIT_LOCK = 0x5b_0a_2d_03; // "switchboard audit chain"
export const GENESIS = Buffer.alloc(32);

export interface AuditKeys {
  /** The key new entries are chained under. */
  auditKey(): { id: string; key: Buffer };
  keyById(id: string): Promise<Buffer>;
}

interface AuditRow {
  seq: string;
  recorded_at: Date;
  action: AuditAction;
  outcome: AuditOutcome;
  principal_kind: PrincipalKind | null;
  principal_id: string | null;
  principal_display: string | null;
  principal_role: RoleName | null;
  source_address: string | null;
  resources: AuditResource[];
  detail: Record<string, string | number | boolean | null>;
  key_id: string;
  prev_hash: Buffer;
  hash: Buffer;
}

type Detail = Readonly<Record<string, string | number | boolean | null>>;

/** The bytes an entry's hash covers (jsonb reorders keys, so detail goes in sorted). */
function entryBytes(e: { seq: number; recordedAt: Date; action: string; outcome: string; principal: Principal | null; sourceAddress: string | null; resources: readonly AuditResource[]; detail: Detail }, prev: Buffer): Buffer {
  const p = e.principal;
  return Buffer.from(
    JSON.stringify([
      1,
      e.seq,
      e.recordedAt.toISOString(),
      e.action,
      e.outcome,
      p ? [p.kind, p.id, p.display, p.role] : null,
      e.sourceAddress,
      e.resources.map((r) => [r.type, r.id]),
      Object.entries(e.detail).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      prev.toString('hex'),
    ]),
  );
}

const mac = (key: Buffer, bytes: Buffer) => createHmac('sha256', key).update(bytes).digest();

function toEntry(r: AuditRow): RecordedAuditEntry {
  const principal: Principal | null =
    r.principal_kind === null ? null : { kind: r.principal_kind, id: r.principal_id ?? '', display: r.principal_display ?? '', role: r.principal_role };
  const out: RecordedAuditEntry = {
    seq: Number(r.seq),
    recordedAt: r.recorded_at,
    action: r.action,
    outcome: r.outcome,
    principal,
    resources: r.resources,
    detail: r.detail,
    prevHash: r.prev_hash.toString('hex'),
    hash: r.hash.toString('hex'),
  };
  if (r.source_address !== null) out.sourceAddress = r.source_address;
  return out;
}

export type VerifyResult =
  | { ok: true; entries: number; firstSeq: number | null; lastSeq: number | null }
  | { ok: false; entries: number; seq: number; recordedAt: Date; problem: 'altered' | 'removed' | 'inserted'; message: string };

/** The one-line verdict `switchboard audit verify` prints and the console shows. */
export function describeVerifyResult(r: VerifyResult): string {
  return r.ok ? `audit trail intact: ${r.entries} entries${r.firstSeq !== null ? ` (${r.firstSeq}-${r.lastSeq})` : ''}` : `audit trail BROKEN at entry ${r.seq}: ${r.message}`;
}

/** What the `audit.verified` entry records of a verification. */
export function auditVerifiedDetail(r: VerifyResult): Record<string, string | number> {
  return r.ok ? { entries: r.entries } : { entries: r.entries, broken_at: r.seq, problem: r.problem };
}

/** The audit log as an operator browses it: newest first, paged by `beforeSeq`. */
export interface AuditFilter {
  since?: Date | undefined;
  until?: Date | undefined;
  actions?: readonly AuditAction[] | undefined;
  outcome?: AuditOutcome | undefined;
  /** The principal's `kind:id`, its id, or its display name. */
  principal?: string | undefined;
  /** An entry naming this resource id (a message, delivery, token, destination...). */
  resourceId?: string | undefined;
  /** Entries numbered below this one (the next page). */
  beforeSeq?: number | undefined;
  limit?: number | undefined;
}

export class AuditStore implements AuditRecorder {
  private readonly years = new Set<number>();

  constructor(
    private readonly pool: Pool,
    private readonly keys: AuditKeys,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Yearly partitions, created when first needed (under the chain lock). */
  private async ensurePartition(c: PoolClient, year: number): Promise<void> {
    if (this.years.has(year)) return;
    const name = `audit_events_y${year}`;
    const exists = await c.query('SELECT 1 FROM pg_class WHERE relname = $1', [name]);
    if (exists.rowCount === 0) {
      await c.query(`CREATE TABLE ${name} PARTITION OF audit_events FOR VALUES FROM ('${year}-01-01T00:00:00Z') TO ('${year + 1}-01-01T00:00:00Z')`);
      await c.query(`CREATE TRIGGER ${name}_no_truncate BEFORE TRUNCATE ON ${name} FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()`);
    }
    this.years.add(year);
  }

  async record(entry: AuditEntry): Promise<void> {
    await withClient(this.pool, async (c) => {
      try {
        await c.query('BEGIN');
        await c.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK]);
        const last = (await c.query<{ seq: string; hash: Buffer; recorded_at: Date }>('SELECT seq, hash, recorded_at FROM audit_events ORDER BY seq DESC LIMIT 1')).rows[0];
        const seq = last ? Number(last.seq) + 1 : 1;
        const prev = last?.hash ?? GENESIS;
        // Time never runs backwards along the chain, even if the clock does.
        const recordedAt = new Date(Math.max(this.now().getTime(), last ? last.recorded_at.getTime() : 0));
        await this.ensurePartition(c, recordedAt.getUTCFullYear());
        const { id: keyId, key } = this.keys.auditKey();
        const resources = entry.resources ?? [];
        const detail = entry.detail ?? {};
        const sourceAddress = entry.sourceAddress ?? null;
        const hash = mac(key, entryBytes({ seq, recordedAt, action: entry.action, outcome: entry.outcome, principal: entry.principal, sourceAddress, resources, detail }, prev));
        const p = entry.principal;
        await c.query(
          `INSERT INTO audit_events (seq, recorded_at, action, outcome, principal_kind, principal_id, principal_display, principal_role, source_address, resources, detail, key_id, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
          [seq, recordedAt, entry.action, entry.outcome, p?.kind ?? null, p?.id ?? null, p?.display ?? null, p?.role ?? null, sourceAddress, JSON.stringify(resources), JSON.stringify(detail), keyId, prev, hash],
        );
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /** Entries recorded in [since, until), in chain order. */
  async *entries(o: { since?: Date | undefined; until?: Date | undefined } = {}, batch = 1000): AsyncGenerator<RecordedAuditEntry> {
    for await (const r of this.rows(o, batch)) yield toEntry(r);
  }

  private async *rows(o: { since?: Date | undefined; until?: Date | undefined }, batch: number): AsyncGenerator<AuditRow> {
    let after: { seq: string; at: Date } | undefined;
    for (;;) {
      const args: unknown[] = [o.since ?? new Date(0), o.until ?? new Date(8.64e15), batch];
      let where = 'recorded_at >= $1 AND recorded_at < $2';
      if (after) {
        args.push(after.seq, after.at);
        where += ' AND (seq, recorded_at) > ($4::bigint, $5::timestamptz)';
      }
      const res = await this.pool.query<AuditRow>(`SELECT * FROM audit_events WHERE ${where} ORDER BY seq, recorded_at LIMIT $3`, args);
      for (const r of res.rows) yield r;
      const last = res.rows.at(-1);
      if (!last || res.rows.length < batch) return;
      after = { seq: last.seq, at: last.recorded_at };
    }
  }

  /** Entries matching the filter, newest first (at most 500 a page). */
  async search(f: AuditFilter): Promise<RecordedAuditEntry[]> {
    const args: unknown[] = [];
    const where: string[] = [];
    const add = (sql: string, v: unknown) => {
      args.push(v);
      where.push(sql.replaceAll('?', `$${args.length}`));
    };
    if (f.since) add('recorded_at >= ?', f.since);
    if (f.until) add('recorded_at < ?', f.until);
    if (f.actions && f.actions.length > 0) add('action = ANY(?::text[])', f.actions);
    if (f.outcome) add('outcome = ?', f.outcome);
    if (f.principal) add(`(principal_kind || ':' || principal_id = ? OR principal_id = ? OR principal_display = ?)`, f.principal);
    if (f.resourceId) add(`resources @> jsonb_build_array(jsonb_build_object('id', ?::text))`, f.resourceId);
    if (f.beforeSeq !== undefined) add('seq < ?', f.beforeSeq);
    args.push(Math.min(f.limit ?? 50, 500));
    const res = await this.pool.query<AuditRow>(
      `SELECT * FROM audit_events ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${args.length}`,
      args,
    );
    return res.rows.map(toEntry);
  }

  /** How many entries were recorded in [since, until). */
  async count(o: { since?: Date | undefined; until?: Date | undefined } = {}): Promise<number> {
    const res = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_events WHERE recorded_at >= $1 AND recorded_at < $2', [o.since ?? new Date(0), o.until ?? new Date(8.64e15)]);
    return Number(res.rows[0]?.n ?? 0);
  }

  /**
   * Walks the whole chain: every entry's HMAC must match its content, every entry must name the
   * previous one's hash, and numbers must run without gaps. Reports the first entry that breaks it.
   */
  async verify(): Promise<VerifyResult> {
    let expectedPrev: Buffer = GENESIS;
    let expectedSeq = 1;
    let count = 0;
    let first: number | null = null;
    const it = this.rows({}, 1000);
    let next = (await it.next()).value as AuditRow | undefined;
    // Retention dropped older partitions: the chain then starts where a `store.pruned` entry (itself
    // in the chain, so verified below) says it does.
    const anchor = next && Number(next.seq) > 1 ? (await this.pruneAnchors()).get(Number(next.seq) - 1) : undefined;
    if (anchor) {
      expectedPrev = Buffer.from(anchor, 'hex');
      expectedSeq = Number(next!.seq);
    }
    while (next) {
      const cur = next;
      next = ((await it.next()).value as AuditRow | undefined) ?? undefined;
      const seq = Number(cur.seq);
      first ??= seq;
      count++;
      const e = toEntry(cur);
      const key = await this.keys.keyById(cur.key_id);
      const computed = mac(key, entryBytes({ ...e, sourceAddress: cur.source_address, resources: cur.resources, detail: cur.detail }, cur.prev_hash));
      const valid = computed.length === cur.hash.length && timingSafeEqual(computed, cur.hash);
      const fail = (problem: 'altered' | 'removed' | 'inserted', message: string): VerifyResult => ({ ok: false, entries: count, seq, recordedAt: cur.recorded_at, problem, message });
      if (!valid) {
        if (seq < expectedSeq || (next && next.prev_hash.equals(expectedPrev))) {
          return fail('inserted', `entry ${seq} (recorded ${cur.recorded_at.toISOString()}) was inserted: its hash does not match and the chain runs around it`);
        }
        return fail('altered', `entry ${seq} (recorded ${cur.recorded_at.toISOString()}) was altered: its hash does not match its content`);
      }
      if (seq !== expectedSeq || !cur.prev_hash.equals(expectedPrev)) {
        const missing = seq > expectedSeq ? (seq - 1 === expectedSeq ? `entry ${expectedSeq}` : `entries ${expectedSeq}-${seq - 1}`) : `the entry before ${seq}`;
        return fail('removed', `${missing} removed: entry ${seq} (recorded ${cur.recorded_at.toISOString()}) does not follow entry ${expectedSeq - 1}`);
      }
      expectedPrev = cur.hash;
      expectedSeq = seq + 1;
    }
    return { ok: true, entries: count, firstSeq: first, lastSeq: count > 0 ? expectedSeq - 1 : null };
  }

  /** through_seq -> hash of the last entry retention removed. */
  private async pruneAnchors(): Promise<Map<number, string>> {
    const res = await this.pool.query<{ detail: { through_seq?: number; anchor_hash?: string } }>(`SELECT detail FROM audit_events WHERE action = 'store.pruned' AND detail ? 'anchor_hash'`);
    return new Map(res.rows.flatMap((r) => (typeof r.detail.through_seq === 'number' && typeof r.detail.anchor_hash === 'string' ? [[r.detail.through_seq, r.detail.anchor_hash] as const] : [])));
  }

  /** Yearly partitions wholly older than `cutoff`: what retention drops. */
  async expiredPartitions(cutoff: Date): Promise<{ name: string; year: number; entries: number; firstSeq: number | null; lastSeq: number | null }[]> {
    const parts = await this.pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
       WHERE p.relname = 'audit_events' ORDER BY c.relname`,
    );
    const out = [];
    for (const { name } of parts.rows) {
      const year = Number(/^audit_events_y(\d{4})$/.exec(name)?.[1]);
      if (!Number.isInteger(year) || Date.UTC(year + 1, 0, 1) > cutoff.getTime()) continue;
      const r = (await this.pool.query<{ n: string; lo: string | null; hi: string | null }>(`SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM ${name}`)).rows[0]!;
      out.push({ name, year, entries: Number(r.n), firstSeq: r.lo === null ? null : Number(r.lo), lastSeq: r.hi === null ? null : Number(r.hi) });
    }
    return out;
  }

  /**
   * Drops the yearly partitions wholly older than `cutoff` (never row by row). Each drop is first
   * recorded as a `store.pruned` entry naming the last entry it removes and that entry's hash, so
   * `verify` can start the chain there.
   */
  async prune(cutoff: Date, principal: Principal, sourceAddress: string): Promise<{ name: string; entries: number }[]> {
    const dropped = [];
    for (const p of await this.expiredPartitions(cutoff)) {
      const last = p.lastSeq === null ? undefined : (await this.pool.query<{ hash: Buffer }>(`SELECT hash FROM ${p.name} WHERE seq = $1`, [p.lastSeq])).rows[0];
      await this.record({
        action: 'store.pruned',
        principal,
        outcome: 'success',
        resources: [{ type: 'partition', id: p.name }],
        sourceAddress,
        detail: { table: 'audit_events', entries: p.entries, ...(last && p.lastSeq !== null ? { through_seq: p.lastSeq, anchor_hash: last.hash.toString('hex') } : {}) },
      });
      await withClient(this.pool, async (c) => {
        await c.query('BEGIN');
        try {
          await c.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK]);
          await c.query(`ALTER TABLE audit_events DETACH PARTITION ${p.name}`);
          await c.query(`DROP TABLE ${p.name}`);
          await c.query('COMMIT');
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      });
      this.years.delete(p.year);
      dropped.push({ name: p.name, entries: p.entries });
    }
    return dropped;
  }
}
