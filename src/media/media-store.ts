/**
 * Durable storage of downloaded media. Content-addressed: the key is the SHA-256 (hex) of the
 * bytes, so the same file received twice is stored once and a key can never point at other bytes.
 *
 * `MediaStore` is the seam: today a directory (DATA_DIR/media); later PostgreSQL large objects or
 * object storage, with encryption at rest (a store that encrypts keeps the key = hash of the
 * PLAINTEXT, and adds its own envelope). Nothing here logs content.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
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

const infoSchema = z.object({
  key: z.string().regex(MEDIA_KEY),
  size: z.number().int().nonnegative(),
  contentType: z.string(),
  sha1Base64: z.string(),
  storedAt: z.string(),
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
export function createFileMediaStore(dir: string): MediaStore {
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

  async function readInfo(key: string): Promise<StoredMediaInfo | null> {
    if (!MEDIA_KEY.test(key)) return null;
    try {
      const parsed = infoSchema.safeParse(JSON.parse(await readFile(where(key).meta, 'utf8')));
      return parsed.success && parsed.data.key === key ? parsed.data : null;
    } catch {
      return null;
    }
  }

  return {
    async put(bytes, contentType) {
      const info = describeBytes(bytes, contentType, new Date());
      const existing = await readInfo(info.key);
      if (existing !== null) {
        const s = await stat(where(info.key).bytes).catch(() => null);
        if (s !== null && s.size === existing.size) return existing;
      }
      const w = where(info.key);
      await mkdir(w.folder, { recursive: true, mode: 0o700 });
      // Bytes first, then the description: a key with a description always has its bytes.
      await atomicWrite(w.bytes, bytes);
      await atomicWrite(w.meta, JSON.stringify(info));
      return info;
    },
    async get(key) {
      const info = await readInfo(key);
      if (info === null) return null;
      try {
        const bytes = await readFile(where(key).bytes);
        if (bytes.length !== info.size) return null;
        return { info, bytes };
      } catch {
        return null;
      }
    },
    stat: readInfo,
  };
}
