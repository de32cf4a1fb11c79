/**
 * Direct access to the message store for the commands that work on it (`audit`, `keys`, `store`):
 * DATABASE_URL, or the embedded PostgreSQL under DATA_DIR (the running gateway's, found by its
 * postmaster.pid, else started for the command and stopped after it), and the same keyring the
 * gateway uses (ENCRYPTION_KEYS, ENCRYPTION_KEYS_FILE or DATA_DIR/encryption-keys).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { AuditEntry } from '../core/audit.js';
import { createLogger } from '../core/logger.js';
import type { Principal } from '../core/principal.js';
import type { KeyProvider } from '../crypto/key-provider.js';
import { resolveKeyring } from '../crypto/keyring.js';
import { AuditStore } from '../store/audit-store.js';
import { alive, defaultRuntimeDir, existingClusterDir, startEmbeddedPostgres } from '../store/embedded-postgres.js';
import { openEncryptingCodec, type EncryptingCodec } from '../store/encrypting-codec.js';
import { runMigrations } from '../store/migrations.js';
import type { CliIo } from './io.js';

export interface StoreAccess {
  pool: pg.Pool;
  codec: EncryptingCodec;
  provider: KeyProvider;
  audit: AuditStore;
  dataDir: string;
  /** Records an entry as this command's principal (`system:cli`, from the terminal). */
  record(entry: Omit<AuditEntry, 'principal' | 'sourceAddress'>): Promise<void>;
  close(): Promise<void>;
}

export function cliPrincipal(): Principal {
  let user = 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    /* no passwd entry */
  }
  return { kind: 'system', id: 'cli', display: `switchboard CLI (${user})`, role: null };
}

/** The URL of the embedded PostgreSQL a gateway is running under `dataDir`, if one is. */
async function runningEmbeddedUrl(dataDir: string, runtimeDir: string): Promise<string | undefined> {
  const cluster = existingClusterDir(dataDir, runtimeDir);
  if (cluster === undefined) return undefined;
  const pidFile = path.join(cluster, 'postmaster.pid');
  const credFile = path.join(dataDir, 'postgres-credentials.json');
  if (!existsSync(pidFile) || !existsSync(credFile)) return undefined;
  const lines = (await readFile(pidFile, 'utf8')).split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !alive(pid) || !Number.isInteger(port)) return undefined;
  const { password } = JSON.parse(await readFile(credFile, 'utf8')) as { password: string };
  return `postgres://switchboard:${encodeURIComponent(password)}@127.0.0.1:${port}/switchboard`;
}

export async function openStoreAccess(io: CliIo): Promise<StoreAccess> {
  const env = io.env;
  const dataDir = path.resolve(io.cwd, env['DATA_DIR'] || '.data');
  const cleanups: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    const keyring = await resolveKeyring({
      keys: env['ENCRYPTION_KEYS'],
      keysFile: env['ENCRYPTION_KEYS_FILE'] ? path.resolve(io.cwd, env['ENCRYPTION_KEYS_FILE']) : undefined,
      dataDir,
      production: env['SWITCHBOARD_ENV'] === 'production',
      generate: false,
    });
    const runtimeDir = env['SWITCHBOARD_RUNTIME_DIR'] || defaultRuntimeDir;
    let url = env['DATABASE_URL'] || (await runningEmbeddedUrl(dataDir, runtimeDir));
    if (url === undefined) {
      if (existingClusterDir(dataDir, runtimeDir) === undefined) throw new Error(`no database: set DATABASE_URL, or run where DATA_DIR (${dataDir}) holds the gateway's embedded PostgreSQL`);
      const db = await startEmbeddedPostgres(dataDir, createLogger({ level: 'silent' }), runtimeDir);
      cleanups.push(() => db.stop());
      url = db.url;
    }
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    pool.on('error', () => undefined);
    cleanups.push(() => pool.end());
    await runMigrations(pool);
    const codec = await openEncryptingCodec(pool, keyring.provider);
    cleanups.push(async () => codec.close());
    const audit = new AuditStore(pool, codec);
    const principal = cliPrincipal();
    return {
      pool,
      codec,
      provider: keyring.provider,
      audit,
      dataDir,
      record: (entry) => audit.record({ ...entry, principal, sourceAddress: 'cli' }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
