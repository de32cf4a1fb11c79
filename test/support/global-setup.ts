/**
 * Starts the real services the integration tests use, once per run: a redis-server (Debian's
 * package) and an embedded PostgreSQL cluster. Each test file then takes its own database and
 * queue prefix, so files run in parallel safely. A missing redis-server (python3-hl7, chromium,
 * the conformance corpus) is a loud skip, and with CI=true a failure (reportMissing).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres.js';
import { createLogger } from '../../src/core/logger.js';
import { mllpSendAvailable, pythonHl7Available } from './python-hl7-peer.js';
import { freePort } from './free-port.js';
import { CHROMIUM, chromiumAvailable } from './browser.js';
import { CONFORMANCE_SKIP_LINE, conformanceCorpus } from './conformance-corpus.js';
import { reportMissing } from './missing-service.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string | null;
    redisServerBinary: string | null;
    postgresUrl: string;
  }
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
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
  throw new Error(`port ${port} did not open`);
}

export function findRedisServer(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p ? p : null;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, (await stat(path.join(e.parentPath, e.name))).mtimeMs);
  }
  return newest;
}

async function buildConsoleIfStale(): Promise<void> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const built = path.join(root, 'console', 'dist', 'index.html');
  const sources = Math.max(await newestMtime(path.join(root, 'console', 'src')), (await stat(path.join(root, 'console', 'index.html'))).mtimeMs);
  const builtAt = await stat(built).then((s) => s.mtimeMs, () => 0);
  if (builtAt >= sources) return;
  console.log('console: console/dist is missing or older than console/src; building it for the browser tests');
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-console.mjs')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('console: the build failed (npm run build:console); the browser tests cannot run');
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // What is missing is said (or, with CI=true, fails the run) before anything is started.
  const bin = findRedisServer();
  if (!bin) reportMissing('redis-server', 'every test that needs Redis is', 'Install it: apt-get install -y redis-server');

  // HL7 tests against Debian's python3-hl7 (an MLLP server and mllp_send we did not write).
  if (!pythonHl7Available() || !mllpSendAvailable()) {
    reportMissing('python3-hl7', 'the HL7 tests against its MLLP server and mllp_send are', 'Install it: apt-get install -y python3-hl7');
  }

  // The console's end-to-end tests in a real browser: Debian's chromium.
  if (!chromiumAvailable()) {
    reportMissing(`chromium (${CHROMIUM})`, "the console's browser tests are", 'Install it: apt-get install -y chromium');
  } else {
    // The browser tests drive the built console (console/dist): build it when it is missing or
    // older than its sources, so they never pass or fail against a stale build.
    await buildConsoleIfStale();
  }

  // Payloads written by others, beside the checkout: an optional conformance layer.
  // SWITCHBOARD_CONFORMANCE=optional lets a CI run prove the suite on a clone without it (.ci/run).
  if (conformanceCorpus() === null) {
    reportMissing(CONFORMANCE_SKIP_LINE.what, CONFORMANCE_SKIP_LINE.skipped, CONFORMANCE_SKIP_LINE.howToGet, { optionalInCi: process.env['SWITCHBOARD_CONFORMANCE'] === 'optional' });
  }

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'switchboard-test-'));
  // As root, PostgreSQL runs as the 'postgres' user, which must be able to enter this directory.
  await chmod(tmp, 0o755);
  const logger = createLogger({ level: 'warn' });
  const cleanups: (() => Promise<void>)[] = [];

  const db = await startEmbeddedPostgres(path.join(tmp, 'data'), logger);
  cleanups.push(() => db.stop());
  project.provide('postgresUrl', db.url);

  let redis: ChildProcess | undefined;
  if (bin) {
    const port = await freePort();
    redis = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction', '--dir', tmp], { stdio: 'ignore' });
    await waitForPort(port, 10_000);
    project.provide('redisUrl', `redis://127.0.0.1:${port}`);
    cleanups.push(async () => {
      redis?.kill('SIGTERM');
    });
  } else {
    project.provide('redisUrl', null);
  }
  project.provide('redisServerBinary', bin);

  return async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  };
}
