/**
 * The message store: every inbound event with its raw bytes, the canonical messages parsed from
 * it, the statuses that concern them, and one delivery per destination with its attempts and
 * outcome. PostgreSQL is the source of truth; queues carry ids only, never message content.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import {
  canonicalMessageSchema,
  statusRank,
  type CanonicalMessage,
  type ParseResult,
} from '../core/canonical-message.js';
import type { Classification } from '../core/errors.js';
import { DEFAULT_RETENTION, retentionDates, retentionWeek, type Retention } from '../core/retention.js';
import type { PayloadCodec, PayloadRef } from './payload-codec.js';
import { withTransaction } from './checked-out-client.js';
import { recordConversations, recordProviderStatuses } from './outbound-store.js';

export type DeliveryState = 'pending' | 'delivered' | 'dropped' | 'dead_lettered' | 'discarded';

export interface InboundEvent {
  id: string;
  channelId: string;
  receivedAt: Date;
  raw: Buffer;
  state: 'received' | 'ingested' | 'failed';
}

export interface PendingDelivery {
  deliveryId: string;
  destination: string;
  generation: number;
  messageId: string;
}

export interface DeliveryRecord {
  id: string;
  messageId: string;
  channelId: string;
  destination: string;
  state: DeliveryState;
  generation: number;
  attempts: number;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
  deadLetteredAt: Date | null;
  deliveredAt: Date | null;
  mappingVersion: string | null;
  outcome: Record<string, unknown> | null;
  createdAt: Date;
  updatedAt: Date;
  sourceMessageId: string;
  messageKind: string;
}

export interface AttemptRecord {
  generation: number;
  attempt: number;
  startedAt: Date;
  finishedAt: Date;
  result: 'delivered' | 'dropped' | 'retry' | 'dead_lettered';
  errorCode: string | null;
  errorMessage: string | null;
  retryAfterMs: number | null;
  mappingVersion: string | null;
  detail: Record<string, unknown> | null;
  /** The server's answer (e.g. an OperationOutcome), decoded. */
  response: unknown;
}

export interface DeadLetterFilter {
  channelId?: string;
  destination?: string;
  errorCode?: string;
  since?: Date;
  until?: Date;
  limit?: number;
  /** Keyset pagination: dead_lettered_at and id of the last row of the previous page. */
  after?: { at: Date; id: string };
}

export interface MessageSearchFilter {
  sourceId?: string;
  conversationId?: string;
  /** Every message of the same conversation (thread) as this message, in any channel. */
  conversationOf?: string;
  /** Oldest first (a conversation read in order); default newest first. */
  oldestFirst?: boolean;
  channelId?: string;
  destination?: string;
  state?: DeliveryState;
  errorCode?: string;
  since?: Date;
  until?: Date;
  limit?: number;
  /** Keyset pagination, newest first: received_at and id of the last row of the previous page. */
  before?: { at: Date; id: string };
}

export interface MessageSummary {
  id: string;
  channelId: string;
  kind: string;
  sentAt: Date;
  receivedAt: Date;
  filtered: boolean;
  sourceMessageId: string;
  deliveries: { id: string; destination: string; state: DeliveryState; attempts: number; lastErrorCode: string | null }[];
}

export interface MessageTrace {
  id: string;
  channelId: string;
  kind: string;
  sourceMessageId: string;
  sentAt: Date;
  receivedAt: Date;
  /** When the message was parsed and routed (its row was written). */
  parsedAt: Date;
  filtered: boolean;
  event: { id: string; receivedAt: Date; ingestedAt: Date | null; state: InboundEvent['state'] };
  statuses: { status: string; occurredAt: Date }[];
  deliveries: (DeliveryRecord & { history: AttemptRecord[]; actions: { action: 'replay' | 'discard'; actor: string; reason: string | null; at: Date }[] })[];
}

interface DeliveryRow {
  id: string;
  message_id: string;
  channel_id: string;
  destination: string;
  state: DeliveryState;
  generation: number;
  attempts: number;
  last_error_code: string | null;
  last_error_payload: Buffer | null;
  last_error_key_id: string | null;
  dead_lettered_at: Date | null;
  delivered_at: Date | null;
  mapping_version: string | null;
  outcome_payload: Buffer | null;
  outcome_key_id: string | null;
  created_at: Date;
  updated_at: Date;
  source_id_payload: Buffer | null;
  source_id_key_id: string | null;
  kind: string;
}

const deliveryColumns = `d.id, d.message_id, d.channel_id, d.destination, d.state, d.generation, d.attempts,
  d.last_error_code, d.last_error_payload, d.last_error_key_id, d.dead_lettered_at, d.delivered_at, d.mapping_version,
  d.outcome_payload, d.outcome_key_id, d.created_at, d.updated_at, m.source_id_payload, m.source_id_key_id, m.kind`;

/** Where a payload lives (bound into its ciphertext). */
export const ref = (table: string, column: string, rowId: string | number): PayloadRef => ({ table, column, rowId: String(rowId) });

/** A cursor's row id in its ciphertext's associated data (channel ids have no `/`); see encrypted-columns.ts. */
export const cursorRowId = (channelId: string, key: string): string => `${channelId}/${key}`;

/** Blind-index kinds: one HMAC domain per kind of identifier. */
export const indexKinds = { sourceId: 'source_id', dedup: 'dedup_key', conversation: 'conversation_id' } as const;

/** Where a row lives for retention: the day after which it may go, and the day its metadata expires. */
interface RowDates {
  pruneAfter: string;
  keepUntil: string;
}

/** Advisory-lock namespaces (two-key form) for the keys the partitioned tables cannot hold unique. */
const DEDUP_LOCK = 0x5b_0a_2d_10;
const STATUS_LOCK = 0x5b_0a_2d_11;
const lockKey = (index: Buffer, extra = ''): number =>
  createHash('sha256').update(index).update(extra).digest().readInt32BE(0);

/** Content addresses (SHA-256) of the stored media files a canonical message refers to. */
const servedMediaKey = /\/media\/([0-9a-f]{64})(?:\?|$)/;
export function mediaKeysOf(message: CanonicalMessage): Buffer[] {
  const keys = new Map<string, Buffer>();
  for (const m of message.media) {
    const a = m.attachment;
    if (!a) continue;
    const served = a.url === undefined ? undefined : servedMediaKey.exec(a.url)?.[1];
    const key = served !== undefined ? Buffer.from(served, 'hex') : a.data !== undefined ? createHash('sha256').update(Buffer.from(a.data, 'base64')).digest() : undefined;
    if (key) keys.set(key.toString('hex'), key);
  }
  return [...keys.values()];
}

export interface IngestPlan {
  /** Messages this channel routes, with the destinations each must reach (filtered ones: none). */
  messages: { message: CanonicalMessage; destinations: readonly string[]; filtered: boolean }[];
  statuses: ParseResult['statuses'];
}

