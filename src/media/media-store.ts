/**
 * Durable storage of downloaded media. Content-addressed: the key is the SHA-256 (hex) of the
 * bytes, so the same file received twice is stored once and a key can never point at other bytes.
 *
 * `MediaStore` is the seam: today a directory (DATA_DIR/media); later PostgreSQL large objects or
 * object storage. Files are encrypted at rest by the store's codec (AES-256-GCM, bound to the media
 * key); the key stays the hash of the PLAINTEXT. Nothing here logs content.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';

export interface StoredMediaInfo {
  /** SHA-256 of the bytes, lower-case hex: the content address. */
  key: string;
  size: number;
  contentType: string;
  /** SHA-1 of the bytes, base64: FHIR R4 Attachment.hash. */
  sha1Base64: string;
  /** When these bytes were first stored (ISO instant). */
  storedAt: string;
}

export interface MediaStore {
  /** Stores the bytes (idempotent: same bytes, same key, stored once). */
  put(bytes: Buffer, contentType: string): Promise<StoredMediaInfo>;
  /** The bytes and their description, or null when the key is unknown. */
  get(key: string): Promise<{ info: StoredMediaInfo; bytes: Buffer } | null>;
  /** The description only. */
  stat(key: string): Promise<StoredMediaInfo | null>;
}

export const MEDIA_KEY = /^[0-9a-f]{64}$/;

/** Encrypts file contents (the store's PayloadCodec fits). Without one, files are plaintext. */
export interface MediaCipher {
  encode(plain: Buffer, ref: { table: string; column: string; rowId: string }): Promise<{ bytes: Buffer; keyId: string | null }>;
  decode(bytes: Buffer, keyId: string | null, ref: { table: string; column: string; rowId: string }): Promise<Buffer>;
}

const mediaRef = (key: string) => ({ table: 'media', column: 'bytes', rowId: key });

const infoSchema = z.object({
  key: z.string().regex(MEDIA_KEY),
  size: z.number().int().nonnegative(),
  contentType: z.string(),
  sha1Base64: z.string(),
  storedAt: z.string(),
  /** Data key of the file's ciphertext; absent or null: plaintext. */
  keyId: z.string().nullable().optional(),
});

export function describeBytes(bytes: Buffer, contentType: string, storedAt: Date): StoredMediaInfo {
  return {
    key: createHash('sha256').update(bytes).digest('hex'),
    size: bytes.length,
    contentType,
    sha1Base64: createHash('sha1').update(bytes).digest('base64'),
    storedAt: storedAt.toISOString(),
  };
}

/**
 * Files under `dir`: `<aa>/<key>` (the bytes) and `<aa>/<key>.json` (the description), each
 * written to a temporary name and renamed, so a crash never leaves a half-written file under a
 * valid key.
 */
