/**
 * Retention of the message store on a real PostgreSQL: per-channel payload and metadata retention
 * by dropping whole weekly partitions; a message with a pending or dead-lettered delivery, and an
 * event not yet ingested, held back with what a replay needs; media files deleted with the last
 * message that refers to them; `switchboard store prune` (dry run and real) audited with the
 * chain still intact; a store that held messages before the partitioned layout carried over.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import type { CanonicalMessage } from '../../src/core/canonical-message.js';
import { SwitchboardError, classify } from '../../src/core/errors.js';
import type { Retention } from '../../src/core/retention.js';
import { createKeyringProvider, parseKeyring } from '../../src/crypto/keyring.js';
import { createFileMediaStore, removeMediaFile } from '../../src/media/media-store.js';
import { openEncryptingCodec, type EncryptingCodec } from '../../src/store/encrypting-codec.js';
import { MessageStore, indexKinds, ref } from '../../src/store/message-store.js';
import { migrations, runMigrations } from '../../src/store/migrations.js';
import { PRUNE_LOCK, RetentionStore } from '../../src/store/retention-store.js';
import { canonicalTextMessage } from '../support/canonical-text-message.js';
import { capturedIo } from '../support/cli-io.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';

const DAY = 86_400_000;
const textOf = (m: CanonicalMessage | 'pruned' | null) => (m === null || m === 'pruned' ? m : m.text);
const ago = (days: number) => new Date(Date.now() - days * DAY);
const short: Retention = { payloadDays: 7, metadataDays: 14 };
const payloadsOnly: Retention = { payloadDays: 7, metadataDays: 365 };

async function partitionsOf(pool: pg.Pool, table: string): Promise<string[]> {
  const res = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1 ORDER BY 1`,
    [table],
  );
  return res.rows.map((r) => r.name);
}

describe('message store retention', () => {
  let url: string;
  let ring: string;
  let pool: pg.Pool;
  let codec: EncryptingCodec;
  let store: MessageStore;
  let mediaDir: string;

  beforeAll(async () => {
    url = await createTestDatabase();
    ring = `ret-test:${randomBytes(32).toString('base64')}`;
    pool = new pg.Pool({ connectionString: url });
    await runMigrations(pool);
    codec = await openEncryptingCodec(pool, createKeyringProvider(parseKeyring(ring, 'test'), 'test'));
    store = new MessageStore(pool, codec);
    mediaDir = path.join(await mkdtemp(path.join(os.tmpdir(), 'sb-retention-')), 'media');
  });
  afterAll(async () => {
    codec?.close();
    await pool?.end();
    if (mediaDir) await rm(path.dirname(mediaDir), { recursive: true, force: true });
  });

  async function ingest(channelId: string, receivedAt: Date, retention: Retention, text: string, destinations = ['ehr']) {
    const message = canonicalTextMessage(text);
    const { eventId, pending } = await store.recordInboundIngested(
      { channelId, receivedAt, contentType: 'application/json', raw: Buffer.from(JSON.stringify({ text })), retention },
      { messages: [{ message, destinations, filtered: false }], statuses: [] },
    );
    return { eventId, message, messageId: pending[0]?.messageId ?? '', delivery: pending[0] };
  }

  const attempt = (deliveryId: string, generation: number, result: 'delivered' | 'dead_lettered', response: unknown) =>
    store.recordAttempt({
      deliveryId,
      generation,
      attempt: 1,
      startedAt: new Date(),
      result,
      mappingVersion: 'v1',
      response,
      ...(result === 'dead_lettered' ? { error: classify(new SwitchboardError('FHIR_HTTP_PERMANENT', 'refused by the EHR')) } : { detail: { id: 'Communication/1' } }),
    });

  it('drops whole weekly partitions: payloads after their retention, metadata after its own; a dead letter, a pending delivery and an event not ingested are held back and still work', async () => {
    // Gone entirely: payloads and metadata both past retention.
    const gone = await ingest('short', ago(40), short, 'gone entirely');
    await attempt(gone.delivery!.deliveryId, 0, 'delivered', { resourceType: 'Communication', id: '1' });
    // Payloads past retention, metadata kept for a year: carried without its payloads.
    const carried = await ingest('long', ago(20), payloadsOnly, 'payload goes, trace stays');
    await attempt(carried.delivery!.deliveryId, 0, 'delivered', { resourceType: 'Communication', id: '2' });
    // Expired, but its delivery is dead-lettered / still pending: never pruned.
    const dead = await ingest('short', ago(40), short, 'dead letter to replay');
    await attempt(dead.delivery!.deliveryId, 0, 'dead_lettered', { resourceType: 'OperationOutcome' });
    const pending = await ingest('short', ago(40), short, 'still pending');
    const notIngested = await store.recordInboundEvent({ channelId: 'short', receivedAt: ago(40), contentType: 'application/json', raw: Buffer.from('{"waiting":true}'), retention: short });
    // Fresh: untouched.
    const fresh = await ingest('short', new Date(), short, 'fresh');

    const retention = new RetentionStore(pool);
    const plan = await retention.plan();
    expect(plan.length).toBeGreaterThan(0);
    const held = plan.reduce((n, p) => ({ dead: n.dead + p.held.deadLetteredDeliveries, pending: n.pending + p.held.pendingDeliveries, events: n.events + p.held.eventsNotIngested }), { dead: 0, pending: 0, events: 0 });
    expect(held).toEqual({ dead: 1, pending: 1, events: 1 });
    expect(plan.flatMap((p) => p.partitions).find((t) => t.table === 'messages' && t.rows > 0)?.bytes).toBeGreaterThan(0);
    // A dry run changes nothing.
    expect(await store.messageContent(gone.messageId)).not.toBeNull();

    const expiredNames = plan.flatMap((p) => p.partitions.map((t) => t.name));
    // One row a statement, to carry in several batches before the drop transaction.
    const result = await retention.prune({ batch: 1 });
    expect(result?.weeks.map((w) => w.week)).toEqual(plan.map((p) => p.week));
    // Whole partitions went; none of them is left.
    const left = new Set((await Promise.all(['messages', 'deliveries', 'delivery_attempts', 'inbound_events'].map((t) => partitionsOf(pool, t)))).flat());
    for (const name of expiredNames) expect(left.has(name)).toBe(false);

    expect(await store.messageTrace(gone.messageId)).toBeNull();
    expect(await store.searchMessages({ sourceId: gone.message.id })).toEqual([]);

    // Metadata kept, payloads gone.
    const trace = await store.messageTrace(carried.messageId);
    expect(trace?.deliveries[0]?.state).toBe('delivered');
    expect(trace?.deliveries[0]?.history).toHaveLength(1);
    expect(trace?.deliveries[0]?.history[0]?.response).toBeNull();
    expect(trace?.sourceMessageId).toBe(carried.message.id);
    expect((await store.searchMessages({ sourceId: carried.message.id })).map((m) => m.id)).toEqual([carried.messageId]);
    expect(await store.messageContent(carried.messageId)).toBe('pruned');
    // Carried rows live in partitions of their own, which the delivery path does not read.
    const where = await pool.query<{ t: string }>('SELECT tableoid::regclass::text AS t FROM messages WHERE id = $1', [carried.messageId]);
    expect(where.rows[0]?.t).toMatch(/^messages_m\d{8}$/);
    expect(await store.loadEvent(carried.eventId)).toBeNull();

    // Held back with everything a replay needs: replayed, it is delivered.
    expect(textOf(await store.messageContent(dead.messageId))).toBe('dead letter to replay');
    expect((await store.getDelivery(dead.delivery!.deliveryId))?.history[0]?.response).toEqual({ resourceType: 'OperationOutcome' });
    const replay = await store.requeue(dead.delivery!.deliveryId, 'test', 'the EHR fixed its profile');
    expect(replay).not.toBeNull();
    expect((await store.loadPendingDelivery(dead.delivery!.deliveryId))?.message.text).toBe('dead letter to replay');
    await attempt(dead.delivery!.deliveryId, replay!.generation, 'delivered', { resourceType: 'Communication', id: '3' });
    const replayed = await store.messageTrace(dead.messageId);
    expect(replayed?.deliveries[0]?.state).toBe('delivered');
    expect(replayed?.deliveries[0]?.actions.map((a) => a.reason)).toEqual(['the EHR fixed its profile']);
    expect((await store.loadPendingDelivery(pending.delivery!.deliveryId))?.message.text).toBe('still pending');
    expect((await store.loadEvent(notIngested))?.raw.toString()).toBe('{"waiting":true}');
    expect(textOf(await store.messageContent(fresh.messageId))).toBe('fresh');

    // Deduplication still holds across partitions: the carried message again is not stored twice.
    await store.recordInboundIngested(
      { channelId: 'long', receivedAt: new Date(), contentType: 'application/json', raw: Buffer.from('{}'), retention: payloadsOnly },
      { messages: [{ message: carried.message, destinations: ['ehr'], filtered: false }], statuses: [] },
    );
    expect((await pool.query('SELECT count(*)::int AS n FROM messages WHERE channel_id = $1', ['long'])).rows[0].n).toBe(1);

    // Once delivered, the replayed message goes at the next run after its hold.
    const later = new RetentionStore(pool, () => new Date(Date.now() + 15 * DAY));
    await later.prune();
    expect(await store.messageTrace(dead.messageId)).toBeNull();
    expect((await store.loadPendingDelivery(pending.delivery!.deliveryId))?.message.text).toBe('still pending');
  });

  it('deletes media files with the last message that refers to them, after the drop; a crash in between leaves them to the next run', async () => {
    const media = createFileMediaStore(mediaDir, codec);
    const shared = await media.put(Buffer.from('shared image bytes'), 'image/png');
    const own = await media.put(Buffer.from('image only the old message has'), 'image/png');
    const withMedia = (m: CanonicalMessage, keys: string[]): CanonicalMessage => ({
      ...m,
      kind: 'image',
      media: keys.map((k) => ({ kind: 'image' as const, attachment: { content_type: 'image/png', size: 1, hash: 'x', url: `https://sb.example/media/${k}?exp=1&sig=x` } })),
    });
    const old = await ingest('media-old', ago(40), short, 'old with media');
    await store.updateCanonical(old.messageId, withMedia(old.message, [shared.key, own.key]));
    await attempt(old.delivery!.deliveryId, 0, 'delivered', {});
    const recent = await ingest('media-new', new Date(), short, 'recent with the same media');
    await store.updateCanonical(recent.messageId, withMedia(recent.message, [shared.key]));

    const file = (k: string) => path.join(mediaDir, k.slice(0, 2), k);
    // A crash after the drop committed: the files are recorded, not yet deleted.
    const crashing = new RetentionStore(pool);
    await expect(crashing.prune({ removeMedia: () => Promise.reject(new Error('killed')) })).rejects.toThrow('killed');
    expect(existsSync(file(own.key))).toBe(true);
    expect(await store.messageTrace(old.messageId)).toBeNull();

    const result = await new RetentionStore(pool).prune({ removeMedia: (k) => removeMediaFile(mediaDir, k) });
    expect(result?.mediaFilesDeleted).toBe(1);
    expect(existsSync(file(own.key))).toBe(false);
    expect(existsSync(`${file(own.key)}.json`)).toBe(false);
    expect(await media.get(own.key)).toBeNull();
    // Still referred to by a message in retention: kept.
    expect((await media.get(shared.key))?.bytes.toString()).toBe('shared image bytes');
    expect((await pool.query('SELECT count(*)::int AS n FROM media_deletions')).rows[0].n).toBe(0);
  });

  it('prunes in one process at a time: a run that finds another under way does nothing', async () => {
    const other = await pool.connect();
    try {
      expect((await other.query('SELECT pg_try_advisory_lock($1) AS ok', [PRUNE_LOCK])).rows[0].ok).toBe(true);
      const expired = await ingest('locked', ago(40), short, 'waits for the other run');
      await attempt(expired.delivery!.deliveryId, 0, 'delivered', {});
      expect(await new RetentionStore(pool).prune()).toBeNull();
      expect(textOf(await store.messageContent(expired.messageId))).toBe('waits for the other run');
      await other.query('SELECT pg_advisory_unlock($1)', [PRUNE_LOCK]);
      expect((await new RetentionStore(pool).prune())?.weeks.length).toBeGreaterThan(0);
      expect(await store.messageContent(expired.messageId)).toBeNull();
    } finally {
      other.release();
    }
  });

  it('switchboard store prune: --dry-run lists the partitions with rows and sizes and what is held back; without it drops them; both audited; audit verify still passes', async () => {
    const expired = await ingest('cli', ago(40), short, 'expired for the command');
    await attempt(expired.delivery!.deliveryId, 0, 'delivered', {});
    const dead = await ingest('cli', ago(40), short, 'dead letter for the command');
    await attempt(dead.delivery!.deliveryId, 0, 'dead_lettered', {});
    const env = { DATABASE_URL: url, ENCRYPTION_KEYS: ring, DATA_DIR: path.dirname(mediaDir) };

    const dry = capturedIo(env);
    expect(await runCli(['store', 'prune', '--dry-run'], dry)).toBe(0);
    expect(dry.out).toMatch(/would drop messages_w\d{8}: 2 rows, \d+ KiB/);
    expect(dry.out).toMatch(/would drop deliveries_w\d{8}: 2 rows/);
    expect(dry.out).toContain('held back (moved to a later week with their payloads): 1 messages with 0 pending and 1 dead-lettered deliveries, 0 events not yet ingested');
    expect(await store.messageContent(expired.messageId)).not.toBeNull();

    const prune = capturedIo(env);
    expect(await runCli(['store', 'prune'], prune)).toBe(0);
    expect(prune.out).toMatch(/dropped messages_w\d{8}: 1 rows/);
    expect(await store.messageContent(expired.messageId)).toBeNull();
    expect(textOf(await store.messageContent(dead.messageId))).toBe('dead letter for the command');

    const entries = (await pool.query<{ detail: Record<string, unknown>; resources: { id: string }[] }>(`SELECT detail, resources FROM audit_events WHERE action = 'store.pruned' ORDER BY seq`)).rows;
    // One entry per week, for the dry run and for the real one, each naming its partitions.
    const dryEntries = entries.filter((e) => e.detail['dry_run'] === true);
    const realEntries = entries.filter((e) => e.detail['dry_run'] === false);
    expect(dryEntries.length).toBeGreaterThan(0);
    expect(realEntries.map((e) => e.detail['week'])).toEqual(dryEntries.map((e) => e.detail['week']));
    expect(realEntries.some((e) => e.detail['held_dead_lettered'] === 1 && e.resources.some((r) => /^messages_w\d{8}$/.test(r.id)))).toBe(true);
    expect(JSON.stringify(entries)).not.toContain('dead letter for the command');
    // A dry run with nothing to drop is recorded too.
    const again = capturedIo(env);
    expect(await runCli(['store', 'prune', '--dry-run'], again)).toBe(0);
    expect(again.out).toMatch(/message store: [^\n]*\n  nothing to drop/);
    const last = (await pool.query<{ detail: Record<string, unknown> }>(`SELECT detail FROM audit_events WHERE action = 'store.pruned' ORDER BY seq DESC LIMIT 1`)).rows[0];
    expect(last?.detail).toMatchObject({ dry_run: true, weeks: 0 });
    const verify = capturedIo(env);
    expect(await runCli(['audit', 'verify'], verify)).toBe(0);
    expect(verify.out).toContain('audit trail intact');
  });
});

describe('a store that held messages before the partitioned layout', () => {
  it('carries every row over: content still decrypts, lookups and deduplication work, the dead letter replays, old rows get the default retention', async () => {
    const url = await createTestDatabase();
    const pool = new pg.Pool({ connectionString: url });
    const codec = await openEncryptingCodec(
      await (async () => (await runMigrations(pool, { through: Math.max(...migrations.filter((m) => m.version < 65).map((m) => m.version)) }), pool))(),
      createKeyringProvider(parseKeyring(`old:${randomBytes(32).toString('base64')}`, 'test'), 'test'),
    );
    try {
      // Rows as the store wrote them before: plain tables with unique keys and foreign keys.
      const enc = async (v: string, t: string, c: string, id: string) => codec.encode(Buffer.from(v), ref(t, c, id));
      const message = canonicalTextMessage('written before the partitions');
      const eventId = randomUUID();
      const messageId = randomUUID();
      const deliveryId = randomUUID();
      const raw = await enc('{"raw":1}', 'inbound_events', 'raw', eventId);
      await pool.query(`INSERT INTO inbound_events (id, channel_id, received_at, raw_payload, raw_key_id, state) VALUES ($1, 'old', now() - interval '100 days', $2, $3, 'ingested')`, [eventId, raw.bytes, raw.keyId]);
      const canonical = await enc(JSON.stringify(message), 'messages', 'canonical', messageId);
      const src = await enc(message.id, 'messages', 'source_id', messageId);
      await pool.query(
        `INSERT INTO messages (id, channel_id, event_id, source_kind, kind, sent_at, received_at, canonical_payload, canonical_key_id, source_id_payload, source_id_key_id, source_index, dedup_index, conversation_index)
         VALUES ($1, 'old', $2, 'whatsapp_cloud', 'text', now() - interval '100 days', now() - interval '100 days', $3, $4, $5, $6, $7, $8, $9)`,
        [messageId, eventId, canonical.bytes, canonical.keyId, src.bytes, src.keyId, codec.index(indexKinds.sourceId, message.id), codec.index(indexKinds.dedup, message.dedup_key), codec.index(indexKinds.conversation, message.conversation_id)],
      );
      await pool.query(`INSERT INTO deliveries (id, message_id, channel_id, destination, state, attempts, last_error_code, dead_lettered_at) VALUES ($1, $2, 'old', 'ehr', 'dead_lettered', 1, 'FHIR_REJECTED', now())`, [deliveryId, messageId]);
      const response = await enc('{"resourceType":"OperationOutcome"}', 'delivery_attempts', 'response', '1');
      await pool.query(
        `INSERT INTO delivery_attempts (id, delivery_id, generation, attempt, started_at, result, error_code, response_payload, response_key_id) VALUES (1, $1, 0, 1, now(), 'dead_lettered', 'FHIR_REJECTED', $2, $3)`,
        [deliveryId, response.bytes, response.keyId],
      );
      await pool.query(`SELECT setval('delivery_attempts_id_seq', 1)`);
      await pool.query(`INSERT INTO delivery_actions (delivery_id, action, actor, reason) VALUES ($1, 'replay', 'ops', 'tried once')`, [deliveryId]);

      expect(await runMigrations(pool)).toContain(65);
      const store = new MessageStore(pool, codec);
      expect(await partitionsOf(pool, 'messages')).not.toEqual([]);
      expect(textOf(await store.messageContent(messageId))).toBe('written before the partitions');
      expect((await store.loadEvent(eventId))?.raw.toString()).toBe('{"raw":1}');
      const found = await store.findMessage('old', message.id);
      expect(found?.deliveries[0]?.state).toBe('dead_lettered');
      const delivery = await store.getDelivery(deliveryId);
      expect(delivery?.history[0]?.response).toEqual({ resourceType: 'OperationOutcome' });
      expect((await store.messageTrace(messageId))?.deliveries[0]?.actions[0]?.reason).toBe('tried once');
      // Deduplication against the carried-over row.
      await store.recordInboundIngested({ channelId: 'old', receivedAt: new Date(), contentType: undefined, raw: Buffer.from('{}') }, { messages: [{ message, destinations: ['ehr'], filtered: false }], statuses: [] });
      expect((await pool.query(`SELECT count(*)::int AS n FROM messages`)).rows[0].n).toBe(1);
      // New attempt ids continue the old sequence.
      const replay = await store.requeue(deliveryId, 'ops', 'again');
      await store.recordAttempt({ deliveryId, generation: replay!.generation, attempt: 1, startedAt: new Date(), result: 'delivered', mappingVersion: 'v1', detail: { id: 'Communication/9' } });
      expect((await store.getDelivery(deliveryId))?.history.map((h) => h.result)).toEqual(['dead_lettered', 'delivered']);
      // Old rows get the default retention, counted from their arrival but at least 30 days from now.
      const dates = (await pool.query(`SELECT prune_after - current_date AS p, keep_until - (received_at AT TIME ZONE 'UTC')::date AS k FROM messages WHERE id = $1`, [messageId])).rows[0];
      expect(dates.p).toBeGreaterThanOrEqual(30);
      expect(dates.k).toBe(366);
    } finally {
      codec.close();
      await pool.end();
    }
  });
});

describe('a running gateway prunes on its own and a dead letter past its retention is still replayed and delivered', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let pool: pg.Pool;
  const logs: string[] = [];

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    const databaseUrl = await createTestDatabase();
    pool = new pg.Pool({ connectionString: databaseUrl });
    const logStream = new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    gw = await startGateway({ databaseUrl, redisUrl: redisUrl(), fhirBaseUrl: proxy.url, logStream });
  });
  afterAll(async () => {
    await gw?.stop();
    await pool?.end();
    await proxy?.close();
    await fhir?.close();
  });

  const deliveryOf = async (wamid: string) => {
    const r = await gw.admin(`/admin/messages?channel=whatsapp-to-ehr&source_id=${encodeURIComponent(wamid)}`);
    if (r.status !== 200) return undefined;
    return ((await r.json()) as { id: string; deliveries: { id: string; state: string }[] }) ?? undefined;
  };
  const settled = (wamid: string) =>
    waitFor(`delivery of ${wamid}`, async () => {
      const m = await deliveryOf(wamid);
      return m && m.deliveries[0] && m.deliveries[0].state !== 'pending' ? { messageId: m.id, ...m.deliveries[0] } : undefined;
    });
  const communications = async (wamid: string) => {
    const r = await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`https://switchboard.example/sid/whatsapp-message-id|${wamid}`)}`, { headers: { accept: 'application/fhir+json' } });
    return ((await r.json()) as { entry?: unknown[] }).entry ?? [];
  };
  /** As if the message had arrived 40 days ago under a 7-day / 14-day retention. */
  const backdate = async (messageId: string) => {
    await pool.query(`SELECT switchboard_ensure_retention_week(current_date - 40)`);
    const past = `prune_after = current_date - 40, keep_until = current_date - 33`;
    await pool.query(`UPDATE delivery_attempts SET ${past} WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id = $1)`, [messageId]);
    await pool.query(`UPDATE delivery_actions SET ${past} WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id = $1)`, [messageId]);
    await pool.query(`UPDATE deliveries SET ${past} WHERE message_id = $1`, [messageId]);
    await pool.query(`UPDATE inbound_events SET ${past} WHERE id = (SELECT event_id FROM messages WHERE id = $1)`, [messageId]);
    await pool.query(`UPDATE messages SET ${past} WHERE id = $1`, [messageId]);
  };

  it('holds the dead letter back, drops the delivered message, logs one line, and the replay reaches the EHR once', async () => {
    const delivered = newWamid();
    expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: delivered }))).status).toBe(200);
    const ok = await settled(delivered);
    expect(ok.state).toBe('delivered');

    const wamid = newWamid();
    let rejecting = true;
    proxy.setRule((req) =>
      rejecting && req.method === 'POST' && req.url.startsWith('/fhir/R4/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'business-rule' }] }) }
        : { kind: 'pass' },
    );
    try {
      expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid }))).status).toBe(200);
      const dead = await settled(wamid);
      expect(dead.state).toBe('dead_lettered');
      await backdate(ok.messageId);
      await backdate(dead.messageId);

      const before = logs.length;
      await gw.app.internals.pruner!.runOnce();
      const lines = logs.slice(before).filter((l) => l.includes('store prune'));
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({ msg: expect.stringMatching(/^store prune: dropped 1 week\(s\) of the message store/), heldMessages: 1 });
      expect(lines[0]).not.toContain(wamid);

      expect(await deliveryOf(delivered)).toBeUndefined();
      rejecting = false;
      const replay = await gw.admin(`/admin/dead-letters/${dead.id}/replay`, { method: 'POST', body: JSON.stringify({ reason: 'profile fixed' }) });
      expect(replay.status).toBe(202);
      expect((await settled(wamid)).state).toBe('delivered');
      expect(await communications(wamid)).toHaveLength(1);
      const pruned = await pool.query(`SELECT detail FROM audit_events WHERE action = 'store.pruned'`);
      expect(pruned.rows.map((r) => (r as { detail: Record<string, unknown> }).detail)).toEqual([expect.objectContaining({ dry_run: false, held_dead_lettered: 1 })]);
    } finally {
      proxy.setRule(() => ({ kind: 'pass' }));
    }
  });
});
