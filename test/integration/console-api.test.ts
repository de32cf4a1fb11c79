/** The console's HTTP side: its static assets at /console, and the admin endpoints it reads (search, trace, stats, whoami). */
import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateFhirResource } from '../../src/fhir/validate-resource.js';
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
  let databaseUrl: string;
  const delivered = newWamid();
  const refused = newWamid();

  beforeAll(async () => {
    if (!built) throw new Error('console/dist is missing: npm install (prepare) or npm run build:console builds it');
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    databaseUrl = await createTestDatabase();
    gw = await startGateway({ databaseUrl, redisUrl: redis, fhirBaseUrl: proxy.url });
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
    // The phone goes in a POST body, never in a URL (access logs); a URL carrying one is refused.
    const byPhone = (await (await gw.admin('/admin/messages/search', { method: 'POST', body: JSON.stringify({ phone: `+${DEMO_WA_ID}` }) })).json()) as { items: { sourceMessageId: string }[] };
    expect(byPhone.items.map((m) => m.sourceMessageId).sort()).toEqual([delivered, refused].sort());
    const inUrl = await gw.admin(`/admin/messages/search?phone=%2B${DEMO_WA_ID}`);
    expect(inUrl.status).toBe(400);
    expect(await inUrl.text()).toContain('POST /admin/messages/search');
    expect((await gw.admin('/admin/messages/search', { method: 'POST', body: JSON.stringify({ phone: `+${DEMO_WA_ID}`, colour: 'red' }) })).status).toBe(400);
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

  interface AuditItem { seq: number; action: string; outcome: string; principal: { kind: string; id: string; display: string } | null; resources: { type: string; id: string }[]; detail: Record<string, unknown>; prev_hash: string; hash: string }
  const auditLog = async (query: string) => {
    const r = await gw.admin(`/admin/audit${query}`);
    expect(r.status, query).toBe(200);
    return (await r.json()) as { items: AuditItem[]; next: { before_seq: number } | null; actions: string[] };
  };

  it('browses the audit log by action, principal, resource and time, newest first and paged; the view is itself audited', async () => {
    const id = ((await (await gw.admin(`/admin/messages/search?q=${delivered}`)).json()) as { items: { id: string }[] }).items[0]!.id;
    expect((await gw.admin(`/admin/messages/${id}/trace`)).status).toBe(200);
    const viewed = await auditLog(`?action=message.viewed&resource=${id}`);
    expect(viewed.items.length).toBeGreaterThanOrEqual(1);
    expect(viewed.items[0]).toMatchObject({ action: 'message.viewed', outcome: 'success', principal: { kind: 'bootstrap', id: 'ADMIN_TOKEN' }, detail: { view: 'trace' } });
    expect(viewed.items.every((e) => e.action === 'message.viewed' && e.resources.some((r) => r.id === id))).toBe(true);
    expect(viewed.actions).toContain('audit.viewed');

    const two = await auditLog('?action=message.viewed,message.searched&limit=2');
    expect(two.items.map((e) => e.action).every((a) => a === 'message.viewed' || a === 'message.searched')).toBe(true);
    expect(two.items[0]!.seq).toBeGreaterThan(two.items[1]!.seq);
    const more = await auditLog(`?action=message.viewed,message.searched&limit=2&before_seq=${two.next!.before_seq}`);
    expect(more.items[0]!.seq).toBeLessThan(two.items[1]!.seq);

    expect((await auditLog('?principal=bootstrap:ADMIN_TOKEN&limit=20')).items.every((e) => e.principal?.id === 'ADMIN_TOKEN')).toBe(true);
    expect((await auditLog('?principal=nobody')).items).toEqual([]);
    expect((await auditLog(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).items).toEqual([]);
    const last = await auditLog('?action=audit.viewed&limit=1');
    expect(last.items[0]).toMatchObject({ action: 'audit.viewed', principal: { id: 'ADMIN_TOKEN' }, detail: { listed: 0, principal: null } });
    expect((await gw.admin('/admin/audit?action=message.teleported')).status).toBe(400);
    expect((await gw.admin('/admin/audit?since=yesterday')).status).toBe(400);
  });

  it('exports the audit trail as the CLI does (NDJSON in chain order, FHIR R4 AuditEvent), recording the export', async () => {
    const res = await gw.admin('/admin/audit/export');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/x-ndjson');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="switchboard-audit-.+\.ndjson"$/);
    const lines = (await res.text()).trimEnd().split('\n').map((l) => JSON.parse(l) as AuditItem);
    expect(lines.length).toBe(Number(res.headers.get('x-audit-entries')));
    expect(lines[0]!.seq).toBe(1);
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.prev_hash).toBe(lines[i - 1]!.hash);
    const recorded = (await auditLog('?action=audit.exported&limit=1')).items[0]!;
    expect(recorded).toMatchObject({ principal: { id: 'ADMIN_TOKEN' }, detail: { format: 'ndjson', entries: lines.length, via: 'admin_api' } });
    expect(recorded.seq).toBeGreaterThan(lines.at(-1)!.seq);

    const fhirExport = await gw.admin(`/admin/audit/export?format=fhir&since=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`);
    expect(fhirExport.headers.get('content-type')).toContain('application/fhir+ndjson');
    const events = (await fhirExport.text()).trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.length).toBeGreaterThan(lines.length);
    for (const ev of events.slice(-5)) expect(validateFhirResource(ev, 'AuditEvent'), JSON.stringify(ev)).toEqual({ ok: true });
    expect((await gw.admin('/admin/audit/export?format=csv')).status).toBe(400);
  });

  // Last: it breaks the chain of this gateway's trail.
  it('reports whether audit verify holds, and where the chain breaks after tampering', async () => {
    const ok = (await (await gw.admin('/admin/audit/verify')).json()) as { ok: boolean; summary: string; entries: number };
    expect(ok).toMatchObject({ ok: true });
    expect(ok.summary).toBe(`audit trail intact: ${ok.entries} entries (1-${ok.entries})`);
    expect((await auditLog('?action=audit.verified&limit=1')).items[0]).toMatchObject({ outcome: 'success', detail: { entries: ok.entries } });

    // The database superuser alters entry 3 (the append-only triggers off for the session).
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    try {
      const c = await pool.connect();
      await c.query('SET session_replication_role = replica');
      await c.query(`UPDATE audit_events SET outcome = CASE outcome WHEN 'success' THEN 'failure' ELSE 'success' END WHERE seq = 3`);
      c.release(true);
    } finally {
      await pool.end();
    }
    const broken = (await (await gw.admin('/admin/audit/verify')).json()) as { ok: boolean; seq: number; problem: string; summary: string };
    expect(broken).toMatchObject({ ok: false, seq: 3, problem: 'altered' });
    expect(broken.summary).toMatch(/^audit trail BROKEN at entry 3: entry 3 \(recorded .+\) was altered/);
    expect((await auditLog('?action=audit.verified&limit=1')).items[0]).toMatchObject({ outcome: 'failure', detail: { broken_at: 3, problem: 'altered' } });
  });
});
