/**
 * A checkout inside a private directory (mode 700, like root's home on a fresh VM), started the
 * way the README says: `npm start`, with no flags, then the production path (`npm run build`,
 * `node dist/main.js`, the Docker image's command) on the same data, until /readyz answers 200.
 * Tests run as root here and in CI, so this proves the root case: the embedded PostgreSQL runs
 * as its own system user, from binaries staged where that user can reach them, with its cluster
 * in the runtime directory, and nothing about the private directory is loosened.
 * The clone has no built console (console/dist is not in git): `npm install` builds it, so the
 * zero-config `npm start` serves it at the address its banner prints.
 * Also the refusals: one line saying why, exit 1, no stack trace.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, waitFor } from '../support/gateway.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
/** Not copied: installed or generated. node_modules is linked in separately. */
const notCopied = new Set(['node_modules', '.git', 'dist', '.data', 'coverage', '.bench', 'scratch']);

let home: string;
let clone: string;
let runtimeDir: string;

/** The environment of a user who set nothing (PORT=0 only to avoid clashes between test runs). */
function userEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env['PATH'] ?? '', HOME: home, PORT: '0', SWITCHBOARD_RUNTIME_DIR: runtimeDir, ...extra };
}

interface Started {
  child: ChildProcess;
  readyUrl: string;
  output(): string;
  stop(): Promise<number | null>;
}

/** Start `command` in the clone, in its own process group (as from a terminal), until it prints the ready URL. */
async function start(command: string, args: string[], env: Record<string, string>): Promise<Started> {
  const child = spawn(command, args, { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const closed = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  let exited: number | null | undefined;
  void closed.then((c) => (exited = c));
  const readyUrl = await waitFor(
    'the gateway to print its ready URL',
    async () => {
      if (exited !== undefined) throw new Error(`${command} ${args.join(' ')} exited with ${exited}:\n${out}`);
      return /ready: (http:\/\/127\.0\.0\.1:\d+\/readyz)/.exec(out)?.[1];
    },
    120_000,
  );
  return {
    child,
    readyUrl,
    output: () => out,
    stop: async () => {
      if (exited === undefined && child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
      return closed;
    },
  };
}

async function readyStatus(url: string): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}

/** The directory the banner names for the embedded PostgreSQL. */
function storeDir(output: string): string {
  const m = /store\s+embedded PostgreSQL in (\S+)/.exec(output);
  if (!m?.[1]) throw new Error(`no store line in:\n${output}`);
  return m[1];
}

/** Run the built entry point until it exits: its code, stdout and stderr. */
async function runToExit(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['dist/main.js'], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function expectOneLineRefusal(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^switchboard: failed to start: \S/);
  expect(stderr).not.toMatch(/^\s+at /m);
  return lines[0]!;
}

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'sb-private-home-'));
  await chmod(home, 0o700);
  // The runtime directory a root start stages into (by default /var/lib/switchboard-postgres);
  // a fresh one per run proves the first start and keeps the machine clean.
  const rtParent = await mkdtemp(path.join(os.tmpdir(), 'sb-runtime-'));
  await chmod(rtParent, 0o755);
  runtimeDir = path.join(rtParent, 'switchboard-postgres');
  clone = path.join(home, 'switchboard');
  const consoleBuild = path.join(repoRoot, 'console', 'dist');
  await cp(repoRoot, clone, { recursive: true, filter: (src) => src !== consoleBuild && (path.dirname(src) !== repoRoot || !notCopied.has(path.basename(src))) });
  // What `npm install` gives, as hard links (fast, same modes): node_modules inside the private dir.
  // The checkout's node_modules may itself be a symlink (CI runs npm test from a copy whose
  // node_modules links to the installed one): copy the directory it points to, not the link, or
  // the offline `npm install` below finds no dependencies and must download them all.
  const installed = await realpath(path.join(repoRoot, 'node_modules'));
  try {
    await run('cp', ['-al', installed, path.join(clone, 'node_modules')]);
  } catch {
    await cp(installed, path.join(clone, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  }
}, 180_000);

afterAll(async () => {
  if (home) await rm(home, { recursive: true, force: true });
  if (runtimeDir) await rm(path.dirname(runtimeDir), { recursive: true, force: true });
});