/** WHERE clauses of a dead-letter filter, for list and count alike. */
function deadLetterWhere(f: Omit<DeadLetterFilter, 'limit' | 'after'>): { where: string[]; args: unknown[] } {
  // Dead letters are never carried (retention holds them back with their payloads).
  const where = [`d.carried = false`, `d.state = 'dead_lettered'`];
  const args: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    args.push(v);
    where.push(sql.replace('?', `$${args.length}`));
  };
  if (f.channelId) add('d.channel_id = ?', f.channelId);
  if (f.destination) add('d.destination = ?', f.destination);
  if (f.errorCode) add('d.last_error_code = ?', f.errorCode);
  if (f.since) add('d.dead_lettered_at >= ?', f.since);
  if (f.until) add('d.dead_lettered_at < ?', f.until);
  return { where, args };
}

export class MessageStore {
  /** Retention weeks whose partitions are known to exist. */
  private readonly weeks = new Set<string>();

  constructor(
    private readonly pool: Pool,
    private readonly codec: PayloadCodec,
  ) {}

  /**
   * Creates the weekly partitions these days fall in, if missing (outside any transaction: a new
   * partition locks its table for a moment, once a week).
   */
  async ensureRetentionWeeks(days: readonly string[]): Promise<void> {
    for (const week of new Set(days.map(retentionWeek))) {
      if (this.weeks.has(week)) continue;
      await this.pool.query('SELECT switchboard_ensure_retention_week($1::date, false)', [week]);
      this.weeks.add(week);
    }
  }

  /** Forgets partitions retention dropped (they are made again if a row needs them). */
  forgetRetentionWeeks(weeks: readonly string[]): void {
    for (const w of weeks) this.weeks.delete(w);
  }

