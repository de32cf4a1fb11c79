/**
 * Group commit in the message store on a real PostgreSQL: several webhooks' events in one
 * transaction, all or nothing; a sender's retries stored by concurrent transactions in any order
 * are stored once and never deadlock; a thread's messages stored together keep their order.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { createKeyringProvider, parseKeyring } from '../../src/crypto/keyring.js';
import { openEncryptingCodec, type EncryptingCodec } from '../../src/store/encrypting-codec.js';
import { MessageStore, type IngestPlan } from '../../src/store/message-store.js';
import { runMigrations } from '../../src/store/migrations.js';
import { createTestDatabase } from '../support/services.js';

function message(id: string, from: string, sentAt = '2025-03-04T09:15:00Z'): CanonicalMessage {
  return canonicalMessageSchema.parse({
    schema_version: 1,
    source: { kind: 'whatsapp_cloud' },
    id,
    dedup_key: id,
    kind: 'text',
    sent_at: sentAt,
    received_at: '2025-03-04T09:15:02Z',
    sender: { phone: from, platform_id: from.slice(1) },
    conversation_id: from.slice(1),
    text: `text of ${id}`,
  });
}

const event = (m: CanonicalMessage) => ({
  event: { channelId: 'c1', receivedAt: new Date(), contentType: 'application/json', raw: Buffer.from(JSON.stringify({ id: m.id })) },
  plan: { messages: [{ message: m, destinations: ['ehr'], filtered: false }], statuses: [] } satisfies IngestPlan,
});

describe('group commit in the message store', () => {
  let pool: pg.Pool;
  let codec: EncryptingCodec;
  let store: MessageStore;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 12 });
    await runMigrations(pool);
    codec = await openEncryptingCodec(pool, createKeyringProvider(parseKeyring(`k:${randomBytes(32).toString('base64')}`, 'test'), 'test'));
    store = new MessageStore(pool, codec);
  });
  afterAll(async () => {
    codec?.close();
    await pool?.end();
  });

  it('stores retries of the same webhooks, batched in opposite orders by concurrent transactions, once each and without deadlock', async () => {
    const senders = Array.from({ length: 6 }, (_, i) => `+1555000${1000 + i}`);
    const messages = Array.from({ length: 30 }, (_, i) => message(`wamid.GC${randomBytes(6).toString('hex')}${i}`, senders[i % senders.length]!));
    const forward = messages.map(event);
    const backward = [...messages].reverse().map(event);
    // Eight transactions at once, each holding every message, in alternating orders.
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.recordInboundIngestedMany(i % 2 === 0 ? forward : backward)));
    expect(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    const stored = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM messages WHERE channel_id = 'c1'`);
    expect(Number(stored.rows[0]?.n)).toBeGreaterThanOrEqual(30);
    const deliveries = await pool.query<{ n: string; distinct_messages: string }>(`SELECT count(*) AS n, count(DISTINCT message_id) AS distinct_messages FROM deliveries`);
    expect(deliveries.rows[0]).toEqual({ n: deliveries.rows[0]?.distinct_messages, distinct_messages: deliveries.rows[0]?.distinct_messages });
    // Every retry is told the message's pending delivery, whichever transaction stored it.
    for (const r of results) {
      if (r.status !== 'fulfilled') continue;
      expect(r.value.map((x) => x.pending.length)).toEqual(messages.map(() => 1));
    }
  });

  it('keeps all of a batch or none of it', async () => {
    const good = message(`wamid.GC${randomBytes(6).toString('hex')}`, '+15550009999');
    const bad = { ...message(`wamid.GC${randomBytes(6).toString('hex')}`, '+15550009999'), sent_at: 'not a time' };
    const count = async () => Number((await pool.query<{ n: string }>('SELECT (SELECT count(*) FROM inbound_events) + (SELECT count(*) FROM messages) AS n')).rows[0]?.n);
    const before = await count();
    await expect(store.recordInboundIngestedMany([event(good), event(bad)])).rejects.toThrow();
    expect(await count()).toBe(before);
    const [one] = await store.recordInboundIngestedMany([event(good)]);
    expect(one?.pending).toHaveLength(1);
  });

  it('keeps the arrival order of a thread stored in one transaction, whatever the order of their keys', async () => {
    const from = '+15550004242';
    const thread = Array.from({ length: 12 }, (_, i) => message(`wamid.GC${randomBytes(6).toString('hex')}${i}`, from));
    const [first] = await store.recordInboundIngestedMany(thread.map(event));
    expect(first).toBeDefined();
    const order = await pool.query<{ id: string }>(
      `SELECT m.id FROM messages m WHERE m.event_id = ANY($1::uuid[]) ORDER BY m.sent_at, m.created_at, m.id`,
      [[...(await pool.query<{ id: string }>(`SELECT id FROM inbound_events ORDER BY received_at DESC LIMIT 12`)).rows.map((r) => r.id)]],
    );
    const pendingOrder = (await store.recordInboundIngestedMany(thread.map(event))).map((r) => r.pending[0]!.messageId);
    expect(order.rows.map((r) => r.id)).toEqual(pendingOrder);
  });
});
