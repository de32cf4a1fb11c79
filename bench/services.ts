/**
 * The services a bench run starts for itself, on loopback only, and stops at the end: a
 * redis-server child process (AOF everysec, noeviction, no RDB snapshots) and an embedded
 * PostgreSQL cluster in a temporary directory. Plus /proc readers for the CPU and RSS of those
 * processes, so the report can say where the CPU went.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { createLogger } from '../src/core/logger.js';
import { startEmbeddedPostgres } from '../src/store/embedded-postgres.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForPort(port: number, ms: number, child: ChildProcess): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not open port ${port} within ${ms} ms`);
}

export function findRedisServer(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p ? p : null;
}

export interface RedisService {
  url: string;
  pid: number;
  version: string;
  stop(): Promise<void>;
}

export async function startRedis(dir: string): Promise<RedisService> {
  const bin = findRedisServer();
  if (!bin) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  const version = /v=(\S+)/.exec(spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const child = spawn(
    bin,
    [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--protected-mode', 'yes',
      '--save', '',
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction',
      '--dir', dir,
      '--logfile', path.join(dir, 'redis.log'),
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitForPort(port, 10_000, child);
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    version,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface PostgresService {
  url: string;
  /** The postmaster's pid, for CPU accounting. */
  pid: number;
  version: string;
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** `dir` must be enterable by the 'postgres' user when running as root (chmod 755). */
export async function startPostgres(dir: string): Promise<PostgresService> {
  const db = await startEmbeddedPostgres(dir, createLogger({ level: 'silent' }));
  const pidFile = path.join(dir, 'postgres', 'postmaster.pid');
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  let version: string;
  try {
    version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ?? 'unknown';
  } finally {
    await admin.end();
  }
  return {
    url: db.url,
    pid,
    version,
    async createDatabase(name: string) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      const u = new URL(db.url);
      u.pathname = `/${name}`;
      return u.toString();
    },
    stop: () => db.stop(),
  };
}

// ---- /proc accounting --------------------------------------------------------------------

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(r.stdout.trim());
    clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return clkTck;
}

interface ProcStat {
  ppid: number;
  /** utime + stime, ms */
  selfMs: number;
  /** cutime + cstime (reaped children), ms */
  childrenMs: number;
  rssBytes: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the command name, which is in parentheses and may contain spaces.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number) => Number(rest[i] ?? 0);
  const tick = 1000 / ticksPerSecond();
  return { ppid: n(1), selfMs: (n(11) + n(12)) * tick, childrenMs: (n(13) + n(14)) * tick, rssBytes: n(21) * 4096 };
}

/** CPU time used by one process, ms (0 when it is gone). */
export function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  return readStat(pid)?.selfMs ?? 0;
}

/**
 * CPU time of a PostgreSQL cluster, ms: the postmaster, its reaped children (backends that have
 * exited) and its live children (backends, WAL writer, checkpointer...).
 */
export function clusterCpuMs(postmasterPid: number | undefined): number {
  if (postmasterPid === undefined) return 0;
  const root = readStat(postmasterPid);
  if (!root) return 0;
  let total = root.selfMs + root.childrenMs;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st && st.ppid === postmasterPid) total += st.selfMs;
  }
  return total;
}

export function processRssBytes(pid: number | undefined): number {
  if (pid === undefined) return 0;
  return readStat(pid)?.rssBytes ?? 0;
}

/** `some avg10=… avg60=…` from /proc/pressure/cpu, or undefined where PSI is unavailable. */
export function cpuPressure(): string | undefined {
  try {
    const line = readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0] ?? '';
    const m = /avg10=(\S+) avg60=(\S+) avg300=(\S+)/.exec(line);
    return m ? `some avg10=${m[1]}% avg60=${m[2]}% avg300=${m[3]}%` : undefined;
  } catch {
    return undefined;
  }
}

// ---- work counters (independent of machine load) -----------------------------------------

/** Commands Redis has processed since it started (INFO stats total_commands_processed). */
export async function redisCommandsProcessed(url: string | undefined): Promise<number | null> {
  if (!url) return null;
  const { Redis } = await import('ioredis');
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await c.connect();
    const info = await c.info('stats');
    const m = /total_commands_processed:(\d+)/.exec(info);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  } finally {
    c.disconnect();
  }
}

export interface PgCounters {
  transactions: number;
  rowsWritten: number;
  rowsRead: number;
}

/** One database's cumulative statistics (flushed by backends within about a second of going idle). */
export async function pgCounters(adminUrl: string, database: string): Promise<PgCounters | null> {
  const c = new pg.Client({ connectionString: adminUrl });
  try {
    await c.connect();
    const r = await c.query<{ xact_commit: string; written: string; fetched: string }>(
      `SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS written, tup_fetched AS fetched FROM pg_stat_database WHERE datname = $1`,
      [database],
    );
    const row = r.rows[0];
    return row ? { transactions: Number(row.xact_commit), rowsWritten: Number(row.written), rowsRead: Number(row.fetched) } : null;
  } catch {
    return null;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Samples how many client connections the system under test holds on its database (the bench's
 * own connections, named `bench-*`, excluded), every `everyMs`: the peak over a window.
 */
export interface ConnectionSampler {
  /** Starts a window (resets its peak). */
  begin(): void;
  /** Peak of the current window. */
  windowPeak(): number | null;
  /** Peak since the sampler started. */
  readonly peak: number | null;
  close(): Promise<void>;
}

export async function startConnectionSampler(adminUrl: string, database: string, everyMs = 250): Promise<ConnectionSampler> {
  const c = new pg.Client({ connectionString: adminUrl, application_name: 'bench-connections' });
  c.on('error', () => undefined);
  await c.connect();
  let peak: number | null = null;
  let window: number | null = null;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    c.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND application_name NOT LIKE 'bench-%'`,
      [database],
    )
      .then((r) => {
        const n = Number(r.rows[0]?.n ?? 0);
        peak = Math.max(peak ?? 0, n);
        window = Math.max(window ?? 0, n);
      })
      .catch(() => undefined)
      .finally(() => {
        busy = false;
      });
  }, everyMs);
  return {
    begin() {
      window = null;
    },
    windowPeak: () => window,
    get peak() {
      return peak;
    },
    async close() {
      clearInterval(timer);
      await c.end().catch(() => undefined);
    },
  };
}
