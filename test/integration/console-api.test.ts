/** The console's HTTP side: its static assets at /console, and the admin endpoints it reads (search, trace, stats, whoami). */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { DEMO_WA_ID, newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();
const built = existsSync(path.join(repoRoot, 'console', 'dist', 'index.html'));

describe.skipIf(redis === null)('console over HTTP', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  const delivered = newWamid();
  const refused = newWamid();

  beforeAll(async () => {
    if (!built) throw new Error('console/dist is missing: npm install (prepare) or npm run build:console builds it');
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    gw = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: proxy.url });
    expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: delivered }))).status).toBe(200);
    await waitFor('delivered', async () => {
      const r = await gw.admin(`/admin/messages/search?q=${delivered}`);
      const b = (await r.json()) as { items: { deliveries: { state: string }[] }[] };
      return b.items[0]?.deliveries.every((d) => d.state === 'delivered') ? true : undefined;
    });
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.includes('/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule"}]}' }
        : { kind: 'pass' },
    );
    expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: refused }))).status).toBe(200);
    await waitFor('dead-lettered', async () => ((await (await gw.admin('/admin/dead-letters/count')).json()) as { count: number }).count === 1 || undefined);
  });
  afterAll(async () => {
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
  });

  it('serves the console document, its hashed assets for good, and 404 for unknown assets', async () => {
    const page = await fetch(`${gw.url}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('cache-control')).toBe('no-cache');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    const html = await page.text();
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const js = await fetch(`${gw.url}${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const again = await fetch(`${gw.url}${script}`, { headers: { 'if-none-match': js.headers.get('etag')! } });
    expect(again.status).toBe(304);
    expect((await fetch(`${gw.url}/console`)).status).toBe(200);
    expect((await fetch(`${gw.url}/console/assets/missing.js`)).status).toBe(404);
    expect((await fetch(`${gw.url}/console/../admin/channels`)).status).not.toBe(200);
    expect(((await (await fetch(`${gw.url}/console/config.json`)).json()) as { sessionIdleMinutes: number }).sessionIdleMinutes).toBe(30);
  });

  it('tells who the token belongs to, and refuses a wrong token', async () => {
    expect(await (await gw.admin('/admin/whoami')).json()).toMatchObject({ principal: { kind: 'bootstrap', display: 'ADMIN_TOKEN', role: 'admin' }, permissions: expect.arrayContaining(['content.read', 'tokens.manage']) });
    expect((await fetch(`${gw.url}/admin/whoami`, { headers: { authorization: 'Bearer not-the-token' } })).status).toBe(401);
    expect((await fetch(`${gw.url}/admin/whoami`)).status).toBe(401);
  });

  it('finds a message by its wamid in any channel, by state and by the patient phone, without content', async () => {
    const byId = (await (await gw.admin(`/admin/messages/search?q=${delivered}`)).json()) as { items: { sourceMessageId: string; channelId: string; deliveries: { destination: string; state: string }[] }[] };
    expect(byId.items).toHaveLength(1);
    expect(byId.items[0]).toMatchObject({ sourceMessageId: delivered, channelId: 'whatsapp-to-ehr', deliveries: [{ destination: 'ehr', state: 'delivered' }] });
    expect(JSON.stringify(byId)).not.toContain('Hello');
    const dead = (await (await gw.admin('/admin/messages/search?state=dead_lettered')).json()) as { items: { sourceMessageId: string }[] };
    expect(dead.items.map((m) => m.sourceMessageId)).toEqual([refused]);
    const byPhone = (await (await gw.admin(`/admin/messages/search?phone=%2B${DEMO_WA_ID}`)).json()) as { items: { sourceMessageId: string }[] };
    expect(byPhone.items.map((m) => m.sourceMessageId).sort()).toEqual([delivered, refused].sort());
    const page1 = (await (await gw.admin('/admin/messages/search?limit=1')).json()) as { items: { sourceMessageId: string }[]; next: { before_at: string; before_id: string } };
    expect(page1.items.map((m) => m.sourceMessageId)).toEqual([refused]);
    const page2 = (await (await gw.admin(`/admin/messages/search?limit=1&before_at=${encodeURIComponent(page1.next.before_at)}&before_id=${page1.next.before_id}`)).json()) as { items: { sourceMessageId: string }[] };
    expect(page2.items.map((m) => m.sourceMessageId)).toEqual([delivered]);
    expect((await gw.admin('/admin/messages/search?state=lost')).status).toBe(400);
  });

  it('traces a message from receipt to each attempt with the error code, the server answer and the mapping version', async () => {
    const found = (await (await gw.admin(`/admin/messages/search?q=${refused}`)).json()) as { items: { id: string }[] };
    const t = (await (await gw.admin(`/admin/messages/${found.items[0]!.id}/trace`)).json()) as {
      sourceMessageId: string;
      event: { state: string };
      deliveries: { state: string; reason: string; history: { result: string; errorCode: string; mappingVersion: string; response: unknown }[] }[];
    };
    expect(t.sourceMessageId).toBe(refused);
    expect(t.event.state).toBe('ingested');
    const d = t.deliveries[0]!;
    expect(d.state).toBe('dead_lettered');
    expect(d.reason).toMatch(/^FHIR_HTTP_PERMANENT: /);
    expect(d.history[0]).toMatchObject({ result: 'dead_lettered', errorCode: 'FHIR_HTTP_PERMANENT' });
    expect(d.history[0]!.mappingVersion).toMatch(/\S/);
    expect(JSON.stringify(d.history[0]!.response)).toContain('business-rule');
    expect((await gw.admin('/admin/messages/00000000-0000-4000-8000-000000000000/trace')).status).toBe(404);
  });

  it("lists a patient's conversation across messages in order, with delivery states", async () => {
    const found = (await (await gw.admin(`/admin/messages/search?q=${refused}`)).json()) as { items: { id: string }[] };
    const c = (await (await gw.admin(`/admin/messages/${found.items[0]!.id}/conversation`)).json()) as { items: { sourceMessageId: string; deliveries: { state: string }[] }[] };
    expect(c.items.map((m) => [m.sourceMessageId, m.deliveries[0]?.state])).toEqual([
      [delivered, 'delivered'],
      [refused, 'dead_lettered'],
    ]);
    expect((await gw.admin('/admin/messages/00000000-0000-4000-8000-000000000000/conversation')).status).toBe(404);
  });

  it('counts the last hour per destination for the dashboard', async () => {
    const s = (await (await gw.admin('/admin/stats')).json()) as { destinations: { channelId: string; destination: string; delivered: number; attempts: number; failedAttempts: number }[]; dead_letters: { count: number }[] };
    expect(s.destinations.find((x) => x.channelId === 'whatsapp-to-ehr' && x.destination === 'ehr')).toMatchObject({ delivered: 1, attempts: 2, failedAttempts: 1 });
    expect(s.dead_letters.reduce((n, x) => n + x.count, 0)).toBe(1);
  });
});