export function createFileMediaStore(dir: string, cipher?: MediaCipher): MediaStore {
  const where = (key: string): { bytes: string; meta: string; folder: string } => {
    const folder = path.join(dir, key.slice(0, 2));
    return { folder, bytes: path.join(folder, key), meta: path.join(folder, `${key}.json`) };
  };

  async function atomicWrite(file: string, data: Buffer | string): Promise<void> {
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, data, { mode: 0o600 });
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  async function readMeta(key: string): Promise<z.infer<typeof infoSchema> | null> {
    if (!MEDIA_KEY.test(key)) return null;
    try {
      const parsed = infoSchema.safeParse(JSON.parse(await readFile(where(key).meta, 'utf8')));
      return parsed.success && parsed.data.key === key ? parsed.data : null;
    } catch {
      return null;
    }
  }
  const describe = (m: z.infer<typeof infoSchema>): StoredMediaInfo => ({ key: m.key, size: m.size, contentType: m.contentType, sha1Base64: m.sha1Base64, storedAt: m.storedAt });
  const readInfo = async (key: string) => {
    const m = await readMeta(key);
    return m === null ? null : describe(m);
  };

  /**
   * One read of a file and its description; `mismatch` when the bytes do not decode under the
   * description's key or do not match it (damaged, or caught between the two renames of
   * `keys reencrypt`).
   */
  async function readOnce(key: string, meta: z.infer<typeof infoSchema>): Promise<{ info: StoredMediaInfo; bytes: Buffer } | 'mismatch' | null> {
    let stored: Buffer;
    try {
      stored = await readFile(where(key).bytes);
    } catch {
      return null;
    }
    const keyId = meta.keyId ?? null;
    if (keyId !== null && !cipher) throw new Error(`media ${key} is encrypted under key "${keyId}" but no key provider is configured`);
    let bytes: Buffer;
    try {
      bytes = keyId === null || !cipher ? stored : await cipher.decode(stored, keyId, mediaRef(key));
    } catch (err) {
      if (err instanceof Error && err.name === 'DecryptError') return 'mismatch';
      throw err;
    }
    if (bytes.length !== meta.size || createHash('sha256').update(bytes).digest('hex') !== key) return 'mismatch';
    return { info: describe(meta), bytes };
  }

  async function get(key: string): Promise<{ info: StoredMediaInfo; bytes: Buffer } | null> {
    const meta = await readMeta(key);
    if (meta === null) return null;
    const first = await readOnce(key, meta);
    if (first !== 'mismatch') return first;
    // keys reencrypt renames the new bytes before the new description: read both again once if the
    // description changed meanwhile; else the file is damaged.
    const again = await readMeta(key);
    if (again === null || (again.keyId ?? null) === (meta.keyId ?? null)) return null;
    const second = await readOnce(key, again);
    return second === 'mismatch' ? null : second;
  }

  return {
    async put(bytes, contentType) {
      const info = describeBytes(bytes, contentType, new Date());
      const existing = await readMeta(info.key);
      if (existing !== null) {
        // Stored already, unless the file was damaged (then writing again repairs it).
        const intact = await get(info.key).then((g) => g !== null, () => false);
        if (intact) return describe(existing);
      }
      const w = where(info.key);
      await mkdir(w.folder, { recursive: true, mode: 0o700 });
      const stored = cipher ? await cipher.encode(bytes, mediaRef(info.key)) : { bytes, keyId: null };
      // Bytes first, then the description: a key with a description always has its bytes.
      await atomicWrite(w.bytes, stored.bytes);
      await atomicWrite(w.meta, JSON.stringify({ ...info, keyId: stored.keyId }));
      return info;
    },
    get,
    stat: readInfo,
  };
}

/**
 * Rewrites every media file not under `activeKeyId` (plaintext files included) under it, for
 * `switchboard keys reencrypt`. Each file is written to a temporary name and renamed, bytes before
 * description; a concurrent reader that finds the new bytes beside the old description reads the
 * description again (see get).
 */
export async function reencryptMediaFiles(dir: string, cipher: MediaCipher, activeKeyId: string, signal?: AbortSignal): Promise<{ rewritten: number; interrupted: boolean; damaged: number }> {
  let rewritten = 0;
  let damaged = 0;
  let folders: string[];
  try {
    folders = (await readdir(dir)).filter((f) => /^[0-9a-f]{2}$/.test(f));
  } catch {
    return { rewritten, interrupted: false, damaged };
  }
  for (const folder of folders) {
    for (const name of await readdir(path.join(dir, folder))) {
      if (signal?.aborted) return { rewritten, interrupted: true, damaged };
      const key = /^([0-9a-f]{64})\.json$/.exec(name)?.[1];
      if (!key) continue;
      const metaFile = path.join(dir, folder, name);
      const parsed = infoSchema.safeParse(JSON.parse(await readFile(metaFile, 'utf8')));
      if (!parsed.success || (parsed.data.keyId ?? null) === activeKeyId) continue;
      const bytesFile = path.join(dir, folder, key);
      let plain: Buffer;
      try {
        plain = await cipher.decode(await readFile(bytesFile), parsed.data.keyId ?? null, mediaRef(key));
      } catch (err) {
        // A damaged file (or bytes gone) is left as it is (reads answer no file); the others go on.
        if ((err instanceof Error && err.name === 'DecryptError') || (err as NodeJS.ErrnoException).code === 'ENOENT') {
          damaged++;
          continue;
        }
        throw err;
      }
      const enc = await cipher.encode(plain, mediaRef(key));
      for (const [file, data] of [
        [bytesFile, enc.bytes],
        [metaFile, JSON.stringify({ ...parsed.data, keyId: enc.keyId })],
      ] as const) {
        const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
        await writeFile(tmp, data, { mode: 0o600 });
        await rename(tmp, file);
      }
      rewritten++;
    }
  }
  return { rewritten, interrupted: false, damaged };
}

/**
 * Deletes a stored file and its description (retention: no message refers to it any more). The
 * description goes first, so a reader never finds a description without its bytes; a file that is
 * already gone is no error.
 */
export async function removeMediaFile(dir: string, key: string): Promise<void> {
  if (!MEDIA_KEY.test(key)) throw new Error('not a media key');
  const folder = path.join(dir, key.slice(0, 2));
  await rm(path.join(folder, `${key}.json`), { force: true });
  await rm(path.join(folder, key), { force: true });
}
