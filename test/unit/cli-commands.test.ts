/**
 * The `switchboard` CLI, in-process (each command is a function of argv and an io) and once
 * through bin/switchboard.js: help and exit codes, lint, test, map --watch, validate, docs.
 */
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/io.js';
import { loadChannelDirectory } from '../../src/channels/load-channel.js';
import { createConnectorRegistry } from '../../src/connectors/registry.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function capture(cwd: string, env: Record<string, string | undefined> = {}, signal?: AbortSignal): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: (t) => (out += t), stderr: (t) => (err += t), cwd, env, ...(signal ? { signal } : {}) },
    out: () => out,
    err: () => err,
  };
}

async function cli(cwd: string, argv: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  const c = capture(cwd, env);
  const code = await runCli(argv, c.io);
  return { code, out: c.out(), err: c.err() };
}

const MAPPING = `{
  'resourceType': 'Communication',
  'identifier': [{ 'system': $identifier_system, 'value': id }],
  'status': 'completed',
  'payload': [{ 'contentString': text }]
}`;

const CHANNEL = `id: demo
source:
  kind: whatsapp_cloud
  app_secret: \${WHATSAPP_APP_SECRET}
  verify_token: \${WHATSAPP_VERIFY_TOKEN}
filter: kind != 'reaction'
destinations:
  - name: ehr
    kind: fhir_r4
    base_url: \${FHIR_BASE_URL}
    mapping: ../mappings/demo.jsonata
  - name: urgent
    kind: fhir_r4
    base_url: \${FHIR_BASE_URL}
    mapping: ../mappings/demo.jsonata
    when: $contains($lowercase(text), 'urgent')
`;

let project: string;

beforeAll(async () => {
  project = await mkdtemp(path.join(os.tmpdir(), 'sb-cli-'));
  await writeFile(path.join(project, 'package.json'), '{"name":"demo"}');
  await mkdir(path.join(project, 'channels'));
  await mkdir(path.join(project, 'mappings'));
  await cp(path.join(ROOT, 'fixtures/whatsapp'), path.join(project, 'fixtures/whatsapp'), { recursive: true });
  await writeFile(path.join(project, 'mappings/demo.jsonata'), MAPPING);
  await writeFile(
    path.join(project, 'mappings/demo.test.yaml'),
    `defaults: { source: whatsapp_cloud, now: 2025-06-08T21:00:00Z, bindings: { identifier_system: "urn:x" } }
tests:
  - name: text
    input: { fixture: whatsapp/sample_text.json }
    expect: { contains: { payload: [{ contentString: Could I move my Thursday appointment to the afternoon? }] }, fhir_valid: Communication }
`,
  );
  await writeFile(path.join(project, 'channels/demo.yaml'), CHANNEL);
  await writeFile(
    path.join(project, 'channels/demo.test.yaml'),
    `defaults: { now: 2025-06-08T21:00:00Z, sign: true }
tests:
  - name: an ordinary message reaches ehr, not urgent
    request: { body: { fixture: whatsapp/sample_text.json } }
    expect:
      not_routed: [urgent]
      destinations: { ehr: { fhir_valid: Communication } }
  - name: a reaction is filtered out
    request: { body: { fixture: whatsapp/sample_reaction.json } }
    expect: { filtered: true, not_routed: [ehr, urgent] }
  - name: this one fails on purpose
    request: { body: { fixture: whatsapp/sample_text.json } }
    expect: { not_routed: [ehr] }
  - name: unsigned is refused
    request: { body: { fixture: whatsapp/sample_text.json }, sign: false }
    expect: { rejected: { status: 401 } }
`,
  );
});
afterAll(async () => {
  await rm(project, { recursive: true, force: true });
});

