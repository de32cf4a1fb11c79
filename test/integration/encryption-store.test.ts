/**
 * The encrypting store on a real PostgreSQL: values bound to their row (a value moved to another
 * row fails to decrypt), rows from before encryption still read, a missing key named by its id,
 * identifiers kept only as blind indexes.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecryptError } from '../../src/crypto/aead.js';
import { MissingKeyError } from '../../src/crypto/key-provider.js';
import { createKeyringProvider, parseKeyring } from '../../src/crypto/keyring.js';
import { createDataKey, openEncryptingCodec, type EncryptingCodec } from '../../src/store/encrypting-codec.js';
import { MessageStore } from '../../src/store/message-store.js';
import { runMigrations } from '../../src/store/migrations.js';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { createTestDatabase } from '../support/services.js';

function canonicalTextMessage(o: { id: string; from: string; text: string }): CanonicalMessage {
  return canonicalMessageSchema.parse({
    schema_version: 1,
    source: { kind: 'whatsapp_cloud' },
    id: o.id,
    dedup_key: o.id,
    kind: 'text',
    sent_at: '2025-03-04T09:15:00Z',
    received_at: '2025-03-04T09:15:02Z',
    sender: { phone: o.from, platform_id: o.from.slice(1) },
    conversation_id: o.from.slice(1),
    text: o.text,
  });
}

const ring = (ids: string[]) => createKeyringProvider(parseKeyring(ids.map((id) => `${id}:${randomBytes(32).toString('base64')}`).join(','), 'test'), 'test');

describe('encrypting message store', () => {
  let pool: pg.Pool;
  let codec: EncryptingCodec;
  let store: MessageStore;
  const provider = ring(['kek-a']);

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: await createTestDatabase() });
    await runMigrations(pool);
    codec = await openEncryptingCodec(pool, provider);
    store = new MessageStore(pool, codec);
  });
  afterAll(async () => {
    codec?.close();
    await pool?.end();
  });

  it('stores ciphertext and reads it back; a value moved to another row fails to decrypt', async () => {
    const a = await store.recordInboundEvent({ channelId: 'c1', receivedAt: new Date(), contentType: 'application/json', raw: Buffer.from('{"secret":"alpha"}') });
    const b = await store.recordInboundEvent({ channelId: 'c1', receivedAt: new Date(), contentType: 'application/json', raw: Buffer.from('{"secret":"bravo"}') });
    const row = (await pool.query<{ raw_payload: Buffer; raw_key_id: string }>('SELECT raw_payload, raw_key_id FROM inbound_events WHERE id = $1', [a])).rows[0]!;
    expect(row.raw_key_id).toBe(codec.activeKeyId());
    expect(row.raw_payload.includes(Buffer.from('alpha'))).toBe(false);
    expect((await store.loadEvent(a))?.raw.toString()).toBe('{"secret":"alpha"}');

    await pool.query('UPDATE inbound_events SET raw_payload = $2, raw_key_id = $3 WHERE id = $1', [b, row.raw_payload, row.raw_key_id]);
    await expect(store.loadEvent(b)).rejects.toThrow(DecryptError);
  });

  it('a canonical message moved to another message fails to decrypt; identifiers are only blind indexes', async () => {
    const ev = await store.recordInboundEvent({ channelId: 'c2', receivedAt: new Date(), contentType: undefined, raw: Buffer.from('{}') });
    const m1 = canonicalTextMessage({ id: 'wamid.ONE', from: '+15550001111', text: 'first' });
    const m2 = canonicalTextMessage({ id: 'wamid.TWO', from: '+15550001111', text: 'second' });
    const pending = await store.recordIngest(ev, 'c2', { messages: [m1, m2].map((message) => ({ message, destinations: ['ehr'], filtered: false })), statuses: [] });
    expect(pending).toHaveLength(2);
    const rows = (await pool.query('SELECT * FROM messages WHERE channel_id = $1', ['c2'])).rows as Record<string, unknown>[];
    for (const r of rows) {
      expect(r['source_message_id']).toBeNull();
      expect(r['dedup_key']).toBeNull();
      expect(r['conversation_id']).toBeNull();
      expect(JSON.stringify(r)).not.toContain('5550001111');
      expect(JSON.stringify(r)).not.toContain('wamid');
    }
    // Lookups by the source id still work, through the blind index.
    const found = await store.findMessage('c2', 'wamid.ONE');
    expect(found?.deliveries).toHaveLength(1);
    expect(found?.deliveries[0]?.sourceMessageId).toBe('wamid.ONE');
    // The same message again is recognised (dedup on the index), not stored twice.
    await store.recordIngest(ev, 'c2', { messages: [{ message: m1, destinations: ['ehr'], filtered: false }], statuses: [] });
    expect((await pool.query('SELECT count(*)::int AS n FROM messages WHERE channel_id = $1', ['c2'])).rows[0].n).toBe(2);

    const [d1, d2] = pending;
    expect((await store.loadPendingDelivery(d1!.deliveryId))?.message.text).toBe('first');
    await pool.query(
      `UPDATE messages SET canonical_payload = (SELECT canonical_payload FROM messages WHERE id = $1), canonical_key_id = (SELECT canonical_key_id FROM messages WHERE id = $1) WHERE id = $2`,
      [d1!.messageId, d2!.messageId],
    );
    await expect(store.loadPendingDelivery(d2!.deliveryId)).rejects.toThrow(DecryptError);
  });

  it('reads rows written before encryption (NULL key id)', async () => {
    const id = await store.recordInboundEvent({ channelId: 'c3', receivedAt: new Date(), contentType: undefined, raw: Buffer.from('x') });
    await pool.query('UPDATE inbound_events SET raw_payload = $2, raw_key_id = NULL WHERE id = $1', [id, Buffer.from('legacy plaintext')]);
    expect((await store.loadEvent(id))?.raw.toString()).toBe('legacy plaintext');
  });

  it('gives the legacy plaintext identifiers of old rows a blind index at start', async () => {
    const ev = await store.recordInboundEvent({ channelId: 'c4', receivedAt: new Date(), contentType: undefined, raw: Buffer.from('{}') });
    const message = canonicalTextMessage({ id: 'wamid.LEGACY', from: '+15550002222', text: 'old' });
    const [p] = await store.recordIngest(ev, 'c4', { messages: [{ message, destinations: ['ehr'], filtered: false }], statuses: [] });
    // As a row written before migration 4 looks: plaintext identifiers, no index.
    await pool.query(
      `UPDATE messages SET source_message_id = 'wamid.LEGACY', dedup_key = 'wamid.LEGACY', conversation_id = '+15550002222',
         source_index = NULL, dedup_index = NULL, conversation_index = NULL, source_id_payload = NULL, source_id_key_id = NULL WHERE id = $1`,
      [p!.messageId],
    );
    expect(await store.findMessage('c4', 'wamid.LEGACY')).toBeNull();
    expect(await store.indexLegacyIdentifiers()).toBeGreaterThanOrEqual(1);
    expect((await store.findMessage('c4', 'wamid.LEGACY'))?.deliveries[0]?.sourceMessageId).toBe('wamid.LEGACY');
    const r = (await pool.query('SELECT source_message_id, conversation_id FROM messages WHERE id = $1', [p!.messageId])).rows[0];
    expect(r).toEqual({ source_message_id: null, conversation_id: null });
  });

  it('a polling cursor is ciphertext bound to its channel and key; one from before encryption still reads', async () => {
    const a = store.cursorStore('poll-a');
    await a.set('room:1', '{"ts":"2026-01-01T00:00:00Z","ids":["RC-SECRET-ID"]}');
    await store.cursorStore('poll-a').set('room:2', 'other');
    expect(await a.get('room:1')).toBe('{"ts":"2026-01-01T00:00:00Z","ids":["RC-SECRET-ID"]}');
    const raw = (await pool.query<{ value_payload: Buffer; value_key_id: string }>(`SELECT value_payload, value_key_id FROM source_cursors WHERE channel_id = 'poll-a' AND key = 'room:1'`)).rows[0]!;
    expect(raw.value_key_id).toBe(codec.activeKeyId());
    expect(raw.value_payload.includes(Buffer.from('RC-SECRET-ID'))).toBe(false);
    await pool.query(`UPDATE source_cursors SET value_payload = $1, value_key_id = $2 WHERE channel_id = 'poll-a' AND key = 'room:2'`, [raw.value_payload, raw.value_key_id]);
    await expect(a.get('room:2')).rejects.toThrow(DecryptError);
    await pool.query(`UPDATE source_cursors SET value_payload = convert_to('legacy', 'UTF8'), value_key_id = NULL WHERE channel_id = 'poll-a' AND key = 'room:2'`);
    expect(await a.get('room:2')).toBe('legacy');
  });

  it('a key-encryption key missing from the ring is a clear error naming its id', async () => {
    await expect(openEncryptingCodec(pool, ring(['kek-other']))).rejects.toThrow(MissingKeyError);
    await expect(openEncryptingCodec(pool, ring(['kek-other']))).rejects.toThrow(/"kek-a"/);
  });

  it('a value under a data key the database does not have names that key', async () => {
    const id = await store.recordInboundEvent({ channelId: 'c5', receivedAt: new Date(), contentType: undefined, raw: Buffer.from('x') });
    await pool.query(`UPDATE inbound_events SET raw_key_id = 'dk-gone' WHERE id = $1`, [id]);
    await expect(store.loadEvent(id)).rejects.toThrow(/encryption key "dk-gone" is not available/);
  });

  it('processes opening at once create one data key, one index key, one audit key and one media link key', async () => {
    const fresh = new pg.Pool({ connectionString: await createTestDatabase() });
    try {
      await runMigrations(fresh);
      const p = ring(['k1']);
      const codecs = await Promise.all([openEncryptingCodec(fresh, p), openEncryptingCodec(fresh, p), openEncryptingCodec(fresh, p)]);
      codecs.forEach((c) => c.close());
      expect(new Set(codecs.map((c) => c.activeKeyId())).size).toBe(1);
      expect((await fresh.query('SELECT purpose, count(*)::int AS n FROM encryption_keys GROUP BY purpose ORDER BY purpose')).rows).toEqual([
        { purpose: 'audit', n: 1 },
        { purpose: 'data', n: 1 },
        { purpose: 'index', n: 1 },
        { purpose: 'media_link', n: 1 },
      ]);
      expect(codecs[0]!.mediaLinkKey().id).toMatch(/^ml-/);
      expect(codecs[1]!.mediaLinkKey().key.equals(codecs[0]!.mediaLinkKey().key)).toBe(true);
      expect(await codecs[0]!.findMediaLinkKey(codecs[0]!.activeKeyId() ?? 'dk')).toBeUndefined(); // a data key is not a link key
    } finally {
      await fresh.end();
    }
  });
});

describe('media link keys made by another process', () => {
  it('are found at once: an unknown key id reloads the key table, at most once a second', async () => {
    const pool = new pg.Pool({ connectionString: await createTestDatabase() });
    try {
      await runMigrations(pool);
      const p = ring(['k1']);
      let now = 1_000_000;
      // A gateway that would re-read its keys only hourly on its own.
      const codec = await openEncryptingCodec(pool, p, { refreshMs: 3_600_000, now: () => now });
      try {
        expect(await codec.findMediaLinkKey('ml-unknown')).toBeUndefined(); // a reload, nothing found
        const first = await createDataKey(pool, p, 'media_link'); // `keys rotate --media-link` elsewhere
        now += 500;
        // Within the second after the last reload: not reloaded again (ids come from the network).
        expect(await codec.findMediaLinkKey(first)).toBeUndefined();
        now += 500;
        const found = await codec.findMediaLinkKey(first);
        expect(found?.key.length).toBe(32);
        expect(found?.retiredAt).toBeNull();
        expect(codec.mediaLinkKey().id).toBe(first);
        // The key it replaced is kept, retired when the new one was made.
        const second = await createDataKey(pool, p, 'media_link');
        now += 1000;
        await codec.findMediaLinkKey(second);
        const made = (await pool.query<{ created_at: Date }>('SELECT created_at FROM encryption_keys WHERE id = $1', [second])).rows[0]!.created_at;
        expect((await codec.findMediaLinkKey(first))?.retiredAt).toEqual(made);
      } finally {
        codec.close();
      }
    } finally {
      await pool.end();
    }
  });
});
