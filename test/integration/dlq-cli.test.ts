/** The dead-letter workflow from the CLI against a running gateway: list, show, bulk replay with progress, discard. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/io.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
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

  it('lists and shows dead letters with their cause', async () => {
    const c = io(gw);
    expect(await runCli(['dlq', 'list', '--channel', 'whatsapp-to-ehr', '--code', 'FHIR_HTTP_PERMANENT'], c)).toBe(0);
    const lines = c.out.split('\n').filter((l) => /^[0-9a-f-]{36} /.test(l));
    expect(lines).toHaveLength(12);
    expect(lines[0]).toContain('whatsapp-to-ehr/ehr  FHIR_HTTP_PERMANENT  attempts=1');
    const id = lines[0]!.split(' ')[0]!;
    const s = io(gw);
    expect(await runCli(['dlq', 'show', id], s)).toBe(0);
    expect(s.out).toContain('"business-rule"');
  });

  it('discards one with a reason, then replays the rest with progress, exactly once each', async () => {
    const c = io(gw);
    await runCli(['dlq', 'list', '--format', 'json'], c);
    const first = (JSON.parse(c.out) as { items: { id: string; sourceMessageId: string }[] }).items[0]!;
    const d = io(gw);
    expect(await runCli(['dlq', 'discard', first.id], d)).toBe(2); // --reason is required
    expect(await runCli(['dlq', 'discard', first.id, '--reason', 'test message from staff'], d)).toBe(0);

    proxy.setRule(() => ({ kind: 'pass' }));
    const r = io(gw);
    expect(await runCli(['dlq', 'replay', '--all', '--channel', 'whatsapp-to-ehr', '--reason', 'EHR rule fixed'], r)).toBe(0);
    expect(r.out).toContain('replayed 11 of 11 dead letters');
    expect(r.err).toContain('replayed 11/11');
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
});