describe('help and exit codes', () => {
  it('prints help with exit 0, no command with exit 2, an unknown command or option with exit 2', async () => {
    expect((await cli(project, ['--help'])).out).toContain('Usage: switchboard <command>');
    expect((await cli(project, ['lint', '--help'])).out).toContain('Usage: switchboard lint');
    expect((await cli(project, [])).code).toBe(2);
    const unknown = await cli(project, ['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "frobnicate"');
    const badOption = await cli(project, ['lint', '--nope']);
    expect(badOption.code).toBe(2);
    expect(badOption.err).toContain("unknown option '--nope'");
    expect((await cli(project, ['map', '-m', 'x.jsonata'])).code).toBe(2);
  });

  it('bin/switchboard.js runs from any folder', () => {
    const help = spawnSync(process.execPath, [path.join(ROOT, 'bin/switchboard.js'), '--help'], { cwd: os.tmpdir(), encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Usage: switchboard <command>');
    const usage = spawnSync(process.execPath, [path.join(ROOT, 'bin/switchboard.js'), 'test', '--bogus'], { cwd: os.tmpdir(), encoding: 'utf8' });
    expect(usage.status).toBe(2);
  });
});

describe('lint', () => {
  it('passes a clean project (development defaults and the FHIR sandbox as info) and lists the variables', async () => {
    const r = await cli(project, ['lint']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('channels/demo.yaml:4:15: info: WHATSAPP_APP_SECRET is not set: the development default is used (set it in production)');
    expect(r.out).toContain('channels/demo.yaml:10:15: info: FHIR_BASE_URL is not set: the gateway starts its in-process FHIR sandbox');
    expect(r.out).toMatch(/WHATSAPP_VERIFY_TOKEN\s+not set: the development default/);
    expect(r.out).toContain('lint: 1 channel, 1 mapping, 2 test files: 0 errors, 0 warnings');
  });

  it('in production an unset secret is an error; --env-file supplies it', async () => {
    const r = await cli(project, ['lint', '--production']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('channels/demo.yaml:4:15: error: environment variable WHATSAPP_APP_SECRET is not set: set it in the environment or in a file given with --env-file (production: no development defaults)');
    await writeFile(path.join(project, 'prod.env'), 'WHATSAPP_APP_SECRET=s3cret\nWHATSAPP_VERIFY_TOKEN=t0ken\n');
    const ok = await cli(project, ['lint', '--production', '--env-file', 'prod.env']);
    expect(ok.code).toBe(0);
    expect(ok.out).not.toContain('s3cret');
  });

  it('reports every kind of mistake as file:line:column: level: message, and as JSON', async () => {
    const bad = await mkdtemp(path.join(os.tmpdir(), 'sb-lint-'));
    try {
      await mkdir(path.join(bad, 'channels'));
      await mkdir(path.join(bad, 'mappings'));
      await writeFile(path.join(bad, 'channels/c.yaml'), CHANNEL.replace('filter:', 'filtre:').replace('../mappings/demo.jsonata', '../mappings/gone.jsonata').replace('${FHIR_BASE_URL}', '${EHR_URL}'));
      await writeFile(path.join(bad, 'mappings/broken.jsonata'), "{\n  'a': $e164(\n}");
      await writeFile(path.join(bad, 'mappings/orphan.test.yaml'), 'tests:\n  - name: x\n    input: { json: 1 }\n    expect: { dropped: true }\n');
      const r = await cli(bad, ['lint']);
      expect(r.code).toBe(1);
      const lines = r.out.split('\n');
      expect(lines).toContain('channels/c.yaml:6:1: error: unknown key "filtre" in the channel (did you mean "filter"?); allowed keys: id, description, source, media, retention, filter, destinations');
      expect(lines).toContain('channels/c.yaml:10:15: error: environment variable EHR_URL is not set: set it in the environment or in a file given with --env-file');
      expect(lines).toContain('channels/c.yaml:11:14: error: mapping file not found: mappings/gone.jsonata (.jsonata files there: broken.jsonata) (paths are relative to the channel file)');
      expect(lines.some((l) => /^mappings\/broken\.jsonata:3:1: error: JSONata S0211: The symbol "}" cannot be used as a unary operator — /.test(l))).toBe(true);
      expect(lines).toContain('mappings/broken.jsonata:1:1: warning: mapping without a test file: create broken.test.yaml beside it (docs/analyst-guide.md, "Test")');
      expect(lines).toContain('mappings/orphan.test.yaml:1:1: error: test file without a mapping: there is no orphan.jsonata beside it; rename the test file or add "mapping: <file>.jsonata"');
      const json = await cli(bad, ['lint', '--format', 'json']);
      const report = JSON.parse(json.out) as { ok: boolean; issues: { file: string; level: string }[]; environment: { name: string; status: string }[] };
      expect(report.ok).toBe(false);
      expect(report.issues.some((i) => i.file === 'mappings/broken.jsonata' && i.level === 'error')).toBe(true);
      expect(report.environment).toContainEqual(expect.objectContaining({ name: 'EHR_URL', status: 'missing' }));
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
  });

  it('--strict fails on warnings', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sb-strict-'));
    try {
      await writeFile(path.join(dir, 'untested.jsonata'), '$');
      expect((await cli(dir, ['lint', 'untested.jsonata'])).code).toBe(0);
      expect((await cli(dir, ['lint', '--strict', 'untested.jsonata'])).code).toBe(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('test', () => {
  it('runs mapping and channel tests, prints failures with their line, ends with "N passed, N failed"', async () => {
    const r = await cli(project, ['test']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('  ✓ an ordinary message reaches ehr, not urgent');
    expect(r.out).toContain('  ✓ a reaction is filtered out');
    expect(r.out).toContain('  ✓ unsigned is refused');
    expect(r.out).toContain('  ✗ this one fails on purpose [channels/demo.test.yaml:11]: not_routed: the message reaches ehr');
    expect(r.out).toContain('  ✓ text');
    expect(r.out.trimEnd().split('\n').at(-1)).toBe('4 passed, 1 failed');
    const only = await cli(project, ['test', '--filter', 'reaction']);
    expect(only.code).toBe(0);
    expect(only.out.trimEnd().split('\n').at(-1)).toBe('1 passed, 0 failed');
  });

  it('loadChannelDirectory skips channel tests beside channel files', async () => {
    const loaded = await loadChannelDirectory(path.join(project, 'channels'), {
      registry: createConnectorRegistry(),
      env: { WHATSAPP_APP_SECRET: 'a', WHATSAPP_VERIFY_TOKEN: 'b', FHIR_BASE_URL: 'http://127.0.0.1:1/fhir' },
    });
    expect(loaded.map((c) => c.id)).toEqual(['demo']);
  });
});

describe('map', () => {
  it('prints the output of a mapping on a raw webhook, and problems with their position', async () => {
    const r = await cli(project, ['map', '-m', 'mappings/demo.jsonata', '-i', 'fixtures/whatsapp/sample_text.json', '--source', 'whatsapp_cloud', '--binding', 'identifier_system="urn:x"', '--fhir', 'Communication']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ resourceType: 'Communication', identifier: [{ system: 'urn:x' }] });
    expect(r.err).toContain('✓ valid FHIR R4 Communication');
    await writeFile(path.join(project, 'mappings/throws.jsonata'), "{\n  'n': text + 1\n}");
    const failing = await cli(project, ['map', '-m', 'mappings/throws.jsonata', '-i', 'fixtures/whatsapp/sample_text.json', '--source', 'whatsapp_cloud']);
    expect(failing.code).toBe(1);
    expect(failing.err).toMatch(/mappings\/throws\.jsonata:2:13: JSONata T2001/);
    expect(failing.err).toContain('what to do:');
    await rm(path.join(project, 'mappings/throws.jsonata'));
  });

  it('--watch re-runs on save', async () => {
    const mapping = path.join(project, 'mappings/watched.jsonata');
    await writeFile(mapping, "{ 'v': 1 }");
    const controller = new AbortController();
    const c = capture(project, {}, controller.signal);
    const running = runCli(['map', '-m', 'mappings/watched.jsonata', '-i', 'fixtures/whatsapp/sample_text.json', '--source', 'whatsapp_cloud', '--watch'], c.io);
    const waitFor = async (text: string, ms: number): Promise<void> => {
      const started = Date.now();
      while (!c.out().includes(text)) {
        if (Date.now() - started > ms) throw new Error(`no "${text}" within ${ms} ms; stdout: ${c.out()} stderr: ${c.err()}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitFor('"v": 1', 10_000);
    await new Promise((r) => setTimeout(r, 150)); // the watcher is set up after the first run
    await writeFile(mapping, "{ 'v': 2 }");
    // No bound on how fast (speed is not asserted by time): only that the save is picked up.
    await waitFor('"v": 2', 10_000);
    controller.abort();
    expect(await running).toBe(0);
    await rm(mapping);
  });
});

describe('validate', () => {
  it('lints, builds, and checks each destination against a live FHIR endpoint', async () => {
    const server = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/fhir+json');
      res.end(JSON.stringify(req.url?.startsWith('/fhir/metadata') ? { resourceType: 'CapabilityStatement', status: 'active' } : {}));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const offline = await cli(project, ['validate']);
      expect(offline.code).toBe(0);
      expect(offline.out).toMatch(/2\/3 build:\n {2}✓ demo: source whatsapp_cloud, 2 destinations: ehr \(mapping [0-9a-f]{12}\), urgent/);
      expect(offline.out).toContain('3/3 environment: not checked');
      const sandboxed = await cli(project, ['validate', '--environment']);
      expect(sandboxed.out).toContain('- demo/ehr (fhir_r4): skipped: FHIR_BASE_URL is not set; the gateway starts its in-process FHIR sandbox');
      const live = await cli(project, ['validate', '--environment'], { FHIR_BASE_URL: `http://127.0.0.1:${port}/fhir` });
      expect(live.code).toBe(0);
      expect(live.out).toMatch(/✓ demo\/ehr \(fhir_r4\): reachable: \/metadata answered a CapabilityStatement \(no authentication configured\) \(\d+ ms\)/);
      server.close();
      const down = await cli(project, ['validate', '--environment', '--timeout-ms', '2000'], { FHIR_BASE_URL: `http://127.0.0.1:${port}/fhir` });
      expect(down.code).toBe(1);
      expect(down.out).toMatch(/✗ demo\/ehr \(fhir_r4\): unreachable: FHIR_NETWORK/);
    } finally {
      server.close();
    }
  });
});

describe('docs', () => {
  it('the generated docs and schemas in the repository are up to date (run `npm run docs` when this fails)', async () => {
    const r = await cli(ROOT, ['docs', '--check']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });

  it('--check names stale files and exits 1; docs writes them', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sb-docs-'));
    try {
      await writeFile(path.join(dir, 'package.json'), '{}');
      const stale = await cli(dir, ['docs', '--check']);
      expect(stale.code).toBe(1);
      expect(stale.err).toContain('docs/reference/connectors.md is out of date');
      expect((await cli(dir, ['docs'])).code).toBe(0);
      expect(await readFile(path.join(dir, 'docs/reference/connectors.md'), 'utf8')).toContain('## `whatsapp_cloud` (source)');
      expect((await cli(dir, ['docs', '--check'])).code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
