/**
 * Envelope encryption for the store. Data keys (random 32 bytes) encrypt values; each is kept in
 * table `encryption_keys` only wrapped by a key-encryption key from the KeyProvider. The newest
 * data key is active; older ones stay for reading until `switchboard keys reencrypt` has moved
 * every row. One separate key (purpose `index`) computes blind indexes of identifiers.
 *
 * Another process (the `keys rotate` command) may add a data key at any time: the codec reloads
 * the key table every `refreshMs` and whenever it meets an unknown key id (for media link keys,
 * which anyone may present in a link, at most once a second).
 */
import { randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import { KEY_BYTES, open, seal } from '../crypto/aead.js';
import { MissingKeyError, type KeyProvider } from '../crypto/key-provider.js';
import { blindIndex, type PayloadCodec, type PayloadRef } from './payload-codec.js';

const KEYS_LOCK = 0x5b_0a_2d_02; // "switchboard data keys"

export interface DataKeyRow {
  id: string;
  purpose: KeyPurpose;
  kek_id: string;
  wrapped: Buffer;
  created_at: Date;
}

export type KeyPurpose = 'data' | 'index' | 'audit' | 'media_link';

export const wrapContext = (purpose: string, id: string) => `${purpose}:${id}`;

const idPrefix: Record<KeyPurpose, string> = { data: 'dk', index: 'ix', audit: 'au', media_link: 'ml' };

export function newDataKeyId(purpose: KeyPurpose, now = new Date()): string {
  return `${idPrefix[purpose]}-${now.toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
}

/** Inserts a new data key wrapped under the provider's newest KEK. */
export async function createDataKey(q: Pick<Pool, 'query'>, provider: KeyProvider, purpose: KeyPurpose): Promise<string> {
  const id = newDataKeyId(purpose);
  const { kekId, wrapped } = await provider.wrap(randomBytes(KEY_BYTES), wrapContext(purpose, id));
  await q.query('INSERT INTO encryption_keys (id, purpose, kek_id, wrapped) VALUES ($1, $2, $3, $4)', [id, purpose, kekId, wrapped]);
  return id;
}

/** Creates the first data key, the index key, the audit key and the media link key if the database has none (safe under concurrency). */
export async function ensureDataKeys(pool: Pool, provider: KeyProvider): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1)', [KEYS_LOCK]);
    const have = await c.query<{ purpose: string }>('SELECT DISTINCT purpose FROM encryption_keys');
    const purposes = new Set(have.rows.map((r) => r.purpose));
    if (!purposes.has('data')) await createDataKey(c, provider, 'data');
    if (!purposes.has('index')) await createDataKey(c, provider, 'index');
    if (!purposes.has('audit')) await createDataKey(c, provider, 'audit');
    if (!purposes.has('media_link')) await createDataKey(c, provider, 'media_link');
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export async function loadDataKeyRows(q: Pick<Pool, 'query'>): Promise<DataKeyRow[]> {
  return (await q.query<DataKeyRow>('SELECT id, purpose, kek_id, wrapped, created_at FROM encryption_keys ORDER BY seq DESC')).rows;
}

export function payloadAad(ref: PayloadRef, keyId: string): Buffer {
  return Buffer.from(`switchboard:v1:${ref.table}.${ref.column}:${ref.rowId}:${keyId}`);
}

/** A media link key as the verifier needs it. */
export interface MediaLinkKey {
  key: Buffer;
  /** When a newer media link key replaced it (`keys rotate --media-link`); null for the current one. */
  retiredAt: Date | null;
}

/** At most one reload of the key table a second for unknown media link key ids (they come from the network). */
const UNKNOWN_MEDIA_LINK_RELOAD_MS = 1000;

export interface EncryptingCodec extends PayloadCodec {
  /** The audit key (HMAC-SHA256 of audit entries) and its id. */
  auditKey(): { id: string; key: Buffer };
  /** The newest media link key (HMAC-SHA256 of signed media URLs) and its id. */
  mediaLinkKey(): { id: string; key: Buffer };
  /**
   * A media link key by id (links signed before a rotation, or with a key another process made a
   * moment ago: an unknown id reloads the key table first, at most once a second); undefined for
   * unknown ids, dropped keys and keys of other purposes.
   */
  findMediaLinkKey(id: string): Promise<MediaLinkKey | undefined>;
  /** Any known key by id (audit verification of entries written under an older audit key). */
  keyById(id: string): Promise<Buffer>;
  /** Reloads the key table (picks up a rotation done by another process). */
  refresh(): Promise<void>;
  close(): void;
}

export async function openEncryptingCodec(pool: Pool, provider: KeyProvider, o: { refreshMs?: number; now?: () => number } = {}): Promise<EncryptingCodec> {
  const clock = o.now ?? Date.now;
  await ensureDataKeys(pool, provider);
  const keys = new Map<string, Buffer>();
  let active = '';
  let indexKey: Buffer = Buffer.alloc(0);
  let audit: { id: string; key: Buffer } = { id: '', key: Buffer.alloc(0) };
  let mediaLink: { id: string; key: Buffer } = { id: '', key: Buffer.alloc(0) };
  let mediaLinkKeys = new Map<string, MediaLinkKey>();
  let lastUnknownMediaLinkReload = 0;

  async function refresh(): Promise<void> {
    const rows = await loadDataKeyRows(pool);
    for (const r of rows) {
      if (!keys.has(r.id)) keys.set(r.id, await provider.unwrap(r.kek_id, r.wrapped, wrapContext(r.purpose, r.id)));
    }
    const newestData = rows.find((r) => r.purpose === 'data');
    const oldestIndex = rows.filter((r) => r.purpose === 'index').at(-1);
    const newestAudit = rows.find((r) => r.purpose === 'audit');
    const newestMediaLink = rows.find((r) => r.purpose === 'media_link');
    if (!newestData || !oldestIndex || !newestAudit || !newestMediaLink) throw new Error('encryption_keys lacks a data, index, audit or media link key');
    active = newestData.id;
    indexKey = keys.get(oldestIndex.id)!;
    audit = { id: newestAudit.id, key: keys.get(newestAudit.id)! };
    mediaLink = { id: newestMediaLink.id, key: keys.get(newestMediaLink.id)! };
    // Newest first: each older media link key was retired when the one before it was made. A key
    // dropped from the table (after the longest link lifetime) is gone from this map too.
    const links = new Map<string, MediaLinkKey>();
    let newer: Date | null = null;
    for (const r of rows) {
      if (r.purpose !== 'media_link') continue;
      links.set(r.id, { key: keys.get(r.id)!, retiredAt: newer });
      newer = r.created_at;
    }
    mediaLinkKeys = links;
  }
  await refresh();

  let refreshing: Promise<void> | undefined;
  const refreshOnce = () => (refreshing ??= refresh().finally(() => (refreshing = undefined)));
  const timer = setInterval(() => void refreshOnce().catch(() => undefined), o.refreshMs ?? 5000);
  timer.unref();

  async function keyById(keyId: string): Promise<Buffer> {
    let key = keys.get(keyId);
    if (!key) {
      await refreshOnce();
      key = keys.get(keyId);
    }
    if (!key) throw new MissingKeyError(keyId, 'no data key with this id in table encryption_keys');
    return key;
  }

  return {
    auditKey: () => audit,
    mediaLinkKey: () => mediaLink,
    async findMediaLinkKey(id) {
      const known = mediaLinkKeys.get(id);
      if (known) return known;
      const now = clock();
      if (now - lastUnknownMediaLinkReload < UNKNOWN_MEDIA_LINK_RELOAD_MS) return undefined;
      lastUnknownMediaLinkReload = now;
      // The database unreachable: the link is refused as signed with an unknown key, not a 500.
      await refreshOnce().catch(() => undefined);
      return mediaLinkKeys.get(id);
    },
    keyById,
    async encode(plain, ref) {
      const keyId = active;
      return { bytes: seal(keys.get(keyId)!, plain, payloadAad(ref, keyId)), keyId };
    },
    async decode(bytes, keyId, ref) {
      if (keyId === null) return bytes;
      return open(await keyById(keyId), bytes, payloadAad(ref, keyId));
    },
    index: (kind, value) => blindIndex(indexKey, kind, value),
    activeKeyId: () => active,
    refresh: refreshOnce,
    close: () => clearInterval(timer),
  };
}
