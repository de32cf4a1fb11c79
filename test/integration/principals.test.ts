/**
 * Every principal is recorded by name: actions taken with named API tokens appear in the audit
 * trail, in delivery actions (and the trace view) and in the pause/resume log lines under the
 * token's name, never as a generic "admin".
 */
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedAuditEntry } from '../../src/core/audit.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();

describe.skipIf(redis === null)('named principals in what is recorded', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let dbUrl: string;
  const logs: Record<string, unknown>[] = [];

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    dbUrl = await createTestDatabase();
    const logStream = new PassThrough();
    let buffered = '';
    logStream.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) logs.push(JSON.parse(l) as Record<string, unknown>);
    });
    gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redis, fhirBaseUrl: proxy.url, logStream });
  });
  afterAll(async () => {
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
  });

  const create = async (name: string, role: string) => {
    const r = await gw.admin('/admin/tokens', { method: 'POST', body: JSON.stringify({ name, role }) });
    expect(r.status).toBe(201);
    return ((await r.json()) as { token: string }).token;
  };
  const as = (token: string, p: string, body?: unknown) =>
    fetch(`${gw.url}${p}`, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }) });

  it('names the token in the audit trail, delivery actions, the trace and the logs', async () => {
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.startsWith('/fhir/R4/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule"}]}' }
        : { kind: 'pass' },
    );
    for (let i = 0; i < 2; i++) expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid: newWamid() }))).status).toBe(200);
    const operator = await create('night-operator', 'operator');
    const analyst = await create('mapping-analyst', 'analyst');
    const ids = await waitFor('two dead letters', async () => {
      const r = (await (await as(analyst, '/admin/dead-letters?channel=whatsapp-to-ehr')).json()) as { items: { id: string }[] };
      return r.items.length >= 2 ? r.items.map((i) => i.id) : undefined;
    });
    proxy.setRule(() => ({ kind: 'pass' }));

    expect((await as(operator, `/admin/dead-letters/${ids[0]}/replay`, { reason: 'EHR fixed' })).status).toBe(202);
    expect((await as(operator, `/admin/dead-letters/${ids[1]}/discard`, { reason: 'duplicate' })).status).toBe(200);
    expect((await as(operator, '/admin/destinations/whatsapp-to-ehr/ehr/pause', { reason: 'maintenance' })).status).toBe(200);
    expect((await as(operator, '/admin/destinations/whatsapp-to-ehr/ehr/resume', {})).status).toBe(200);
    expect((await as(analyst, '/admin/channels/reload', {})).status).toBe(200);
    expect((await as(analyst, `/admin/deliveries/${ids[0]}`)).status).toBe(200);

    const entries: RecordedAuditEntry[] = [];
    for await (const e of gw.app.internals.audit!.entries()) entries.push(e);
    const by = (action: string) => entries.filter((e) => e.action === action && e.outcome === 'success').map((e) => e.principal);
    const op = { kind: 'token', id: 'night-operator', display: 'night-operator', role: 'operator' };
    const an = { kind: 'token', id: 'mapping-analyst', display: 'mapping-analyst', role: 'analyst' };
    expect(by('delivery.replayed')).toEqual([op]);
    expect(by('delivery.discarded')).toEqual([op]);
    expect(by('destination.paused')).toEqual([op]);
    expect(by('destination.resumed')).toEqual([op]);
    expect(by('channels.reloaded')).toEqual([an]);
    expect(by('delivery.viewed')).toContainEqual(an);
    expect(by('token.created')).toEqual([
      { kind: 'bootstrap', id: 'ADMIN_TOKEN', display: 'ADMIN_TOKEN', role: 'admin' },
      { kind: 'bootstrap', id: 'ADMIN_TOKEN', display: 'ADMIN_TOKEN', role: 'admin' },
    ]);
    // Nobody is recorded as just "admin".
    for (const e of entries) {
      expect(e.principal?.id, e.action).not.toBe('admin');
      expect(e.principal?.display, e.action).not.toBe('admin');
    }

    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const actions = await db.query<{ action: string; actor: string }>('SELECT action, actor FROM delivery_actions ORDER BY id');
      expect(actions.rows).toEqual([
        { action: 'replay', actor: 'token:night-operator' },
        { action: 'discard', actor: 'token:night-operator' },
      ]);
    } finally {
      await db.end();
    }

    const message = (await (await as(analyst, `/admin/deliveries/${ids[1]}`)).json()) as { messageId: string };
    const trace = (await (await as(analyst, `/admin/messages/${message.messageId}/trace`)).json()) as { deliveries: { actions: { action: string; actor: string }[] }[] };
    expect(trace.deliveries.flatMap((d) => d.actions)).toContainEqual(expect.objectContaining({ action: 'discard', actor: 'token:night-operator' }));

    await waitFor('pause and resume logged', async () => logs.some((l) => l['msg'] === 'destination resumed'));
    expect(logs.find((l) => l['alert'] === 'destination_paused')).toMatchObject({ by: 'token:night-operator', reason: 'maintenance' });
    expect(logs.find((l) => l['msg'] === 'destination resumed')).toMatchObject({ by: 'token:night-operator' });
    expect(JSON.stringify(logs)).not.toContain(operator);
  });
});
