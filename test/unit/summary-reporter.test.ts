/**
 * The closing line (`N passed, N failed, N skipped`) counts every failure vitest counts: a run
 * with a file that cannot load, a failing beforeAll and an unhandled error must not read as a
 * pass. Runs the real vitest on a throwaway project with both configs' reporter.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import mainConfig from '../../vitest.config.js';
import faultsConfig from '../../vitest.faults.config.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REPORTER = path.join(ROOT, 'test/support/summary-reporter.ts');
const VITEST = path.join(ROOT, 'node_modules/vitest/vitest.mjs');
const dirs: string[] = [];

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function runProject(files: Record<string, string>): Promise<{ status: number | null; line: string | undefined }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-summary-'));
  dirs.push(dir);
  await writeFile(
    path.join(dir, 'vitest.config.mjs'),
    `export default { test: { globals: true, include: ['*.test.js'], reporters: [${JSON.stringify(REPORTER)}] } };\n`,
  );
  for (const [name, body] of Object.entries(files)) await writeFile(path.join(dir, name), body);
  const r = spawnSync(process.execPath, [VITEST, 'run', '--root', dir], { encoding: 'utf8', env: { ...process.env, CI: 'false', NO_COLOR: '1' }, timeout: 60_000 });
  const line = r.stdout.split('\n').find((l) => /^\d+ passed, \d+ failed, \d+ skipped$/.test(l));
  return { status: r.status, line };
}

describe('the summary line', () => {
  it('counts files that fail to load, failing hooks and unhandled errors as failed', async () => {
    const r = await runProject({
      'pass.test.js': "test('ok', () => {}); test.skip('later', () => {});\n",
      'fail.test.js': "test('bad', () => { expect(1).toBe(2); });\n",
      'broken.test.js': "throw new Error('cannot load'); test('never', () => {});\n",
      'hook.test.js': "describe('d', () => { beforeAll(() => { throw new Error('hook'); }); test('x', () => {}); });\n",
      'unhandled.test.js': "test('leaks', () => { setTimeout(() => { throw new Error('late'); }, 0); return new Promise((r) => setTimeout(r, 50)); });\n",
    });
    expect(r.status).not.toBe(0);
    // passed: ok, leaks. failed: bad, the file that cannot load, the beforeAll, the late error.
    // skipped: later, and x (its suite never ran).
    expect(r.line).toBe('2 passed, 4 failed, 2 skipped');
  });

  it('a file that fails to load is never reported as 0 failed', async () => {
    const r = await runProject({
      'pass.test.js': "test('ok', () => {});\n",
      'broken.test.js': "import './missing-module.js';\ntest('never', () => {});\n",
    });
    expect(r.status).not.toBe(0);
    expect(r.line).toBe('1 passed, 1 failed, 0 skipped');
  });

  it('a clean run still reads as a pass', async () => {
    const r = await runProject({ 'pass.test.js': "test('ok', () => {}); test('also', () => {});\n" });
    expect(r.status).toBe(0);
    expect(r.line).toBe('2 passed, 0 failed, 0 skipped');
  });

  it('is the reporter of both npm test and npm run test:faults', () => {
    for (const config of [mainConfig, faultsConfig]) expect(config.test?.reporters).toContain('./test/support/summary-reporter.ts');
  });
});
