/** The value cipher and the keyring: authenticated, bound to where a value lives, keys never echoed. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DecryptError, open, seal } from '../../src/crypto/aead.js';
import { MissingKeyError } from '../../src/crypto/key-provider.js';
import { KeyringError, createKeyringProvider, formatKeyring, parseKeyring, resolveKeyring } from '../../src/crypto/keyring.js';

const key = randomBytes(32);

describe('AES-256-GCM values', () => {
  it('opens what it sealed, with a fresh nonce each time', () => {
    const aad = Buffer.from('messages.canonical:1');
    const a = seal(key, Buffer.from('hello'), aad);
    const b = seal(key, Buffer.from('hello'), aad);
    expect(a.equals(b)).toBe(false);
    expect(a.subarray(1, 13).equals(b.subarray(1, 13))).toBe(false);
    expect(open(key, a, aad).toString()).toBe('hello');
  });

  it('refuses a value bound to another row, an altered byte, or another key', () => {
    const sealed = seal(key, Buffer.from('hello'), Buffer.from('messages.canonical:1'));
    expect(() => open(key, sealed, Buffer.from('messages.canonical:2'))).toThrow(DecryptError);
    const altered = Buffer.from(sealed);
    altered[altered.length - 1]! ^= 1;
    expect(() => open(key, altered, Buffer.from('messages.canonical:1'))).toThrow(DecryptError);
    expect(() => open(randomBytes(32), sealed, Buffer.from('messages.canonical:1'))).toThrow(DecryptError);
  });
});

describe('keyring', () => {
  const k1 = randomBytes(32).toString('base64');
  const k2 = randomBytes(32).toString('base64');

  it('parses id:base64 entries, newest first, from commas or lines', () => {
    expect(parseKeyring(`k2:${k2},k1:${k1}`, 'ENCRYPTION_KEYS').map((e) => e.id)).toEqual(['k2', 'k1']);
    expect(parseKeyring(`# comment\nk2:${k2}\n\nk1:${k1}\n`, 'file').map((e) => e.id)).toEqual(['k2', 'k1']);
  });

  it('names the bad entry and never echoes key material', () => {
    const short = randomBytes(16).toString('base64');
    const err = (() => {
      try {
        parseKeyring(`k1:${k1},k2:${short}`, 'ENCRYPTION_KEYS');
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(KeyringError);
    expect(err!.message).toContain('"k2" must be 32 bytes');
    expect(err!.message).not.toContain(short);
    expect(err!.message).not.toContain(k1);
    expect(() => parseKeyring(`k1:${k1},k1:${k2}`, 'x')).toThrow(/appears twice/);
    expect(() => parseKeyring(k1, 'x')).toThrow(/id:base64/);
  });

  it('wraps under the newest key; unwrapping under a key that left the ring names its id', async () => {
    const ring = createKeyringProvider(parseKeyring(`k2:${k2},k1:${k1}`, 'x'), 'x');
    const dataKey = randomBytes(32);
    const w = await ring.wrap(dataKey, 'data:dk-1');
    expect(w.kekId).toBe('k2');
    expect((await ring.unwrap('k2', w.wrapped, 'data:dk-1')).equals(dataKey)).toBe(true);
    await expect(ring.unwrap('k2', w.wrapped, 'data:dk-2')).rejects.toThrow(DecryptError);
    const older = createKeyringProvider(parseKeyring(`k1:${k1}`, 'x'), 'ENCRYPTION_KEYS');
    await expect(older.unwrap('k2', w.wrapped, 'data:dk-1')).rejects.toThrow(MissingKeyError);
    await expect(older.unwrap('k2', w.wrapped, 'data:dk-1')).rejects.toThrow(/"k2"/);
  });

  it('zero-config generates DATA_DIR/encryption-keys with mode 600 and reuses it; production refuses', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-keyring-'));
    const first = await resolveKeyring({ dataDir: dir, production: false });
    expect(first.source).toBe('generated');
    const file = path.join(dir, 'encryption-keys');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = await resolveKeyring({ dataDir: dir, production: false });
    expect(again.source).toBe('DATA_DIR');
    expect(again.provider.keyIds()).toEqual(first.provider.keyIds());
    await expect(resolveKeyring({ dataDir: dir, production: true })).rejects.toThrow(/SWITCHBOARD_ENV=production needs encryption keys/);
    const fromEnv = await resolveKeyring({ keys: `k1:${k1}`, dataDir: dir, production: true });
    expect(fromEnv.provider.keyIds()).toEqual(['k1']);
    const fromFile = await resolveKeyring({ keysFile: file, dataDir: '/nonexistent', production: true });
    expect(fromFile.provider.keyIds()).toEqual(first.provider.keyIds());
    expect(formatKeyring(parseKeyring(await readFile(file, 'utf8'), file))).toBe(await readFile(file, 'utf8'));
  });
});
