/**
 * The local keyring: KEKs given as `ENCRYPTION_KEYS` (or a file named by `ENCRYPTION_KEYS_FILE`),
 * newest first, each `id:base64` of 32 random bytes, separated by commas or new lines. With
 * neither set, a keyring is generated into DATA_DIR/encryption-keys (mode 600) on first start,
 * which suits development only: production refuses to start without configured keys.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KEY_BYTES, open, seal } from './aead.js';
import { MissingKeyError, type KeyProvider } from './key-provider.js';

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

export interface KeyringEntry {
  id: string;
  key: Buffer;
}

const ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Parses `id:base64[,id:base64...]` (commas or new lines; `#` comments in files). Never echoes key material. */
export function parseKeyring(text: string, where: string): KeyringEntry[] {
  const entries: KeyringEntry[] = [];
  const parts = text
    .split(/[\n,]/)
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter((l) => l.length > 0);
  parts.forEach((part, i) => {
    const colon = part.indexOf(':');
    const id = colon > 0 ? part.slice(0, colon).trim() : '';
    if (!ID.test(id)) throw new KeyringError(`${where}: entry ${i + 1} must be id:base64 with an id of letters, digits, _ . - (1-64)`);
    const key = Buffer.from(part.slice(colon + 1).trim(), 'base64');
    if (key.length !== KEY_BYTES) throw new KeyringError(`${where}: key "${id}" must be 32 bytes, base64-encoded (got ${key.length} bytes)`);
    if (entries.some((e) => e.id === id)) throw new KeyringError(`${where}: key id "${id}" appears twice`);
    entries.push({ id, key });
  });
  if (entries.length === 0) throw new KeyringError(`${where}: no keys`);
  return entries;
}

export function formatKeyring(entries: readonly KeyringEntry[]): string {
  return entries.map((e) => `${e.id}:${e.key.toString('base64')}`).join('\n') + '\n';
}

export function newKeyringEntry(now = new Date()): KeyringEntry {
  return { id: `kek-${now.toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(3).toString('hex')}`, key: randomBytes(KEY_BYTES) };
}

export function createKeyringProvider(entries: readonly KeyringEntry[], description: string): KeyProvider {
  const byId = new Map(entries.map((e) => [e.id, e.key]));
  const newest = entries[0];
  if (!newest) throw new KeyringError('the keyring is empty');
  const aad = (kekId: string, context: string) => Buffer.from(`switchboard:kek:${kekId}:${context}`);
  return {
    description,
    keyIds: () => entries.map((e) => e.id),
    async wrap(dataKey, context) {
      return { kekId: newest.id, wrapped: seal(newest.key, dataKey, aad(newest.id, context)) };
    },
    async unwrap(kekId, wrapped, context) {
      const kek = byId.get(kekId);
      if (!kek) throw new MissingKeyError(kekId, `it is not in the keyring (${description}); add it back to unwrap the data keys it protects`);
      return open(kek, wrapped, aad(kekId, context));
    },
  };
}

export interface ResolvedKeyring {
  provider: KeyProvider;
  /** Set when the keyring was generated just now (development only). */
  generatedFile?: string;
  source: 'ENCRYPTION_KEYS' | 'ENCRYPTION_KEYS_FILE' | 'generated' | 'DATA_DIR';
}

/**
 * The keyring from the environment, or DATA_DIR/encryption-keys (generated when absent), or an
 * error in production when neither variable is set.
 */
export async function resolveKeyring(o: {
  keys?: string | undefined;
  keysFile?: string | undefined;
  dataDir: string;
  production: boolean;
  /** False for tools (the CLI): never generate a keyring, say what to set instead. */
  generate?: boolean;
}): Promise<ResolvedKeyring> {
  if (o.keys !== undefined && o.keys.trim() !== '') {
    return { provider: createKeyringProvider(parseKeyring(o.keys, 'ENCRYPTION_KEYS'), 'ENCRYPTION_KEYS'), source: 'ENCRYPTION_KEYS' };
  }
  if (o.keysFile !== undefined && o.keysFile.trim() !== '') {
    let text: string;
    try {
      text = await readFile(o.keysFile, 'utf8');
    } catch (err) {
      throw new KeyringError(`ENCRYPTION_KEYS_FILE ${o.keysFile}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    return { provider: createKeyringProvider(parseKeyring(text, `ENCRYPTION_KEYS_FILE ${o.keysFile}`), `ENCRYPTION_KEYS_FILE ${o.keysFile}`), source: 'ENCRYPTION_KEYS_FILE' };
  }
  if (o.production) {
    throw new KeyringError('SWITCHBOARD_ENV=production needs encryption keys: set ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE (see README, "Encryption at rest")');
  }
  const file = path.resolve(o.dataDir, 'encryption-keys');
  if (existsSync(file)) {
    const entries = parseKeyring(await readFile(file, 'utf8'), file);
    return { provider: createKeyringProvider(entries, file), source: 'DATA_DIR' };
  }
  if (o.generate === false) {
    throw new KeyringError(`no encryption keys: set ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE, or run where ${file} exists (DATA_DIR)`);
  }
  await mkdir(path.resolve(o.dataDir), { recursive: true });
  await writeFile(file, formatKeyring([newKeyringEntry()]), { mode: 0o600, flag: 'wx' }).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err; // another process generated it first: use theirs
  });
  await chmod(file, 0o600);
  const entries = parseKeyring(await readFile(file, 'utf8'), file);
  return { provider: createKeyringProvider(entries, file), generatedFile: file, source: 'generated' };
}