describe('a checkout in a private (mode 700) directory', () => {
  it('npm install && npm start: the console is built and served where the banner says; /readyz 200 with no flags, and npm run build + node dist/main.js does too on the same data', async () => {
    expect((await stat(home)).mode & 0o777).toBe(0o700);

    // The README's first command (offline: the dependencies are already linked in); its prepare
    // script builds the console.
    expect(existsSync(path.join(clone, 'console', 'dist'))).toBe(false);
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund'], { cwd: clone, env: userEnv(), timeout: 240_000 });
    expect(existsSync(path.join(clone, 'console', 'dist', 'index.html'))).toBe(true);

    const dev = await start('npm', ['start'], userEnv());
    let devStore: string;
    try {
      expect(await readyStatus(dev.readyUrl)).toBe(200);
      const consoleUrl = /console\s+(http:\/\/127\.0\.0\.1:\d+\/console\/)\s+\(sign in with an API token\)/.exec(dev.output())?.[1];
      expect(consoleUrl, dev.output()).toBeDefined();
      const page = await fetch(consoleUrl!);
      const html = await page.text();
      expect(page.status).toBe(200);
      const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1];
      expect(script, html).toBeDefined();
      expect((await fetch(new URL(script!, consoleUrl)).then((r) => r.status))).toBe(200);
      devStore = storeDir(dev.output());
      if (isRoot) {
        // The cluster cannot live in the private directory: it lives in the runtime directory,
        // owned by the server's own user, private to it; the binaries are staged there, root-owned.
        expect(devStore.startsWith(path.join(runtimeDir, 'clusters') + path.sep)).toBe(true);
        const cluster = await stat(devStore);
        expect(cluster.uid).not.toBe(0);
        expect(cluster.mode & 0o777).toBe(0o700);
        const staged = (await readdir(runtimeDir)).filter((e) => e.startsWith('postgres-'));
        expect(staged).toHaveLength(1);
        const bin = await stat(path.join(runtimeDir, staged[0]!, 'native', 'bin', 'postgres'));
        expect(bin.uid).toBe(0);
        expect(bin.mode & 0o022).toBe(0);
        expect(dev.output()).toContain('staging the PostgreSQL binaries');
        expect(existsSync(path.join(clone, '.data', 'postgres', 'PG_VERSION'))).toBe(false);
      } else {
        expect(devStore).toBe(path.join(clone, '.data', 'postgres'));
      }
    } finally {
      // npm itself dies of the signal; the gateway under it drains and stops.
      await dev.stop();
    }
    expect(dev.output()).toContain('"msg":"stopped"');
    // Nothing was loosened to get there.
    expect((await stat(home)).mode & 0o777).toBe(0o700);

    await run('npm', ['run', 'build'], { cwd: clone, env: userEnv(), timeout: 240_000 });
    expect(existsSync(path.join(clone, 'dist', 'main.js'))).toBe(true);
    const prod = await start(process.execPath, ['dist/main.js'], userEnv());
    try {
      expect(await readyStatus(prod.readyUrl)).toBe(200);
      // A later start reuses the staged binaries and the cluster.
      expect(storeDir(prod.output())).toBe(devStore);
      expect(prod.output()).not.toContain('staging the PostgreSQL binaries');
      expect(prod.output()).not.toContain('initialising the embedded PostgreSQL');
    } finally {
      expect(await prod.stop()).toBe(0);
    }
  }, 420_000);

  it('refuses in one line, exit 1, when DATA_DIR cannot be created', async () => {
    if (!existsSync(path.join(clone, 'dist', 'main.js'))) await run('npm', ['run', 'build'], { cwd: clone, env: userEnv(), timeout: 240_000 });
    const file = path.join(home, 'not-a-directory');
    await writeFile(file, 'x');
    const r = await runToExit(userEnv({ DATA_DIR: path.join(file, 'data') }));
    expect(r.code).toBe(1);
    expect(expectOneLineRefusal(r.stderr)).toContain('not-a-directory');
  }, 180_000);

  it.runIf(isRoot)('as root, refuses in one line a runtime directory others may write to, saying what to do', async () => {
    if (!existsSync(path.join(clone, 'dist', 'main.js'))) await run('npm', ['run', 'build'], { cwd: clone, env: userEnv(), timeout: 240_000 });
    const loose = path.join(path.dirname(runtimeDir), 'loose');
    await mkdir(loose);
    await chmod(loose, 0o777);
    const r = await runToExit(userEnv({ SWITCHBOARD_RUNTIME_DIR: loose, DATA_DIR: path.join(home, 'other-data') }));
    expect(r.code).toBe(1);
    const line = expectOneLineRefusal(r.stderr);
    expect(line).toContain(`${loose} must be a directory owned by root and writable by root only`);
    expect(line).toContain('SWITCHBOARD_RUNTIME_DIR');
  }, 180_000);
});
