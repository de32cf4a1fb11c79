/**
 * The zero-config gateway as an operator meets it (`npm start` in an empty DATA_DIR): the banner
 * says where the admin token and the embedded database's credentials are (also after the first
 * run), the roles run as separate processes on the embedded database through the URL kept in
 * DATA_DIR/postgres-credentials.json, and Ctrl-C (SIGINT to the whole process group, the
 * embedded PostgreSQL included) logs one line per shutdown step, no worker errors, then "stopped".
 * `npm run sample -- --reply` against it shows the round trip of two-way messaging.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnGateway, runGatewayToExit, type GatewayProcess } from '../support/gateway-process.js';
import { repoRoot } from '../support/gateway.js';

const execFileAsync = promisify(execFile);

let dataDir: string;
const running: GatewayProcess[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'sb-zero-config-'));
  await chmod(dataDir, 0o755); // PostgreSQL runs as its own user when the tests run as root
});
afterAll(async () => {
  for (const g of running) if (g.child.exitCode === null) await g.kill('SIGKILL');
  await rm(dataDir, { recursive: true, force: true });
});

/** The JSON log lines after the shutdown began. */
function shutdownLog(output: string): { msg: string; level: number }[] {
  const lines = output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; level: number });
  return lines.slice(lines.findIndex((l) => l.msg.startsWith('shutting down')));
}

describe('zero-config gateway', () => {
  it('says where its credentials are, runs a second role on the embedded database, and stops cleanly', async () => {
    const env = { DATA_DIR: dataDir };
    const first = await spawnGateway(env, 90_000, { detached: true });
    running.push(first);
    expect(first.output()).toContain(`ADMIN_TOKEN generated and saved in ${dataDir}/admin-token`);
    // Where the token is, never the token: stdout often ends up in a log collector.
    const generated = (await readFile(path.join(dataDir, 'admin-token'), 'utf8')).trim();
    expect(generated.length).toBeGreaterThanOrEqual(16);
    expect(first.output()).not.toContain(generated);
    expect(first.output()).toContain(`(its address and credentials: ${path.join(dataDir, 'postgres-credentials.json')})`);
    expect(first.output()).toMatch(/metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/);
    // The sample finds the admin token where this gateway keeps it.
    expect(first.output()).toMatch(new RegExp(`PORT=\\d+ DATA_DIR=${dataDir} npm run sample`));
    // Two-way messaging in the zero-config run: `npm run sample -- --reply` shows the round trip.
    expect(first.output()).toMatch(/replies  care-team replies in the FHIR sandbox go to the SANDBOX Graph API http:\/\/127\.0\.0\.1:\d+ \(nothing reaches WhatsApp\)/);
    const port = /PORT=(\d+) DATA_DIR=/.exec(first.output())![1]!;
    const sample = await execFileAsync(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [path.join(repoRoot, 'scripts', 'sample.ts'), '--reply'], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', PORT: port, DATA_DIR: dataDir },
      timeout: 90_000,
    });
    const steps = sample.stdout.split('\n').filter((l) => /^\d\. /.test(l));
    expect(steps[0]).toMatch(/^1\. the patient's WhatsApp message is Communication\/\S+ in the EHR .*, about Patient\//);
    expect(steps[1]).toMatch(/^2\. the care team replies in the EHR: Communication\/\S+ \(status in-progress, .*inResponseTo Communication\//);
    expect(steps[2]).toMatch(/^3\. sent to the SANDBOX WhatsApp .*: wamid\.SANDBOX/);
    expect(steps.slice(3).map((l) => /: (sent|delivered|read|failed) \(/.exec(l)?.[1])).toEqual(['sent', 'delivered', 'read']);
    const code = await first.kill('SIGINT');
    expect(code, first.output().slice(-3000)).toBe(0);
    const log = shutdownLog(first.output());
    expect(log.map((l) => l.msg).filter((m) => /queue worker error|error while stopping/.test(m))).toEqual([]);
    expect(log.slice(1, -1).every((l) => l.msg.startsWith('shutdown: '))).toBe(true);
    expect(log.map((l) => l.msg)).toContain('shutdown: workers drained and stopped');
    expect(log.map((l) => l.msg)).toContain('shutdown: embedded PostgreSQL stopped');
    expect(log.at(-1)?.msg).toBe('stopped');

    // Second start: the token is not printed again, but where it is, is.
    const http = await spawnGateway({ ...env, SWITCHBOARD_ROLE: 'http' }, 90_000, { detached: true });
    running.push(http);
    expect(http.output()).toContain(`token    admin token in ${path.join(dataDir, 'admin-token')}`);
    expect(http.output()).not.toContain('HL7      lab'); // the http role starts no MLLP sandbox peers

    // A second process on the same DATA_DIR without DATABASE_URL is refused, with the way to do it.
    const refused = await runGatewayToExit({ ...env, SWITCHBOARD_ROLE: 'worker', FHIR_BASE_URL: 'http://127.0.0.1:9/fhir' }, 60_000);
    expect(refused.code).toBe(1);
    expect(refused.output).toContain('is in use by another gateway process');
    expect(refused.output).toContain('postgres-credentials.json');

    // The worker role on the embedded database, through the URL in the credentials file.
    const credentials = JSON.parse(await readFile(path.join(dataDir, 'postgres-credentials.json'), 'utf8')) as { url: string };
    const client = new pg.Client({ connectionString: credentials.url });
    await client.connect();
    await client.end();
    const worker = await spawnGateway({ ...env, SWITCHBOARD_ROLE: 'worker', DATABASE_URL: credentials.url, FHIR_BASE_URL: 'http://127.0.0.1:9/fhir' }, 90_000, {
      detached: true,
      ready: /role\s+worker \(HTTP serves only (http:\/\/127\.0\.0\.1:\d+)\/healthz, \/readyz and \/metrics\)/,
    });
    running.push(worker);
    expect(await worker.kill('SIGTERM')).toBe(0);
    expect(shutdownLog(worker.output()).at(-1)?.msg).toBe('stopped');
    expect(await http.kill('SIGTERM')).toBe(0);
    expect(shutdownLog(http.output()).at(-1)?.msg).toBe('stopped');
  }, 240_000);
});
