/**
 * For the PHI-at-rest tests: unique markers, a scan of every file under a folder for them, and a
 * redis-server of the test's own with its AOF and RDB files in a temporary folder, and a whole
 * gateway on embedded PostgreSQL under DATA_DIR logging at debug level.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { createSwitchboard, type Switchboard } from '../../src/app.js';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import { createLogger } from '../../src/core/logger.js';
import { freePort } from './free-port.js';
import { waitFor } from './gateway.js';
import { uniquePrefix } from './services.js';
import { TEST_APP_SECRET, TEST_VERIFY_TOKEN } from './whatsapp-webhook.js';

/** A marker no real text contains: `<prefix><10 hex digits>`. */
export const marker = (prefix: string): string => `${prefix}${randomBytes(5).toString('hex').toUpperCase()}`;

/** Digits of a phone number no one has (+1999…), new for each call. */
export const markerPhone = (): string => `1999${String(randomInt(10_000_000, 99_999_999))}`;

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Every file under `dir` that contains a needle (as bytes), relative to `dir`, by needle. */
export async function filesContaining(dir: string, needles: readonly string[]): Promise<Record<string, string[]>> {
  const found: Record<string, string[]> = {};
  for (const file of await filesUnder(dir)) {
    if ((await stat(file)).size === 0) continue;
    const bytes = await readFile(file);
    for (const n of needles) {
      if (bytes.includes(Buffer.from(n))) (found[n] ??= []).push(path.relative(dir, file));
    }
  }
  return found;
}

export interface PrivateRedis {
  url: string;
  /** Where its AOF and RDB files are. */
  dir: string;
  /** Writes an RDB snapshot beside the AOF, then stops the server. */
  stop(): Promise<void>;
}

/** A redis-server with AOF (fsync always) in a temporary folder, for scanning its files afterwards. */
export async function startPrivateRedis(binary: string): Promise<PrivateRedis> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-redis-'));
  const port = await freePort(); // redis-server has no "any free port"
  const server: ChildProcess = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'always', '--save', '60 1', '--maxmemory-policy', 'noeviction', '--dir', dir], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const exited = new Promise((r) => server.once('exit', r));
  await waitFor('redis', async () => {
    const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      return (await c.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      c.disconnect();
    }
  });
  return {
    url,
    dir,
    async stop() {
      const c = new Redis(url, { maxRetriesPerRequest: 0 });
      c.on('error', () => undefined);
      try {
        await c.save();
      } finally {
        c.disconnect();
        server.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** A DATA_DIR the embedded PostgreSQL can enter (as root it runs as 'postgres'). */
export async function newDataDir(prefix = 'switchboard-at-rest-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

/** A whole gateway (all roles) on embedded PostgreSQL under `dataDir`, its debug log to `logStream`. */
export function atRestGateway(o: { dataDir: string; channelsDir: string; redisUrl: string | undefined; fhirBaseUrl: string; env?: Record<string, string>; logStream: NodeJS.WritableStream }): Switchboard {
  return createSwitchboard({
    role: 'all',
    port: 0,
    host: '127.0.0.1',
    dataDir: o.dataDir,
    channelsDir: o.channelsDir,
    databaseUrl: undefined,
    redisUrl: o.redisUrl,
    queuePrefix: uniquePrefix(),
    env: { WHATSAPP_APP_SECRET: TEST_APP_SECRET, WHATSAPP_VERIFY_TOKEN: TEST_VERIFY_TOKEN, ...o.env },
    fhirBaseUrl: o.fhirBaseUrl,
    fhirSandboxPort: 0,
    adminToken: `test-admin-token-${uniquePrefix()}`,
    registry: createConnectorRegistry(),
    logger: createLogger({ level: 'debug', destination: o.logStream }),
    shutdownTimeoutMs: 5000,
    jobLockMs: 5000,
    queueDurability: 'warn',
    outboxGraceMs: 0,
    sweepIntervalMs: 60_000,
    watch: false,
  });
}
