/** The dead-letter workflow from the CLI against a running gateway: list, show, bulk replay with progress, discard. */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/io.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();

function io(gw: TestGateway): CliIo & { out: string; err: string } {
  const box = {
    out: '',
    err: '',
    stdout(t: string) {
      box.out += t;
    },
    stderr(t: string) {
      box.err += t;
    },
    cwd: process.cwd(),
    env: { SWITCHBOARD_URL: gw.url, ADMIN_TOKEN: gw.adminToken },
  };
  return box;
}

describe.skipIf(redis === null)('switchboard dlq', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  const wamids: string[] = [];

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    gw = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: proxy.url });
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.includes('/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule"}]}' }
        : { kind: 'pass' },
    );
    for (let i = 0; i < 12; i++) {
      const w = newWamid();
      wamids.push(w);
      expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: w }))).status).toBe(200);
    }
    await waitFor('all dead-lettered', async () => {
      const r = (await (await gw.admin('/admin/dead-letters/count?channel=whatsapp-to-ehr')).json()) as { count: number };
      return r.count === 12 ? true : undefined;
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
  });

  it('lists and shows dead letters leading with the reason; show --output gives what the server refused', async () => {
    const c = io(gw);
    expect(await runCli(['dlq', 'list', '--channel', 'whatsapp-to-ehr', '--code', 'FHIR_HTTP_PERMANENT'], c)).toBe(0);
    const lines = c.out.split('\n').filter((l) => /^[0-9a-f-]{36} /.test(l));
    expect(lines).toHaveLength(12);
    expect(lines[0]).toMatch(/^[0-9a-f-]{36} {2}FHIR_HTTP_PERMANENT: /);
    expect(c.out).toContain('whatsapp-to-ehr/ehr  attempts=1');
    const id = lines[0]!.split(' ')[0]!;
    const s = io(gw);
    expect(await runCli(['dlq', 'show', id], s)).toBe(0);
    expect(s.out.split('\n')[0]).toMatch(new RegExp(`^${id} {2}FHIR_HTTP_PERMANENT: `));
    expect(s.out).toContain('server answered: error business-rule');
    expect(() => JSON.parse(s.out) as unknown).toThrow(); // text, the default format
    const j = io(gw);
    expect(await runCli(['dlq', 'show', id, '--format', 'json'], j)).toBe(0);
    expect((JSON.parse(j.out) as { reason: string }).reason).toMatch(/^FHIR_HTTP_PERMANENT: /);
    const o = io(gw);
    expect(await runCli(['dlq', 'show', id, '--output'], o)).toBe(0);
    expect(JSON.parse(o.out)).toMatchObject({ resourceType: 'Communication', status: 'completed' });
  });

  it('replay waits for the new outcome and says it (dead-lettered again: exit 1); --no-wait returns at once', async () => {
    const c = io(gw);
    await runCli(['dlq', 'list', '--format', 'json'], c);
    const items = (JSON.parse(c.out) as { items: { id: string }[] }).items;
    const again = io(gw);
    expect(await runCli(['dlq', 'replay', items[1]!.id], again)).toBe(1);
    expect(again.out).toMatch(new RegExp(`^${items[1]!.id}: dead-lettered again: FHIR_HTTP_PERMANENT: `));
    const quick = io(gw);
    expect(await runCli(['dlq', 'replay', items[2]!.id, '--no-wait'], quick)).toBe(0);
    expect(quick.out).toContain(`${items[2]!.id}: replayed (not waiting`);
    await waitFor('dead-lettered again', async () => {
      const d = (await (await gw.admin(`/admin/deliveries/${items[2]!.id}`)).json()) as { state: string; generation: number };
      return d.state === 'dead_lettered' && d.generation === 1 ? true : undefined;
    });
  });

  it('discards one with a reason, then replays the rest with progress, exactly once each', async () => {
    const c = io(gw);
    await runCli(['dlq', 'list', '--format', 'json'], c);
    const first = (JSON.parse(c.out) as { items: { id: string; sourceMessageId: string }[] }).items[0]!;
    const d = io(gw);
    expect(await runCli(['dlq', 'discard', first.id], d)).toBe(2); // --reason is required
    expect(await runCli(['dlq', 'discard', first.id, '--reason', 'test message from staff'], d)).toBe(0);

    proxy.setRule(() => ({ kind: 'pass' }));
    const one = io(gw);
    await runCli(['dlq', 'list', '--format', 'json'], one);
    const next = (JSON.parse(one.out) as { items: { id: string }[] }).items[0]!.id;
    const waited = io(gw);
    expect(await runCli(['dlq', 'replay', next], waited)).toBe(0);
    expect(waited.out).toMatch(new RegExp(`^${next}: delivered \\(resource_id=[^,]+, status=201, created=true`));
    const r = io(gw);
    expect(await runCli(['dlq', 'replay', '--all', '--channel', 'whatsapp-to-ehr', '--reason', 'EHR rule fixed'], r)).toBe(0);
    expect(r.out).toContain('replayed 10 of 10 dead letters');
    expect(r.err).toContain('replayed 10/10');
    for (const w of wamids) {
      if (w === first.sourceMessageId) continue;
      await waitFor(`delivered ${w}`, async () => {
        const b = (await (await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`https://switchboard.example/sid/whatsapp-message-id|${w}`)}`)).json()) as { entry?: unknown[] };
        return b.entry?.length === 1 ? true : undefined;
      });
    }
    const discarded = (await (await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`https://switchboard.example/sid/whatsapp-message-id|${first.sourceMessageId}`)}`)).json()) as { entry?: unknown[] };
    expect(discarded.entry ?? []).toHaveLength(0);
    const left = (await (await gw.admin('/admin/dead-letters/count')).json()) as { count: number };
    expect(left.count).toBe(0);
  });

  it('replay waits no longer than --timeout-ms: a delivery still retrying is reported pending with its last reason (exit 1)', async () => {
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.includes('/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule"}]}' }
        : { kind: 'pass' },
    );
    expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: newWamid() }))).status).toBe(200);
    const id = await waitFor('dead-lettered', async () => {
      const c = io(gw);
      await runCli(['dlq', 'list', '--format', 'json'], c);
      return (JSON.parse(c.out) as { items: { id: string }[] }).items[0]?.id;
    });
    // The EHR is now down (503, retryable): the replayed delivery keeps retrying past the wait.
    proxy.setRule((req) => (req.method === 'POST' && req.url.includes('/Communication') ? { kind: 'respond', status: 503, body: 'maintenance' } : { kind: 'pass' }));
    const r = io(gw);
    const started = Date.now();
    expect(await runCli(['dlq', 'replay', id, '--timeout-ms', '1500'], r)).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(r.err).toContain('waiting up to 1.5 s for the outcome (--no-wait to return at once)');
    expect(r.out).toMatch(new RegExp(`^${id}: still pending after 1.5 s \\((not tried yet|\\d+ attempts?, last: .+)\\); dlq show ${id} later`));
    const bad = io(gw);
    expect(await runCli(['dlq', 'replay', id, '--timeout-ms', 'soon'], bad)).toBe(2);
    expect(bad.err).toContain('--timeout-ms is a number of milliseconds, 1 to 600000');
  });
});

