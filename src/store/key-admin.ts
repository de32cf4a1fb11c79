/**
 * Key management behind `switchboard keys`: status, rotation (a new active data key, and every
 * data key re-wrapped under the newest key-encryption key), rotation of the media link key, and
 * online re-encryption of rows written under older data keys or in plaintext (NULL key id), in
 * batches.
 */
import type { Pool } from 'pg';
import type { KeyProvider } from '../crypto/key-provider.js';
import { createDataKey, loadDataKeyRows, wrapContext, type EncryptingCodec } from './encrypting-codec.js';
import { encryptedColumns, type EncryptedColumn } from './encrypted-columns.js';

const KEYS_LOCK = 0x5b_0a_2d_02;

export interface KeyStatus {
  keks: { id: string; newest: boolean }[];
  dataKeys: { id: string; purpose: string; kekId: string; createdAt: Date; active: boolean; kekAvailable: boolean }[];
  /** Rows per column and key id ('plaintext' for NULL). */
  rows: { table: string; column: string; keyId: string; count: number }[];
}

export async function keyStatus(pool: Pool, provider: KeyProvider): Promise<KeyStatus> {
  const keks = provider.keyIds();
  const rows = await loadDataKeyRows(pool);
  const active = rows.find((r) => r.purpose === 'data')?.id;
  const counts: KeyStatus['rows'] = [];
  for (const c of encryptedColumns) {
    const res = await pool.query<{ key_id: string | null; n: string }>(
      `SELECT ${c.keyId} AS key_id, count(*) AS n FROM ${c.table} WHERE ${c.payload} IS NOT NULL GROUP BY ${c.keyId} ORDER BY 1`,
    );
    for (const r of res.rows) counts.push({ table: c.table, column: c.column, keyId: r.key_id ?? 'plaintext', count: Number(r.n) });
  }
  return {
    keks: keks.map((id, i) => ({ id, newest: i === 0 })),
    dataKeys: rows.map((r) => ({ id: r.id, purpose: r.purpose, kekId: r.kek_id, createdAt: r.created_at, active: r.id === active, kekAvailable: keks.includes(r.kek_id) })),
    rows: counts,
  };
}

/**
 * Re-wraps every data key not under the newest KEK (KEK rotation) and adds a new active data key
 * (data key rotation). Running gateways start writing under the new key within seconds.
 */
export async function rotateKeys(pool: Pool, provider: KeyProvider): Promise<{ newKeyId: string; rewrapped: string[] }> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1)', [KEYS_LOCK]);
    const newest = provider.keyIds()[0];
    const rewrapped: string[] = [];
    for (const r of await loadDataKeyRows(c)) {
      if (r.kek_id === newest) continue;
      const plain = await provider.unwrap(r.kek_id, r.wrapped, wrapContext(r.purpose, r.id));
      const w = await provider.wrap(plain, wrapContext(r.purpose, r.id));
      await c.query('UPDATE encryption_keys SET kek_id = $2, wrapped = $3 WHERE id = $1', [r.id, w.kekId, w.wrapped]);
      rewrapped.push(r.id);
    }
    const newKeyId = await createDataKey(c, provider, 'data');
    await c.query('COMMIT');
    return { newKeyId, rewrapped };
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export interface MediaLinkRotation {
  newKeyId: string;
  /** The key that signed links until now; they stay valid until they expire. */
  previousKeyId: string | undefined;
  /** Older media link keys, retired before `dropRetiredBefore`, deleted now. */
  dropped: string[];
}

/**
 * A new media link key: links are signed with it from now on (running gateways within seconds;
 * one that meets its id in a link reloads the keys at once). Links signed with the previous key
 * stay valid until they expire; keys retired before `dropRetiredBefore` (longer ago than the
 * longest link lifetime) are deleted, so no link signed with them is accepted any more.
 */
