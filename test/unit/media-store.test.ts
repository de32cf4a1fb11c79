import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachmentOf } from '../../src/media/media-fetcher.js';
import { contentTypeAllowed, mediaPolicySchema } from '../../src/media/media-policy.js';
import { createFileMediaStore, describeBytes, reencryptMediaFiles, type MediaCipher } from '../../src/media/media-store.js';
import { open, seal } from '../../src/crypto/aead.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-media-store-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('content-addressed file media store', () => {
  it('stores bytes under their SHA-256, once, with the R4 SHA-1 (base64)', async () => {
    const store = createFileMediaStore(dir);
    const bytes = Buffer.from('hello media');
    const a = await store.put(bytes, 'text/plain');
    const b = await store.put(bytes, 'text/plain');
    expect(a.key).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(a.sha1Base64).toBe(createHash('sha1').update(bytes).digest('base64'));
    expect(Buffer.from(a.sha1Base64, 'base64')).toHaveLength(20);
    expect(b).toEqual(a);
    expect((await store.get(a.key))?.bytes.toString()).toBe('hello media');
    const files = await readdir(path.join(dir, a.key.slice(0, 2)));
    expect(files.sort()).toEqual([a.key, `${a.key}.json`]);
  });

  it('answers null for unknown, malformed or damaged keys (never a path outside the store)', async () => {
    const store = createFileMediaStore(dir);
    expect(await store.get('0'.repeat(64))).toBeNull();
    expect(await store.get('../../etc/passwd')).toBeNull();
    const info = await store.put(Buffer.from('will be damaged'), 'text/plain');
    await writeFile(path.join(dir, info.key.slice(0, 2), info.key), 'short');
    expect(await store.get(info.key)).toBeNull();
    // Writing again repairs it.
    await store.put(Buffer.from('will be damaged'), 'text/plain');
    expect((await store.get(info.key))?.bytes.toString()).toBe('will be damaged');
  });
});

describe('media policy', () => {
  it('matches content types by type/subtype or type/*, ignoring parameters', () => {
    const allowed = mediaPolicySchema.parse({}).allowed_types;
    expect(contentTypeAllowed('image/jpeg', allowed)).toBe(true);
    expect(contentTypeAllowed('audio/ogg; codecs=opus', allowed)).toBe(true);
    expect(contentTypeAllowed('application/pdf', allowed)).toBe(true);
    expect(contentTypeAllowed('application/zip', allowed)).toBe(false);
    expect(contentTypeAllowed('image', allowed)).toBe(false);
  });

  it('inline below the threshold, a URL above it', () => {
    const bytes = Buffer.alloc(100, 1);
    const info = describeBytes(bytes, 'image/png', new Date(0));
    const url = (k: string) => `https://sb.example/media/${k}`;
    expect(attachmentOf(info, bytes, mediaPolicySchema.parse({ inline_max_bytes: 100 }), { mediaUrl: url })).toEqual({ content_type: 'image/png', size: 100, hash: info.sha1Base64, data: bytes.toString('base64') });
    expect(attachmentOf(info, bytes, mediaPolicySchema.parse({ inline_max_bytes: 99 }), { mediaUrl: url })).toEqual({ content_type: 'image/png', size: 100, hash: info.sha1Base64, url: url(info.key) });
  });
});

describe('encrypted media files', () => {
  const keys: Record<string, Buffer> = { a: randomBytes(32), b: randomBytes(32) };
  const aad = (r: { table: string; column: string; rowId: string }) => Buffer.from(`${r.table}.${r.column}:${r.rowId}`);
  const cipherUnder = (active: string): MediaCipher => ({
    encode: async (plain, r) => ({ bytes: seal(keys[active]!, plain, aad(r)), keyId: active }),
    decode: async (bytes, keyId, r) => (keyId === null ? bytes : open(keys[keyId]!, bytes, aad(r))),
  });

  it('stores ciphertext bound to the key, re-encrypts older and plaintext files under the active key', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-media-enc-'));
    const secret = Buffer.from('photo of a rash: PATIENT-SECRET-BYTES');
    const info = await createFileMediaStore(dir, cipherUnder('a')).put(secret, 'image/jpeg');
    const legacy = await createFileMediaStore(dir).put(Buffer.from('plaintext from before encryption'), 'text/plain');
    const onDisk = await readFile(path.join(dir, info.key.slice(0, 2), info.key));
    expect(onDisk.includes(Buffer.from('PATIENT-SECRET'))).toBe(false);

    const store = createFileMediaStore(dir, cipherUnder('b'));
    expect((await store.get(info.key))?.bytes.equals(secret)).toBe(true);

    expect(await reencryptMediaFiles(dir, cipherUnder('b'), 'b')).toEqual({ rewritten: 2, interrupted: false, damaged: 0 });
    for (const k of [info.key, legacy.key]) {
      const meta = JSON.parse(await readFile(path.join(dir, k.slice(0, 2), `${k}.json`), 'utf8')) as { keyId: string };
      expect(meta.keyId).toBe('b');
    }
    expect((await store.get(info.key))?.bytes.equals(secret)).toBe(true);
    expect((await store.get(legacy.key))?.bytes.toString()).toBe('plaintext from before encryption');
    expect(await reencryptMediaFiles(dir, cipherUnder('b'), 'b')).toEqual({ rewritten: 0, interrupted: false, damaged: 0 });
  });

  it('a read caught between the two renames of a re-encryption (new bytes, old description) reads the file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-media-race-'));
    const secret = Buffer.from('a photo read while keys reencrypt runs');
    const info = await createFileMediaStore(dir, cipherUnder('a')).put(secret, 'image/jpeg');
    const bytesFile = path.join(dir, info.key.slice(0, 2), info.key);
    const metaFile = `${bytesFile}.json`;
    const oldMeta = await readFile(metaFile, 'utf8');
    // The re-encryption's first rename: the bytes under b, the description still says a.
    const enc = await cipherUnder('b').encode(secret, { table: 'media', column: 'bytes', rowId: info.key });
    await writeFile(bytesFile, enc.bytes);
    // The reader reads the old description and the new bytes; the second rename lands meanwhile.
    const cipher = cipherUnder('b');
    const racing: MediaCipher = {
      encode: cipher.encode,
      decode: async (bytes, keyId, r) => {
        if (keyId === 'a') await writeFile(metaFile, JSON.stringify({ ...(JSON.parse(oldMeta) as object), keyId: 'b' }));
        return cipher.decode(bytes, keyId, r);
      },
    };
    expect((await createFileMediaStore(dir, racing).get(info.key))?.bytes.equals(secret)).toBe(true);
    // Damaged bytes under an unchanged description are still no file.
    await writeFile(bytesFile, randomBytes(enc.bytes.length));
    expect(await createFileMediaStore(dir, cipher).get(info.key)).toBeNull();
  });

  it('a damaged file does not stop the re-encryption of the others', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-media-damaged-'));
    const store = createFileMediaStore(dir, cipherUnder('a'));
    const broken = await store.put(Buffer.from('a file whose bytes get damaged'), 'image/jpeg');
    const fine = await store.put(Buffer.from('a file that stays intact'), 'image/jpeg');
    await writeFile(path.join(dir, broken.key.slice(0, 2), broken.key), randomBytes(64));
    expect(await reencryptMediaFiles(dir, cipherUnder('b'), 'b')).toEqual({ rewritten: 1, interrupted: false, damaged: 1 });
    expect((await createFileMediaStore(dir, cipherUnder('b')).get(fine.key))?.bytes.toString()).toBe('a file that stays intact');
  });
});