describe.skipIf(redis === null)('switchboard dlq on a mapping problem', () => {
  let fhir: FhirSandbox;
  let gw: TestGateway;
  let dir: string;
  let mappingFile: string;
  let badLine: number;

  beforeAll(async () => {
    // A project as an analyst has it: the shipped channel, with a mapping whose status is wrong.
    dir = await mkdtemp(path.join(os.tmpdir(), 'sb-dlq-mapping-'));
    await mkdir(path.join(dir, 'channels'));
    await mkdir(path.join(dir, 'mappings'));
    await cp(path.join(repoRoot, 'channels/whatsapp-to-ehr.yaml'), path.join(dir, 'channels/whatsapp-to-ehr.yaml'));
    const original = await readFile(path.join(repoRoot, 'mappings/whatsapp-to-communication.jsonata'), 'utf8');
    const broken = original.replace("'status': 'completed'", "'status': 'done'");
    badLine = broken.split('\n').findIndex((l) => l.includes("'status': 'done'")) + 1;
    mappingFile = path.join(dir, 'mappings/whatsapp-to-communication.jsonata');
    await writeFile(mappingFile, broken);
    fhir = await startFhirSandbox({ port: 0, seed: true });
    gw = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: fhir.baseUrl, channelsDir: path.join(dir, 'channels') });
  });
  afterAll(async () => {
    await gw?.stop();
    await fhir?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the reason names the mapping line and column, show --output gives the refused Communication, and replay after the fix prints delivered', async () => {
    expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: newWamid() }))).status).toBe(200);
    await waitFor('dead-lettered', async () => {
      const r = (await (await gw.admin('/admin/dead-letters/count')).json()) as { count: number };
      return r.count === 1 ? true : undefined;
    });
    const l = io(gw);
    expect(await runCli(['dlq', 'list'], l)).toBe(0);
    const [id, reason] = l.out.split('\n')[0]!.split(/ {2}(.*)/s);
    expect(reason).toMatch(new RegExp(`^MAPPING_OUTPUT_INVALID: \\S*whatsapp-to-communication\\.jsonata:${badLine}:\\d+: Communication\\.status: code is not in the required value set`));
    const s = io(gw);
    expect(await runCli(['dlq', 'show', id!], s)).toBe(0);
    expect(s.out.split('\n')[0]).toBe(`${id}  ${reason}`);
    const o = io(gw);
    expect(await runCli(['dlq', 'show', id!, '--output'], o)).toBe(0);
    expect(JSON.parse(o.out)).toMatchObject({ resourceType: 'Communication', status: 'done' });

    const version = async () =>
      ((await (await gw.admin('/admin/channels')).json()) as { channels: { destinations: { mapping_version: string }[] }[] }).channels[0]?.destinations[0]?.mapping_version;
    const before = await version();
    await writeFile(mappingFile, (await readFile(mappingFile, 'utf8')).replace("'status': 'done'", "'status': 'completed'"));
    await gw.admin('/admin/channels/reload', { method: 'POST', body: '{}' });
    await waitFor('the fixed mapping loaded', async () => ((await version()) !== before ? true : undefined));
    const r = io(gw);
    expect(await runCli(['dlq', 'replay', id!, '--timeout-ms', '20000'], r)).toBe(0);
    expect(r.out).toMatch(new RegExp(`^${id}: delivered \\(resource_id=`));
  });
});