export async function rotateMediaLinkKey(pool: Pool, provider: KeyProvider, o: { dropRetiredBefore: Date }): Promise<MediaLinkRotation> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1)', [KEYS_LOCK]);
    const links = (await loadDataKeyRows(c)).filter((r) => r.purpose === 'media_link'); // newest first
    const dropped: string[] = [];
    // links[i] was retired when links[i - 1] was made.
    for (let i = 1; i < links.length; i++) if (links[i - 1]!.created_at < o.dropRetiredBefore) dropped.push(links[i]!.id);
    if (dropped.length > 0) await c.query("DELETE FROM encryption_keys WHERE purpose = 'media_link' AND id = ANY($1::text[])", [dropped]);
    const newKeyId = await createDataKey(c, provider, 'media_link');
    await c.query('COMMIT');
    return { newKeyId, previousKeyId: links[0]?.id, dropped };
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export interface ReencryptProgress {
  table: string;
  column: string;
  rewritten: number;
  /** Rows under other keys when this column was started. */
  total: number;
}

/**
 * Rewrites every value not under the active data key, batch by batch, each row with a
 * compare-and-set (a row the gateway changed meanwhile is left to it: it writes under the active
 * key). Passes repeat until one finds nothing left, so rows written under the old key by a
 * gateway that had not yet seen the rotation are caught. Stops between batches when `signal`
 * aborts; running it again resumes (it selects by key id).
 */
export async function reencrypt(
  pool: Pool,
  codec: EncryptingCodec,
  o: { batch?: number; signal?: AbortSignal; onProgress?: (p: ReencryptProgress) => void; maxPasses?: number } = {},
): Promise<{ rewritten: number; interrupted: boolean; remaining: number }> {
  await codec.refresh();
  const active = codec.activeKeyId();
  if (active === null) throw new Error('no active data key');
  const batch = o.batch ?? 500;
  let rewritten = 0;
  for (let pass = 0; pass < (o.maxPasses ?? 20); pass++) {
    let found = 0;
    for (const c of encryptedColumns) {
      const total = await notUnder(pool, c, active);
      if (total === 0) continue;
      found += total;
      let done = 0;
      let after: string | null = null;
      for (;;) {
        if (o.signal?.aborted) return { rewritten, interrupted: true, remaining: await remaining(pool, active) };
        const res: { rows: { id: string; payload: Buffer; key_id: string | null }[] } = await pool.query(
          `SELECT ${c.id}::text AS id, ${c.payload} AS payload, ${c.keyId} AS key_id FROM ${c.table}
           WHERE ${c.payload} IS NOT NULL AND ${c.keyId} IS DISTINCT FROM $1 ${after === null ? '' : `AND ${c.id} > $3`}
           ORDER BY ${c.id} LIMIT $2`,
          after === null ? [active, batch] : [active, batch, after],
        );
        if (res.rows.length === 0) break;
        let changed = 0;
        for (const r of res.rows) {
          const ref = { table: c.table, column: c.column, rowId: r.id };
          const plain = await codec.decode(r.payload, r.key_id, ref);
          const enc = await codec.encode(plain, ref);
          const u = await pool.query(
            `UPDATE ${c.table} SET ${c.payload} = $2, ${c.keyId} = $3 WHERE ${c.id} = $1 AND ${c.payload} = $4 AND ${c.keyId} IS NOT DISTINCT FROM $5`,
            [r.id, enc.bytes, enc.keyId, r.payload, r.key_id],
          );
          changed += u.rowCount ?? 0;
        }
        done += changed;
        rewritten += changed;
        after = res.rows.at(-1)!.id;
        o.onProgress?.({ table: c.table, column: c.column, rewritten: done, total });
      }
    }
    if (found === 0) break;
  }
  return { rewritten, interrupted: false, remaining: await remaining(pool, active) };
}

async function notUnder(pool: Pool, c: EncryptedColumn, keyId: string): Promise<number> {
  const res = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${c.table} WHERE ${c.payload} IS NOT NULL AND ${c.keyId} IS DISTINCT FROM $1`, [keyId]);
  return Number(res.rows[0]?.n ?? 0);
}

async function remaining(pool: Pool, active: string): Promise<number> {
  let n = 0;
  for (const c of encryptedColumns) n += await notUnder(pool, c, active);
  return n;
}