  /**
   * Runs an insert of rows dated for `receivedAt` and `retention` once their partitions exist. A
   * partition this process knew may have been dropped by a pruning run elsewhere (rows dated in
   * the past: imports, tests); then it is made again and the insert retried once.
   */
  private async inRetentionWeeks<T>(receivedAt: Date, retention: Retention | undefined, insert: (d: RowDates) => Promise<T>): Promise<T> {
    const d = retentionDates(receivedAt, retention ?? DEFAULT_RETENTION);
    await this.ensureRetentionWeeks([d.pruneAfter]);
    try {
      return await insert(d);
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown };
      if (e.code !== '23514' || typeof e.message !== 'string' || !e.message.startsWith('no partition')) throw err;
      this.forgetRetentionWeeks([retentionWeek(d.pruneAfter)]);
      await this.ensureRetentionWeeks([d.pruneAfter]);
      return insert(d);
    }
  }

  private encode(value: Buffer | string, r: PayloadRef) {
    return this.codec.encode(typeof value === 'string' ? Buffer.from(value, 'utf8') : value, r);
  }

  private async decodeText(bytes: Buffer | null, keyId: string | null, r: PayloadRef): Promise<string | null> {
    return bytes === null ? null : (await this.codec.decode(bytes, keyId, r)).toString('utf8');
  }

  private async decodeJson(bytes: Buffer | null, keyId: string | null, r: PayloadRef): Promise<unknown> {
    const text = await this.decodeText(bytes, keyId, r);
    return text === null ? null : (JSON.parse(text) as unknown);
  }

  private async toDelivery(r: DeliveryRow): Promise<DeliveryRecord> {
    return {
      id: r.id,
      messageId: r.message_id,
      channelId: r.channel_id,
      destination: r.destination,
      state: r.state,
      generation: r.generation,
      attempts: r.attempts,
      lastErrorCode: r.last_error_code,
      lastErrorMessage: await this.decodeText(r.last_error_payload, r.last_error_key_id, ref('deliveries', 'last_error', r.id)),
      deadLetteredAt: r.dead_lettered_at,
      deliveredAt: r.delivered_at,
      mappingVersion: r.mapping_version,
      outcome: (await this.decodeJson(r.outcome_payload, r.outcome_key_id, ref('deliveries', 'outcome', r.id))) as Record<string, unknown> | null,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      sourceMessageId: (await this.decodeText(r.source_id_payload, r.source_id_key_id, ref('messages', 'source_id', r.message_id))) ?? '',
      messageKind: r.kind,
    };
  }

  private toDeliveries(rows: DeliveryRow[]): Promise<DeliveryRecord[]> {
    return Promise.all(rows.map((r) => this.toDelivery(r)));
  }

  /**
   * Rows written before encryption existed keep identifiers in plaintext columns: replace them by
   * their blind index (and the source id by its ciphertext), in batches. Run at start; returns
   * how many rows changed.
   */
  async indexLegacyIdentifiers(batch = 500): Promise<number> {
    let changed = 0;
    for (;;) {
      const rows = await this.pool.query<{ id: string; source_message_id: string; dedup_key: string | null; conversation_id: string | null }>(
        'SELECT id, source_message_id, dedup_key, conversation_id FROM messages WHERE source_message_id IS NOT NULL LIMIT $1',
        [batch],
      );
      for (const r of rows.rows) {
        const src = await this.encode(r.source_message_id, ref('messages', 'source_id', r.id));
        await this.pool.query(
          `UPDATE messages SET source_index = $2, dedup_index = $3, conversation_index = $4, source_id_payload = $5, source_id_key_id = $6,
             source_message_id = NULL, dedup_key = NULL, conversation_id = NULL WHERE id = $1`,
          [
            r.id,
            this.codec.index(indexKinds.sourceId, r.source_message_id),
            this.codec.index(indexKinds.dedup, r.dedup_key ?? r.source_message_id),
            r.conversation_id === null ? null : this.codec.index(indexKinds.conversation, r.conversation_id),
            src.bytes,
            src.keyId,
          ],
        );
      }
      changed += rows.rows.length;
      if (rows.rows.length < batch) break;
    }
    for (;;) {
      const rows = await this.pool.query<{ id: string; source_message_id: string }>(
        'SELECT id, source_message_id FROM message_statuses WHERE source_message_id IS NOT NULL LIMIT $1',
        [batch],
      );
      for (const r of rows.rows) {
        await this.pool.query('UPDATE message_statuses SET source_index = $2, source_message_id = NULL WHERE id = $1', [r.id, this.codec.index(indexKinds.sourceId, r.source_message_id)]);
      }
      changed += rows.rows.length;
      if (rows.rows.length < batch) break;
    }
    return changed;
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  /** Stores the raw event; once this resolves the event is durable (committed). */
  async recordInboundEvent(e: { channelId: string; receivedAt: Date; contentType: string | undefined; raw: Buffer; retention?: Retention | undefined }): Promise<string> {
    const id = randomUUID();
    const enc = await this.encode(e.raw, ref('inbound_events', 'raw', id));
    await this.inRetentionWeeks(e.receivedAt, e.retention, (dates) =>
      this.pool.query(
        'INSERT INTO inbound_events (id, prune_after, keep_until, channel_id, received_at, content_type, raw_payload, raw_key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
        [id, dates.pruneAfter, dates.keepUntil, e.channelId, e.receivedAt, e.contentType ?? null, enc.bytes, enc.keyId],
      ),
    );
    return id;
  }

  async loadEvent(id: string): Promise<InboundEvent | null> {
    const res = await this.pool.query<{ id: string; channel_id: string; received_at: Date; raw_payload: Buffer | null; raw_key_id: string | null; state: InboundEvent['state'] }>(
      'SELECT id, channel_id, received_at, raw_payload, raw_key_id, state FROM inbound_events WHERE id = $1 AND carried = false',
      [id],
    );
    const r = res.rows[0];
    // Retention removed its payload (an event not yet ingested never loses it).
    if (!r || r.raw_payload === null) return null;
    return { id: r.id, channelId: r.channel_id, receivedAt: r.received_at, raw: await this.codec.decode(r.raw_payload, r.raw_key_id, ref('inbound_events', 'raw', r.id)), state: r.state };
  }

  /** Events stored but not ingested, older than `olderThanMs`: the outbox to re-enqueue. */
  async pendingEvents(olderThanMs: number, limit = 1000): Promise<string[]> {
    const res = await this.pool.query<{ id: string }>(
      `SELECT id FROM inbound_events WHERE carried = false AND state = 'received' AND received_at < now() - ($1::int * interval '1 millisecond')
       ORDER BY received_at LIMIT $2`,
      [olderThanMs, limit],
    );
    return res.rows.map((r) => r.id);
  }

  async markEventFailed(id: string, code: string, message: string): Promise<void> {
    const enc = await this.encode(message, ref('inbound_events', 'error', id));
    await this.pool.query(`UPDATE inbound_events SET state = 'failed', error_code = $2, error_payload = $3, error_key_id = $4 WHERE id = $1 AND carried = false`, [id, code, enc.bytes, enc.keyId]);
  }

  /**
   * Records what an event parsed into, in one transaction, and returns every delivery of its
   * messages that is still pending (new ones and ones left by an earlier, interrupted run).
   * Messages already known (webhook re-deliveries) are not stored twice.
   */
  async recordIngest(eventId: string, channelId: string, plan: IngestPlan): Promise<PendingDelivery[]> {
    return this.tx(async (c) => {
      const ev = await c.query<{ prune_after: string; keep_until: string }>(
        `SELECT to_char(prune_after, 'YYYY-MM-DD') AS prune_after, to_char(keep_until, 'YYYY-MM-DD') AS keep_until FROM inbound_events WHERE id = $1 AND carried = false`,
        [eventId],
      );
      const row = ev.rows[0];
      if (!row) throw new Error(`inbound event ${eventId} is not in the store`);
      const [pending] = await this.writeIngest(c, [{ eventId, channelId, plan, dates: { pruneAfter: row.prune_after, keepUntil: row.keep_until } }]);
      await c.query(`UPDATE inbound_events SET state = 'ingested', ingested_at = now() WHERE id = $1 AND carried = false`, [eventId]);
      return pending!;
    });
  }

  /**
   * The webhook edge: stores the raw event together with what it parsed into (messages,
   * statuses, pending deliveries), in one transaction. Once this resolves all of it is committed;
   * the event is never in the outbox. Returns the event id and the deliveries to enqueue.
   */
  async recordInboundIngested(
    e: { channelId: string; receivedAt: Date; contentType: string | undefined; raw: Buffer; retention?: Retention | undefined },
    plan: IngestPlan,
  ): Promise<{ eventId: string; pending: PendingDelivery[] }> {
    const [one] = await this.recordInboundIngestedMany([{ event: e, plan }]);
    return one!;
  }

  /**
   * Group commit at the edge: several webhooks' events, each with what it parsed into, in ONE
   * transaction of a few multi-row statements, whatever their number. All or nothing: when it
   * rejects, none of them is stored (the caller retries them one by one, so that one bad event
   * does not fail the others). Results are in the order of `items`.
   */
  async recordInboundIngestedMany(
    items: readonly {
      event: { channelId: string; receivedAt: Date; contentType: string | undefined; raw: Buffer; retention?: Retention | undefined };
      plan: IngestPlan;
    }[],
  ): Promise<{ eventId: string; pending: PendingDelivery[] }[]> {
    if (items.length === 0) return [];
    const ids = items.map(() => randomUUID());
    const dates = items.map((it) => retentionDates(it.event.receivedAt, it.event.retention ?? DEFAULT_RETENTION));
    const encoded = await Promise.all(items.map((it, i) => this.encode(it.event.raw, ref('inbound_events', 'raw', ids[i]!))));
    const write = () =>
      this.tx(async (c) => {
        await c.query(
          `INSERT INTO inbound_events (id, prune_after, keep_until, channel_id, received_at, content_type, raw_payload, raw_key_id, state, ingested_at)
           SELECT id, prune_after, keep_until, channel_id, received_at, content_type, raw_payload, raw_key_id, 'ingested', now()
           FROM unnest($1::uuid[], $2::date[], $3::date[], $4::text[], $5::timestamptz[], $6::text[], $7::bytea[], $8::text[])
             AS t(id, prune_after, keep_until, channel_id, received_at, content_type, raw_payload, raw_key_id)`,
          [
            ids,
            dates.map((d) => d.pruneAfter),
            dates.map((d) => d.keepUntil),
            items.map((it) => it.event.channelId),
            items.map((it) => it.event.receivedAt),
            items.map((it) => it.event.contentType ?? null),
            encoded.map((x) => x.bytes),
            encoded.map((x) => x.keyId),
          ],
        );
        const pending = await this.writeIngest(
          c,
          items.map((it, i) => ({ eventId: ids[i]!, channelId: it.event.channelId, plan: it.plan, dates: dates[i]! })),
        );
        return ids.map((eventId, i) => ({ eventId, pending: pending[i]! }));
      });
    const days = dates.map((d) => d.pruneAfter);
    await this.ensureRetentionWeeks(days);
    try {
      return await write();
    } catch (err) {
      // A partition this process knew was dropped by a pruning run elsewhere: make it again, once.
      const e = err as { code?: unknown; message?: unknown };
      if (e.code !== '23514' || typeof e.message !== 'string' || !e.message.startsWith('no partition')) throw err;
      this.forgetRetentionWeeks(days.map(retentionWeek));
      await this.ensureRetentionWeeks(days);
      return write();
    }
  }

  /**
   * Writes what events parsed into, with one statement per table whatever the number of events
   * and messages. Returns each event's deliveries to enqueue: those of its new messages, and the
   * still-pending ones of messages already known (re-deliveries of a webhook, whose deliveries
   * may be pending from an earlier, interrupted run).
   *
   * Locks are taken phase by phase, each phase in one global order, so that concurrent batches
   * wait for each other instead of deadlocking: the advisory locks of dedup keys and statuses
   * (one statement, sorted), then the conversations (sorted by conversation), then the provider
   * ids of statuses (sorted by recordProviderStatuses).
   */
  private async writeIngest(c: PoolClient, entries: readonly { eventId: string; channelId: string; plan: IngestPlan; dates: RowDates }[]): Promise<PendingDelivery[][]> {
    const pending: PendingDelivery[][] = entries.map(() => []);
    const rows = entries.flatMap((e, entry) =>
      e.plan.messages.map(({ message, destinations, filtered }) => ({
        entry,
        id: randomUUID(),
        channelId: e.channelId,
        eventId: e.eventId,
        dates: e.dates,
        message,
        destinations,
        filtered,
        dedupIndex: this.codec.index(indexKinds.dedup, message.dedup_key),
      })),
    );
    const statusRows = entries.flatMap((e) =>
      e.plan.statuses.map((s) => ({ s, channelId: e.channelId, eventId: e.eventId, dates: e.dates, index: this.codec.index(indexKinds.sourceId, s.message_id) })),
    );
    // A dedup key (and a status of a source message) is unique per channel. The partitioned tables
    // cannot hold that as a unique index (it would have to include the partition), so writers of
    // the same key are serialised by a transaction-scoped advisory lock, taken in a fixed order,
    // and look the key up across partitions before inserting.
    const locks = [
      ...rows.map((r) => [DEDUP_LOCK, lockKey(r.dedupIndex, r.channelId)] as const),
      ...statusRows.map((x) => [STATUS_LOCK, lockKey(x.index, `${x.channelId}\u0000${x.s.status}`)] as const),
    ];
    if (locks.length > 0) {
      await c.query(
        `SELECT pg_advisory_xact_lock(ns, k) FROM (SELECT DISTINCT ns, k FROM unnest($1::int[], $2::int[]) AS t(ns, k) ORDER BY ns, k) s`,
        [locks.map((l) => l[0]), locks.map((l) => l[1])],
      );
    }
    const keyOf = (channelId: string, index: Buffer) => `${channelId}\u0000${index.toString('hex')}`;
    const stored = new Map<string, string>();
    if (rows.length > 0) {
      const found = await c.query<{ id: string; channel_id: string; dedup_index: Buffer }>(
        `SELECT DISTINCT ON (m.channel_id, m.dedup_index) m.id, m.channel_id, m.dedup_index
         FROM messages m JOIN unnest($1::text[], $2::bytea[]) AS k(channel_id, dedup_index) ON m.channel_id = k.channel_id AND m.dedup_index = k.dedup_index`,
        [rows.map((r) => r.channelId), rows.map((r) => r.dedupIndex)],
      );
      for (const f of found.rows) stored.set(keyOf(f.channel_id, f.dedup_index), f.id);
    }
    // New messages (the first of several with one dedup key in this batch); the others are known.
    const fresh: typeof rows = [];
    const byKnownMessage = new Map<string, number[]>();
    for (const r of rows) {
      const key = keyOf(r.channelId, r.dedupIndex);
      const known = stored.get(key);
      if (known !== undefined) {
        byKnownMessage.set(known, [...(byKnownMessage.get(known) ?? []), r.entry]);
        continue;
      }
      stored.set(key, r.id);
      fresh.push(r);
    }
    if (fresh.length > 0) {
      const enc = await Promise.all(fresh.map((r) => this.encode(JSON.stringify(r.message), ref('messages', 'canonical', r.id))));
      const src = await Promise.all(fresh.map((r) => this.encode(r.message.id, ref('messages', 'source_id', r.id))));
      // created_at keeps the arrival order (now() plus the arrival index in µs): messages of one
      // conversation stored in one transaction keep their order (per-conversation delivery).
      await c.query(
        `INSERT INTO messages (id, prune_after, keep_until, channel_id, event_id, source_kind, source_index, source_id_payload, source_id_key_id, dedup_index, kind, sent_at, received_at,
           canonical_payload, canonical_key_id, filtered, conversation_index, created_at)
         SELECT id, prune_after, keep_until, channel_id, event_id, source_kind, source_index, source_id_payload, source_id_key_id, dedup_index, kind, sent_at, received_at,
           canonical_payload, canonical_key_id, filtered, conversation_index, now() + ord * interval '1 microsecond'
         FROM unnest($1::uuid[], $2::date[], $3::date[], $4::text[], $5::uuid[], $6::text[], $7::bytea[], $8::bytea[], $9::text[], $10::bytea[], $11::text[],
           $12::timestamptz[], $13::timestamptz[], $14::bytea[], $15::text[], $16::boolean[], $17::bytea[])
           WITH ORDINALITY AS t(id, prune_after, keep_until, channel_id, event_id, source_kind, source_index, source_id_payload, source_id_key_id, dedup_index, kind,
             sent_at, received_at, canonical_payload, canonical_key_id, filtered, conversation_index, ord)`,
        [
          fresh.map((r) => r.id),
          fresh.map((r) => r.dates.pruneAfter),
          fresh.map((r) => r.dates.keepUntil),
          fresh.map((r) => r.channelId),
          fresh.map((r) => r.eventId),
          fresh.map((r) => r.message.source.kind),
          fresh.map((r) => this.codec.index(indexKinds.sourceId, r.message.id)),
          src.map((x) => x.bytes),
          src.map((x) => x.keyId),
          fresh.map((r) => r.dedupIndex),
          fresh.map((r) => r.message.kind),
          fresh.map((r) => r.message.sent_at),
          fresh.map((r) => r.message.received_at),
          enc.map((x) => x.bytes),
          enc.map((x) => x.keyId),
          fresh.map((r) => r.filtered),
          fresh.map((r) => this.codec.index(indexKinds.conversation, r.message.conversation_id)),
        ],
      );
      const d = { ids: [] as string[], pruneAfter: [] as string[], keepUntil: [] as string[], messageIds: [] as string[], channelIds: [] as string[], destinations: [] as string[] };
      for (const r of fresh) {
        for (const destination of r.destinations) {
          const id = randomUUID();
          d.ids.push(id);
          d.pruneAfter.push(r.dates.pruneAfter);
          d.keepUntil.push(r.dates.keepUntil);
          d.messageIds.push(r.id);
          d.channelIds.push(r.channelId);
          d.destinations.push(destination);
          pending[r.entry]!.push({ deliveryId: id, destination, generation: 0, messageId: r.id });
        }
      }
      if (d.ids.length > 0) {
        await c.query(
          `INSERT INTO deliveries (id, prune_after, keep_until, message_id, channel_id, destination, state)
           SELECT id, prune_after, keep_until, message_id, channel_id, destination, 'pending'
           FROM unnest($1::uuid[], $2::date[], $3::date[], $4::uuid[], $5::text[], $6::text[]) AS t(id, prune_after, keep_until, message_id, channel_id, destination)`,
          [d.ids, d.pruneAfter, d.keepUntil, d.messageIds, d.channelIds, d.destinations],
        );
      }
    }
    // Statuses: the first of several with one key in this batch, unless already stored.
    const seenStatus = new Set<string>();
    const newStatuses = statusRows.filter((x) => {
      const key = `${keyOf(x.channelId, x.index)}\u0000${x.s.status}`;
      if (seenStatus.has(key)) return false;
      seenStatus.add(key);
      return true;
    });
    if (newStatuses.length > 0) {
      const statusIds = await this.nextIds(c, 'message_statuses', newStatuses.length);
      const details = await Promise.all(
        newStatuses.map(({ s }, i) => this.encode(JSON.stringify({ errors: s.errors, recipient_id: s.recipient_id, source_status: s.source_status }), ref('message_statuses', 'detail', statusIds[i]!))),
      );
      await c.query(
        `INSERT INTO message_statuses (id, prune_after, keep_until, channel_id, event_id, source_index, status, status_rank, occurred_at, detail_payload, detail_key_id)
         SELECT t.* FROM unnest($1::bigint[], $2::date[], $3::date[], $4::text[], $5::uuid[], $6::bytea[], $7::text[], $8::int[], $9::timestamptz[], $10::bytea[], $11::text[])
           AS t(id, prune_after, keep_until, channel_id, event_id, source_index, status, status_rank, occurred_at, detail_payload, detail_key_id)
         WHERE NOT EXISTS (SELECT 1 FROM message_statuses s WHERE s.channel_id = t.channel_id AND s.source_index = t.source_index AND s.status = t.status)`,
        [
          statusIds,
          newStatuses.map((x) => x.dates.pruneAfter),
          newStatuses.map((x) => x.dates.keepUntil),
          newStatuses.map((x) => x.channelId),
          newStatuses.map((x) => x.eventId),
          newStatuses.map((x) => x.index),
          newStatuses.map((x) => x.s.status),
          newStatuses.map((x) => statusRank[x.s.status]),
          newStatuses.map((x) => x.s.occurred_at),
          details.map((x) => x.bytes),
          details.map((x) => x.keyId),
        ],
      );
    }
    // Outbound: where each patient last wrote (reply address, 24-hour window), and provider
    // statuses about messages Switchboard sent, in the same transaction as the events: channel by
    // channel, conversations in one order (stable, so a thread's messages keep theirs).
    for (const channelId of [...new Set(entries.map((e) => e.channelId))].sort()) {
      const messages = entries.filter((e) => e.channelId === channelId).flatMap((e) => e.plan.messages.map((m) => m.message));
      await recordConversations(c, this.codec, channelId, messages.sort((x, y) => (x.conversation_id < y.conversation_id ? -1 : x.conversation_id > y.conversation_id ? 1 : 0)));
    }
    await recordProviderStatuses(c, this.codec, entries.flatMap((e) => e.plan.statuses));
    if (byKnownMessage.size > 0) {
      const earlier = await c.query<{ id: string; destination: string; generation: number; message_id: string }>(
        `SELECT id, destination, generation, message_id FROM deliveries WHERE carried = false AND message_id = ANY($1::uuid[]) AND state = 'pending'`,
        [[...byKnownMessage.keys()]],
      );
      for (const r of earlier.rows) {
        for (const entry of new Set(byKnownMessage.get(r.message_id))) {
          const list = pending[entry]!;
          if (!list.some((p) => p.deliveryId === r.id)) list.push({ deliveryId: r.id, destination: r.destination, generation: r.generation, messageId: r.message_id });
        }
      }
    }
    return pending;
  }

  /** Pending deliveries created more than `olderThanMs` ago, to re-enqueue after a crash. */
  async pendingDeliveries(olderThanMs: number, limit = 1000): Promise<(PendingDelivery & { channelId: string })[]> {
    const res = await this.pool.query<{ id: string; destination: string; generation: number; message_id: string; channel_id: string }>(
      `SELECT id, destination, generation, message_id, channel_id FROM deliveries
       WHERE carried = false AND state = 'pending' AND updated_at < now() - ($1::int * interval '1 millisecond') ORDER BY created_at LIMIT $2`,
      [olderThanMs, limit],
    );
    return res.rows.map((r) => ({ deliveryId: r.id, destination: r.destination, generation: r.generation, messageId: r.message_id, channelId: r.channel_id }));
  }

  /**
   * The delivery and its message, if the delivery still needs doing (state pending); else null.
   * Also reserves the id of the attempt about to be made (pass it to `recordAttempt`), so that an
   * attempt costs one read and one write.
   */
  async loadPendingDelivery(deliveryId: string): Promise<{ delivery: DeliveryRecord; message: CanonicalMessage; attemptId: string } | null> {
    const res = await this.pool.query<DeliveryRow & { canonical_payload: Buffer | null; canonical_key_id: string | null; attempt_id: string | null }>(
      `SELECT ${deliveryColumns}, m.canonical_payload, m.canonical_key_id,
         CASE WHEN d.state = 'pending' THEN nextval(pg_get_serial_sequence('delivery_attempts', 'id'))::text END AS attempt_id
       FROM deliveries d JOIN messages m ON m.id = d.message_id AND m.carried = false WHERE d.id = $1 AND d.carried = false`,
      [deliveryId],
    );
    const r = res.rows[0];
    if (!r || r.state !== 'pending' || r.attempt_id === null) return null;
    const decoded = await this.decodeJson(r.canonical_payload, r.canonical_key_id, ref('messages', 'canonical', r.message_id));
    // Our own row, written from a validated message: decoded, not validated again (a payload that
    // retention removed is refused by the schema, as before).
    const message = decoded === null ? canonicalMessageSchema.parse(decoded) : (decoded as CanonicalMessage);
    return { delivery: await this.toDelivery(r), message, attemptId: r.attempt_id };
  }

  /**
   * The attempt and the delivery's new state, in one statement (one round trip, atomic).
   * `attemptId`: reserved by `loadPendingDelivery`; without it one is taken first.
   */
  async recordAttempt(a: {
    attemptId?: string | undefined;
    deliveryId: string;
    generation: number;
    attempt: number;
    startedAt: Date;
    result: 'delivered' | 'dropped' | 'retry' | 'dead_lettered';
    mappingVersion: string | null;
    detail?: Record<string, unknown> | undefined;
    error?: Classification | undefined;
    response?: unknown;
    /** What the destination refused to send or was refused (PHI; encrypted; content view only). */
    rejected?: unknown;
  }): Promise<void> {
    const attemptId = a.attemptId ?? (await this.pool.query<{ id: string }>(`SELECT nextval(pg_get_serial_sequence('delivery_attempts', 'id'))::text AS id`)).rows[0]!.id;
    const at = (column: string) => ref('delivery_attempts', column, attemptId);
    const optional = async (v: string | undefined, r: PayloadRef) => (v === undefined ? null : await this.encode(v, r));
    const response = await optional(a.response === undefined ? undefined : JSON.stringify(a.response), at('response'));
    const error = await optional(a.error?.message, at('error'));
    const detail = await optional(a.detail === undefined ? undefined : JSON.stringify(a.detail), at('detail'));
    const rejected = await optional(a.rejected === undefined ? undefined : JSON.stringify(a.rejected), at('rejected'));
    const state: DeliveryState = a.result === 'retry' ? 'pending' : a.result;
    const lastError = await optional(a.error?.message, ref('deliveries', 'last_error', a.deliveryId));
    const outcome = a.result === 'delivered' || a.result === 'dropped' ? await this.encode(JSON.stringify(a.detail ?? {}), ref('deliveries', 'outcome', a.deliveryId)) : null;
    // The attempt lives in its delivery's partition (a delivery retention has removed takes none).
    await this.pool.query(
      `WITH attempt AS (
         INSERT INTO delivery_attempts (id, prune_after, keep_until, delivery_id, generation, attempt, started_at, result, error_code, error_payload, error_key_id, retry_after_ms,
           mapping_version, detail_payload, detail_key_id, response_payload, response_key_id, rejected_payload, rejected_key_id)
         SELECT $1, d.prune_after, d.keep_until, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 FROM deliveries d WHERE d.id = $2 AND d.carried = false
       )
       UPDATE deliveries SET state = $18, attempts = attempts + 1, updated_at = now(),
         last_error_code = $7, last_error_payload = $19, last_error_key_id = $20, mapping_version = COALESCE($11, mapping_version),
         outcome_payload = CASE WHEN $21::bytea IS NULL THEN outcome_payload ELSE $21 END,
         outcome_key_id = CASE WHEN $21::bytea IS NULL THEN outcome_key_id ELSE $22 END,
         delivered_at = CASE WHEN $18 IN ('delivered', 'dropped') THEN now() ELSE delivered_at END,
         dead_lettered_at = CASE WHEN $18 = 'dead_lettered' THEN now() ELSE dead_lettered_at END
       WHERE id = $2 AND carried = false AND state = 'pending' AND generation = $3`,
      [
        attemptId,
        a.deliveryId,
        a.generation,
        a.attempt,
        a.startedAt,
        a.result,
        a.error?.code ?? null,
        error?.bytes ?? null,
        error?.keyId ?? null,
        a.error?.retryAfterMs ?? null,
        a.mappingVersion,
        detail?.bytes ?? null,
        detail?.keyId ?? null,
        response?.bytes ?? null,
        response?.keyId ?? null,
        rejected?.bytes ?? null,
        rejected?.keyId ?? null,
        state,
        lastError?.bytes ?? null,
        lastError?.keyId ?? null,
        outcome?.bytes ?? null,
        outcome?.keyId ?? null,
      ],
    );
  }

  async getDelivery(id: string): Promise<(DeliveryRecord & { history: AttemptRecord[] }) | null> {
    const res = await this.pool.query<DeliveryRow>(`SELECT ${deliveryColumns} FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.id = $1`, [id]);
    const r = res.rows[0];
    if (!r) return null;
    const attempts = await this.pool.query<{
      id: string;
      generation: number;
      attempt: number;
      started_at: Date;
      finished_at: Date;
      result: AttemptRecord['result'];
      error_code: string | null;
      error_payload: Buffer | null;
      error_key_id: string | null;
      retry_after_ms: number | null;
      mapping_version: string | null;
      detail_payload: Buffer | null;
      detail_key_id: string | null;
      response_payload: Buffer | null;
      response_key_id: string | null;
    }>('SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id', [id]);
    const history: AttemptRecord[] = [];
    for (const a of attempts.rows) {
      const at = (column: string) => ref('delivery_attempts', column, a.id);
      history.push({
        generation: a.generation,
        attempt: a.attempt,
        startedAt: a.started_at,
        finishedAt: a.finished_at,
        result: a.result,
        errorCode: a.error_code,
        errorMessage: await this.decodeText(a.error_payload, a.error_key_id, at('error')),
        retryAfterMs: a.retry_after_ms,
        mappingVersion: a.mapping_version,
        detail: (await this.decodeJson(a.detail_payload, a.detail_key_id, at('detail'))) as Record<string, unknown> | null,
        response: await this.decodeJson(a.response_payload, a.response_key_id, at('response')),
      });
    }
    return { ...(await this.toDelivery(r)), history };
  }

  /**
   * The content view of a delivery: what its latest attempt that kept one refused to send or was
   * refused (message content: for roles allowed to see it). Null when no attempt kept any.
   */
  async getRejectedOutput(deliveryId: string): Promise<{ generation: number; attempt: number; at: Date; errorCode: string | null; output: unknown } | null> {
    const res = await this.pool.query<{ id: string; generation: number; attempt: number; finished_at: Date; error_code: string | null; rejected_payload: Buffer; rejected_key_id: string | null }>(
      `SELECT id, generation, attempt, finished_at, error_code, rejected_payload, rejected_key_id FROM delivery_attempts
        WHERE delivery_id = $1 AND rejected_payload IS NOT NULL ORDER BY id DESC LIMIT 1`,
      [deliveryId],
    );
    const a = res.rows[0];
    if (!a) return null;
    return {
      generation: a.generation,
      attempt: a.attempt,
      at: a.finished_at,
      errorCode: a.error_code,
      output: await this.decodeJson(a.rejected_payload, a.rejected_key_id, ref('delivery_attempts', 'rejected', a.id)),
    };
  }

  async countDeadLetters(f: Omit<DeadLetterFilter, 'limit' | 'after'>): Promise<number> {
    const { where, args } = deadLetterWhere(f);
    const res = await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM deliveries d WHERE ${where.join(' AND ')}`, args);
    return Number(res.rows[0]?.n ?? 0);
  }

  async listDeadLetters(f: DeadLetterFilter): Promise<DeliveryRecord[]> {
    const { where, args } = deadLetterWhere(f);
    if (f.after) {
      args.push(f.after.at, f.after.id);
      where.push(`(d.dead_lettered_at, d.id) > ($${args.length - 1}, $${args.length})`);
    }
    args.push(Math.min(f.limit ?? 100, 1000));
    const res = await this.pool.query<DeliveryRow>(
      `SELECT ${deliveryColumns} FROM deliveries d JOIN messages m ON m.id = d.message_id AND m.carried = false
       WHERE ${where.join(' AND ')} ORDER BY d.dead_lettered_at, d.id LIMIT $${args.length}`,
      args,
    );
    return this.toDeliveries(res.rows);
  }

  /**
   * Moves a dead-lettered delivery back to pending under a new generation (so its queue job id is
   * new) and records who asked. Returns the pending delivery to enqueue, or null if it was not
   * dead-lettered.
   */
  async requeue(deliveryId: string, actor: string, reason: string | undefined): Promise<(PendingDelivery & { channelId: string }) | null> {
    return this.tx(async (c) => {
      const res = await c.query<{ id: string; destination: string; generation: number; message_id: string; channel_id: string }>(
        `UPDATE deliveries SET state = 'pending', generation = generation + 1, updated_at = now()
         WHERE id = $1 AND carried = false AND state = 'dead_lettered' RETURNING id, destination, generation, message_id, channel_id`,
        [deliveryId],
      );
      const r = res.rows[0];
      if (!r) return null;
      await this.recordAction(c, deliveryId, 'replay', actor, reason);
      return { deliveryId: r.id, destination: r.destination, generation: r.generation, messageId: r.message_id, channelId: r.channel_id };
    });
  }

  /** An operator's action on a delivery; the reason is typed freely (it can name a patient): encrypted. */
  private async recordAction(c: PoolClient, deliveryId: string, action: 'replay' | 'discard', actor: string, reason: string | undefined): Promise<void> {
    const [id] = await this.nextIds(c, 'delivery_actions', 1);
    const enc = reason === undefined ? null : await this.encode(reason, ref('delivery_actions', 'reason', id!));
    await c.query(
      `INSERT INTO delivery_actions (id, prune_after, keep_until, delivery_id, action, actor, reason_payload, reason_key_id)
       SELECT $1, d.prune_after, d.keep_until, $2, $3, $4, $5, $6 FROM deliveries d WHERE d.id = $2 AND d.carried = false`,
      [id, deliveryId, action, actor, enc?.bytes ?? null, enc?.keyId ?? null],
    );
  }

  async discard(deliveryId: string, actor: string, reason: string): Promise<boolean> {
    return this.tx(async (c) => {
      const res = await c.query(`UPDATE deliveries SET state = 'discarded', updated_at = now() WHERE id = $1 AND carried = false AND state = 'dead_lettered'`, [deliveryId]);
      if (res.rowCount !== 1) return false;
      await this.recordAction(c, deliveryId, 'discard', actor, reason);
      return true;
    });
  }

  /**
   * What the store knows about a source message id: the inbound message (null when only statuses
   * are known, e.g. receipts for messages the business sent), its deliveries and statuses.
   */
  async findMessage(channelId: string, sourceMessageId: string): Promise<{
    id: string | null;
    kind: string | null;
    receivedAt: Date | null;
    filtered: boolean;
    deliveries: DeliveryRecord[];
    statuses: { status: string; occurredAt: Date }[];
  } | null> {
    const sourceIndex = this.codec.index(indexKinds.sourceId, sourceMessageId);
    const m = await this.pool.query<{ id: string; kind: string; received_at: Date; filtered: boolean }>(
      'SELECT id, kind, received_at, filtered FROM messages WHERE channel_id = $1 AND source_index = $2 ORDER BY created_at LIMIT 1',
      [channelId, sourceIndex],
    );
    const row = m.rows[0];
    const statuses = await this.pool.query<{ status: string; occurred_at: Date }>(
      'SELECT status, occurred_at FROM message_statuses WHERE channel_id = $1 AND source_index = $2 ORDER BY status_rank',
      [channelId, sourceIndex],
    );
    if (!row && statuses.rows.length === 0) return null;
    const deliveries = row
      ? await this.toDeliveries((await this.pool.query<DeliveryRow>(`SELECT ${deliveryColumns} FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.message_id = $1 ORDER BY d.destination`, [row.id])).rows)
      : [];
    return {
      id: row?.id ?? null,
      kind: row?.kind ?? null,
      receivedAt: row?.received_at ?? null,
      filtered: row?.filtered ?? false,
      deliveries,
      statuses: statuses.rows.map((s) => ({ status: s.status, occurredAt: s.occurred_at })),
    };
  }

  /**
   * Messages for the console's search, newest first, keyset-paged: by source id (a wamid, a
   * Twilio SID) through its blind index, or by filters on channel and on the state, destination
   * and error code of their deliveries. Ids, kinds, times and delivery states only: no content.
   */
  async searchMessages(f: MessageSearchFilter): Promise<MessageSummary[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      args.push(v);
      where.push(sql.replaceAll('?', `$${args.length}`));
    };
    if (f.sourceId) add('m.source_index = ?', this.codec.index(indexKinds.sourceId, f.sourceId));
    if (f.conversationId) add('m.conversation_index = ?', this.codec.index(indexKinds.conversation, f.conversationId));
    // The message itself even when it has no thread (legacy rows); `= NULL` matches nothing else.
    if (f.conversationOf) add('(m.id = ? OR m.conversation_index = (SELECT conversation_index FROM messages WHERE id = ?))', f.conversationOf);
    if (f.channelId) add('m.channel_id = ?', f.channelId);
    if (f.since) add('m.received_at >= ?', f.since);
    if (f.until) add('m.received_at < ?', f.until);
    const deliveryWhere: string[] = [];
    const addDelivery = (sql: string, v: unknown) => {
      args.push(v);
      deliveryWhere.push(sql.replaceAll('?', `$${args.length}`));
    };
    if (f.destination) addDelivery('d.destination = ?', f.destination);
    if (f.state) addDelivery('d.state = ?', f.state);
    if (f.errorCode) addDelivery('d.last_error_code = ?', f.errorCode);
    if (deliveryWhere.length > 0) where.push(`EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND ${deliveryWhere.join(' AND ')})`);
    if (f.before) {
      args.push(f.before.at, f.before.id);
      where.push(`(m.received_at, m.id) < ($${args.length - 1}, $${args.length})`);
    }
    args.push(Math.min(f.limit ?? 50, 200));
    const order = f.oldestFirst ? 'm.sent_at, m.received_at, m.id' : 'm.received_at DESC, m.id DESC';
    const res = await this.pool.query<{ id: string; channel_id: string; kind: string; sent_at: Date; received_at: Date; filtered: boolean; source_id_payload: Buffer | null; source_id_key_id: string | null }>(
      `SELECT m.id, m.channel_id, m.kind, m.sent_at, m.received_at, m.filtered, m.source_id_payload, m.source_id_key_id FROM messages m
       ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order} LIMIT $${args.length}`,
      args,
    );
    if (res.rows.length === 0) return [];
    const deliveries = await this.pool.query<{ id: string; message_id: string; destination: string; state: DeliveryState; attempts: number; last_error_code: string | null }>(
      'SELECT id, message_id, destination, state, attempts, last_error_code FROM deliveries WHERE message_id = ANY($1::uuid[]) ORDER BY destination',
      [res.rows.map((r) => r.id)],
    );
    return Promise.all(
      res.rows.map(async (r) => ({
        id: r.id,
        channelId: r.channel_id,
        kind: r.kind,
        sentAt: r.sent_at,
        receivedAt: r.received_at,
        filtered: r.filtered,
        sourceMessageId: (await this.decodeText(r.source_id_payload, r.source_id_key_id, ref('messages', 'source_id', r.id))) ?? '',
        deliveries: deliveries.rows
          .filter((d) => d.message_id === r.id)
          .map((d) => ({ id: d.id, destination: d.destination, state: d.state, attempts: d.attempts, lastErrorCode: d.last_error_code })),
      })),
    );
  }

  /**
   * One message's path for the console's trace: the inbound event, parsing, statuses, and each
   * delivery with every attempt and operator action. No message content (the canonical form and
   * raw bytes stay behind the content permission).
   */
  async messageTrace(messageId: string): Promise<MessageTrace | null> {
    const m = await this.pool.query<{
      id: string; channel_id: string; kind: string; sent_at: Date; received_at: Date; filtered: boolean; created_at: Date;
      source_id_payload: Buffer | null; source_id_key_id: string | null; source_index: Buffer | null;
      event_id: string; event_received_at: Date; event_ingested_at: Date | null; event_state: InboundEvent['state'];
    }>(
      `SELECT m.id, m.channel_id, m.kind, m.sent_at, m.received_at, m.filtered, m.created_at, m.source_id_payload, m.source_id_key_id, m.source_index,
              e.id AS event_id, e.received_at AS event_received_at, e.ingested_at AS event_ingested_at, e.state AS event_state
         FROM messages m JOIN inbound_events e ON e.id = m.event_id WHERE m.id = $1`,
      [messageId],
    );
    const row = m.rows[0];
    if (!row) return null;
    const ids = await this.pool.query<{ id: string }>('SELECT id FROM deliveries WHERE message_id = $1 ORDER BY destination', [messageId]);
    const deliveries = [];
    for (const { id } of ids.rows) {
      const d = await this.getDelivery(id);
      if (!d) continue;
      const actions = await this.pool.query<{ id: string; action: 'replay' | 'discard'; actor: string; reason_payload: Buffer | null; reason_key_id: string | null; at: Date }>(
        'SELECT id, action, actor, reason_payload, reason_key_id, at FROM delivery_actions WHERE delivery_id = $1 ORDER BY id',
        [id],
      );
      const decoded = [];
      for (const a of actions.rows) {
        decoded.push({ action: a.action, actor: a.actor, reason: await this.decodeText(a.reason_payload, a.reason_key_id, ref('delivery_actions', 'reason', a.id)), at: a.at });
      }
      deliveries.push({ ...d, actions: decoded });
    }
    const statuses = row.source_index
      ? await this.pool.query<{ status: string; occurred_at: Date }>('SELECT status, occurred_at FROM message_statuses WHERE channel_id = $1 AND source_index = $2 ORDER BY status_rank', [
          row.channel_id,
          row.source_index,
        ])
      : { rows: [] };
    return {
      id: row.id,
      channelId: row.channel_id,
      kind: row.kind,
      sourceMessageId: (await this.decodeText(row.source_id_payload, row.source_id_key_id, ref('messages', 'source_id', row.id))) ?? '',
      sentAt: row.sent_at,
      receivedAt: row.received_at,
      parsedAt: row.created_at,
      filtered: row.filtered,
      event: { id: row.event_id, receivedAt: row.event_received_at, ingestedAt: row.event_ingested_at, state: row.event_state },
      statuses: statuses.rows.map((s) => ({ status: s.status, occurredAt: s.occurred_at })),
      deliveries,
    };
  }

  /**
   * One message's content: its canonical form, decrypted (PHI: behind the content permission,
   * every read audited by the caller); `pruned` when retention removed it and kept the metadata.
   */
  async messageContent(messageId: string): Promise<CanonicalMessage | 'pruned' | null> {
    const res = await this.pool.query<{ id: string; canonical_payload: Buffer | null; canonical_key_id: string | null }>('SELECT id, canonical_payload, canonical_key_id FROM messages WHERE id = $1', [messageId]);
    const r = res.rows[0];
    if (!r) return null;
    if (r.canonical_payload === null) return 'pruned';
    return canonicalMessageSchema.parse(await this.decodeJson(r.canonical_payload, r.canonical_key_id, ref('messages', 'canonical', r.id)));
  }

  /** Delivery outcomes and failed attempts per channel and destination since a time (the console's throughput and error rate). */
  async deliveryStats(since: Date): Promise<{ channelId: string; destination: string; delivered: number; attempts: number; failedAttempts: number }[]> {
    const res = await this.pool.query<{ channel_id: string; destination: string; delivered: string; attempts: string; failed: string }>(
      `SELECT d.channel_id, d.destination,
              count(*) FILTER (WHERE a.result = 'delivered') AS delivered,
              count(*) AS attempts,
              count(*) FILTER (WHERE a.result IN ('retry', 'dead_lettered')) AS failed
         FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
        WHERE a.finished_at >= $1 GROUP BY d.channel_id, d.destination`,
      [since],
    );
    return res.rows.map((r) => ({ channelId: r.channel_id, destination: r.destination, delivered: Number(r.delivered), attempts: Number(r.attempts), failedAttempts: Number(r.failed) }));
  }

  /**
   * For per-conversation ordering: whether an earlier message of the same conversation still has
   * a pending delivery to the same destination (dead-lettered or discarded ones do not block).
   */
  async hasEarlierPending(deliveryId: string): Promise<boolean> {
    const res = await this.pool.query(
      `SELECT 1 FROM deliveries me JOIN messages mm ON mm.id = me.message_id AND mm.carried = false
       JOIN messages m ON m.carried = false AND m.channel_id = mm.channel_id AND m.conversation_index = mm.conversation_index
         AND (m.sent_at, m.created_at, m.id) < (mm.sent_at, mm.created_at, mm.id)
       JOIN deliveries d ON d.carried = false AND d.message_id = m.id AND d.destination = me.destination AND d.state = 'pending'
       WHERE me.id = $1 AND me.carried = false LIMIT 1`,
      [deliveryId],
    );
    return (res.rowCount ?? 0) > 0;
  }

  /** Replaces a message's canonical form (e.g. after its media was downloaded and stored). */
  async updateCanonical(messageId: string, message: CanonicalMessage): Promise<void> {
    const enc = await this.encode(JSON.stringify(message), ref('messages', 'canonical', messageId));
    const keys = mediaKeysOf(message);
    await this.tx(async (c) => {
      await c.query('UPDATE messages SET canonical_payload = $2, canonical_key_id = $3 WHERE id = $1 AND carried = false', [messageId, enc.bytes, enc.keyId]);
      // The stored media files it refers to go with its payloads (retention deletes a file once no
      // message refers to it).
      if (keys.length > 0) {
        await c.query(
          `INSERT INTO message_media (message_id, prune_after, keep_until, media_key)
           SELECT m.id, m.prune_after, m.keep_until, k FROM messages m, unnest($2::bytea[]) AS k
            WHERE m.id = $1 AND m.carried = false AND NOT EXISTS (SELECT 1 FROM message_media x WHERE x.message_id = m.id AND x.media_key = k)`,
          [messageId, keys],
        );
      }
    });
  }

  /** Durable cursors for a polling source (encrypted: they hold the source's message ids). */
  cursorStore(channelId: string): { get(key: string): Promise<string | null>; set(key: string, value: string): Promise<void> } {
    const at = (key: string) => ref('source_cursors', 'value', cursorRowId(channelId, key));
    return {
      get: async (key) => {
        const r = (await this.pool.query<{ value_payload: Buffer; value_key_id: string | null }>('SELECT value_payload, value_key_id FROM source_cursors WHERE channel_id = $1 AND key = $2', [channelId, key])).rows[0];
        return r ? this.decodeText(r.value_payload, r.value_key_id, at(key)) : null;
      },
      set: async (key, value) => {
        const enc = await this.encode(value, at(key));
        await this.pool.query(
          `INSERT INTO source_cursors (channel_id, key, value_payload, value_key_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT (channel_id, key) DO UPDATE SET value_payload = EXCLUDED.value_payload, value_key_id = EXCLUDED.value_key_id, updated_at = now()`,
          [channelId, key, enc.bytes, enc.keyId],
        );
      },
    };
  }

  /** Dead-lettered deliveries per channel and destination, for metrics. */
  async deadLetterCounts(): Promise<{ channelId: string; destination: string; count: number }[]> {
    const res = await this.pool.query<{ channel_id: string; destination: string; n: string }>(
      `SELECT channel_id, destination, count(*) AS n FROM deliveries WHERE carried = false AND state = 'dead_lettered' GROUP BY channel_id, destination`,
    );
    return res.rows.map((r) => ({ channelId: r.channel_id, destination: r.destination, count: Number(r.n) }));
  }

  /** Ids of bigserial rows, taken before the insert so the ciphertext can be bound to its row. */
  private async nextIds(c: PoolClient, table: string, n: number): Promise<string[]> {
    if (n === 0) return [];
    const res = await c.query<{ id: string }>(`SELECT nextval(pg_get_serial_sequence($1, 'id'))::text AS id FROM generate_series(1, $2)`, [table, n]);
    return res.rows.map((r) => r.id);
  }

  private async tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.pool, fn);
  }
}
