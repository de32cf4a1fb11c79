/**
 * The audit trail on a real PostgreSQL: append-only in the database, hash-chained, tampering by
 * the database superuser (update, delete, insert) found by `switchboard audit verify`; a real
 * gateway records PHI accesses and actions by default with principal, resources, address and
 * outcome; the FHIR export validates as R4 AuditEvents.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { capturedIo } from '../support/cli-io.js';
import { validateFhirResource } from '../../src/fhir/validate-resource.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { AuditStore } from '../../src/store/audit-store.js';
import { openEncryptingCodec, type EncryptingCodec } from '../../src/store/encrypting-codec.js';
import { runMigrations } from '../../src/store/migrations.js';
import { createKeyringProvider, parseKeyring } from '../../src/crypto/keyring.js';
import { systemPrincipal } from '../../src/core/principal.js';
import type { RecordedAuditEntry } from '../../src/core/audit.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const keys = () => `audit-test:${randomBytes(32).toString('base64')}`;

const cliIo = (env: Record<string, string>) => capturedIo(env);

/** A database with `n` audit entries, and a superuser connection to tamper with it. */
async function trailOf(n: number): Promise<{ url: string; ring: string; pool: pg.Pool; codec: EncryptingCodec; audit: AuditStore; close(): Promise<void> }> {
  const url = await createTestDatabase();
  const ring = keys();
  const pool = new pg.Pool({ connectionString: url });
  await runMigrations(pool);
  const codec = await openEncryptingCodec(pool, createKeyringProvider(parseKeyring(ring, 'test'), 'test'));
  const audit = new AuditStore(pool, codec);
  for (let i = 1; i <= n; i++) {
    await audit.record({ action: 'delivery.viewed', principal: systemPrincipal('test'), outcome: 'success', resources: [{ type: 'delivery', id: `d-${i}` }], sourceAddress: '127.0.0.1', detail: { n: i, view: 'x' } });
  }
  return { url, ring, pool, codec, audit, close: async () => (codec.close(), await pool.end()) };
}

async function verify(url: string, ring: string): Promise<{ code: number; out: string }> {
  const io = cliIo({ DATABASE_URL: url, ENCRYPTION_KEYS: ring });
  const code = await runCli(['audit', 'verify'], io);
  return { code, out: io.out + io.err };
}

/** As the database superuser, with the append-only triggers switched off for the session. */
async function asSuperuser(pool: pg.Pool, sql: string, args: unknown[] = []): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('SET session_replication_role = replica');
    await c.query(sql, args);
  } finally {
    await c.query('RESET session_replication_role').catch(() => undefined);
    c.release();
  }
}

describe('audit trail in the database', () => {
  it('is append-only for the application, and verifies intact', async () => {
    const t = await trailOf(5);
    try {
      await expect(t.pool.query(`UPDATE audit_events SET outcome = 'failure' WHERE seq = 2`)).rejects.toThrow(/append-only: UPDATE refused/);
      await expect(t.pool.query('DELETE FROM audit_events WHERE seq = 2')).rejects.toThrow(/append-only: DELETE refused/);
      await expect(t.pool.query('TRUNCATE audit_events')).rejects.toThrow(/append-only: TRUNCATE refused/);
      const year = new Date().getUTCFullYear();
      await expect(t.pool.query(`TRUNCATE audit_events_y${year}`)).rejects.toThrow(/append-only/);
      const r = await verify(t.url, t.ring);
      expect(r.out).toContain('audit trail intact: 5 entries (1-5)');
      expect(r.code).toBe(0);
      // verify is itself recorded, and the chain stays intact.
      expect((await verify(t.url, t.ring)).out).toContain('intact: 6 entries');
    } finally {
      await t.close();
    }
  });

  it('writers in parallel keep one linear chain', async () => {
    const t = await trailOf(0);
    try {
      await Promise.all(Array.from({ length: 30 }, (_, i) => t.audit.record({ action: 'message.viewed', principal: null, outcome: 'success', detail: { i } })));
      expect(await t.audit.verify()).toMatchObject({ ok: true, entries: 30, lastSeq: 30 });
    } finally {
      await t.close();
    }
  });

  it('finds an entry altered by the superuser', async () => {
    const t = await trailOf(5);
    try {
      await asSuperuser(t.pool, `UPDATE audit_events SET detail = '{"n": 3, "view": "y"}' WHERE seq = 3`);
      const r = await verify(t.url, t.ring);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/BROKEN at entry 3: entry 3 \(recorded [^)]+\) was altered/);
    } finally {
      await t.close();
    }
  });

  it('finds an entry removed by the superuser', async () => {
    const t = await trailOf(5);
    try {
      await asSuperuser(t.pool, 'DELETE FROM audit_events WHERE seq = 3');
      const r = await verify(t.url, t.ring);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/BROKEN at entry 4: entry 3 removed/);
    } finally {
      await t.close();
    }
  });

  it('finds an entry inserted by the superuser, even one copied with a recomputed plain hash', async () => {
    const t = await trailOf(5);
    try {
      // A forged entry 3 placed before the real one: it links to entry 2 like the real one does.
      await asSuperuser(
        t.pool,
        `INSERT INTO audit_events (seq, recorded_at, action, outcome, principal_kind, principal_id, principal_display, principal_role, source_address, resources, detail, key_id, prev_hash, hash)
         SELECT seq, recorded_at - interval '1 millisecond', 'message.viewed', outcome, principal_kind, principal_id, principal_display, principal_role, source_address, resources, detail, key_id, prev_hash, sha256(hash)
         FROM audit_events WHERE seq = 3`,
      );
      const r = await verify(t.url, t.ring);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/BROKEN at entry 3: entry 3 \(recorded [^)]+\) was inserted/);
    } finally {
      await t.close();
    }
  });
});

describe('audit retention', () => {
  it('drops whole yearly partitions past AUDIT_RETENTION_YEARS, records it, and the chain still verifies', async () => {
    const t = await trailOf(0);
    try {
      const year = new Date().getUTCFullYear();
      const at = (y: number) => new AuditStore(t.pool, t.codec, () => new Date(Date.UTC(y, 5, 1)));
      const entry = { action: 'message.viewed' as const, principal: systemPrincipal('test'), outcome: 'success' as const };
      for (const y of [year - 9, year - 9, year - 8, year - 2]) await at(y).record(entry);
      await t.audit.record(entry);
      const env = { DATABASE_URL: t.url, ENCRYPTION_KEYS: t.ring };

      const count = async (): Promise<number> => (await t.pool.query('SELECT count(*)::int AS n FROM audit_events')).rows[0].n as number;
      expect(await count()).toBe(5);
      const dry = cliIo(env);
      expect(await runCli(['store', 'prune', '--dry-run'], dry)).toBe(0);
      expect(dry.out).toContain('retention 6 years');
      expect(dry.out).toContain(`would drop audit_events_y${year - 9}: 2 entries (1-2)`);
      expect(dry.out).toContain(`would drop audit_events_y${year - 8}: 1 entries (3-3)`);
      expect(dry.out).not.toContain(`audit_events_y${year - 2}`);
      // A dry run drops nothing; it is itself recorded (one store.pruned entry saying dry_run).
      expect(await count()).toBe(6);
      const dryEntry = (await t.pool.query(`SELECT action, detail FROM audit_events ORDER BY seq DESC LIMIT 1`)).rows[0] as { action: string; detail: Record<string, unknown> };
      expect(dryEntry.action).toBe('store.pruned');
      expect(dryEntry.detail['dry_run']).toBe(true);

      const prune = cliIo(env);
      expect(await runCli(['store', 'prune'], prune)).toBe(0);
      expect(prune.out).toContain(`dropped audit_events_y${year - 9}: 2 entries`);
      expect((await t.pool.query('SELECT min(seq)::int AS lo FROM audit_events')).rows[0].lo).toBe(4);
      const pruned = (await t.pool.query(`SELECT detail FROM audit_events WHERE action = 'store.pruned' ORDER BY seq`)).rows.map((r) => r.detail as Record<string, unknown>);
      expect(pruned.filter((d) => d['dry_run'] !== true).map((d) => d['through_seq'])).toEqual([2, 3]);
      expect((await verify(t.url, t.ring)).out).toMatch(/audit trail intact: \d+ entries \(4-/);

      // The anchor is itself chained: altering it breaks verification.
      await asSuperuser(t.pool, `UPDATE audit_events SET detail = jsonb_set(detail, '{anchor_hash}', '"00"') WHERE action = 'store.pruned' AND detail->>'through_seq' = '3'`);
      expect((await verify(t.url, t.ring)).code).toBe(1);
      expect(await runCli(['store', 'prune'], cliIo({ ...env, AUDIT_RETENTION_YEARS: '0' }))).toBe(2);
    } finally {
      await t.close();
    }
  });
});

const redis = redisUrl();

describe.skipIf(redis === null)('audit trail of a running gateway', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let dbUrl: string;
  const ring = keys();

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    dbUrl = await createTestDatabase();
    gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redis, fhirBaseUrl: proxy.url, encryptionKeys: ring });
  });
  afterAll(async () => {
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
  });

  it('records views and actions with principal, resources, address and outcome; exports valid FHIR AuditEvents', async () => {
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.startsWith('/fhir/R4/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule"}]}' }
        : { kind: 'pass' },
    );
    const wamids = [newWamid(), newWamid()];
    for (const wamid of wamids) expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid }))).status).toBe(200);
    const ids = await waitFor('two dead letters', async () => {
      const r = (await (await gw.admin('/admin/dead-letters?channel=whatsapp-to-ehr')).json()) as { items: { id: string }[] };
      return r.items.length >= 2 ? r.items.map((i) => i.id) : undefined;
    });
    proxy.setRule(() => ({ kind: 'pass' }));

    expect((await gw.admin(`/admin/messages?channel=whatsapp-to-ehr&source_id=${wamids[0]}`)).status).toBe(200);
    expect((await gw.admin(`/admin/deliveries/${ids[0]}`)).status).toBe(200);
    expect((await gw.admin(`/admin/dead-letters/${ids[0]}/replay`, { method: 'POST', body: '{"reason":"fixed"}' })).status).toBe(202);
    expect((await gw.admin(`/admin/dead-letters/${ids[1]}/discard`, { method: 'POST', body: '{"reason":"duplicate"}' })).status).toBe(200);
    expect((await gw.admin(`/admin/dead-letters/${ids[1]}/discard`, { method: 'POST', body: '{"reason":"again"}' })).status).toBe(409);
    expect((await gw.admin('/admin/dead-letters/replay', { method: 'POST', body: '{"channel":"whatsapp-to-ehr"}' })).status).toBe(202);
    expect((await gw.admin('/admin/destinations/whatsapp-to-ehr/ehr/pause', { method: 'POST', body: '{"reason":"maintenance"}' })).status).toBe(200);
    expect((await gw.admin('/admin/destinations/whatsapp-to-ehr/ehr/resume', { method: 'POST', body: '{}' })).status).toBe(200);
    expect((await gw.admin('/admin/channels/reload', { method: 'POST', body: '{}' })).status).toBe(200);
    expect((await gw.admin(`/media/${'a'.repeat(64)}`)).status).toBe(404);
    expect((await fetch(`${gw.url}/media/${'a'.repeat(64)}`, { headers: { authorization: 'Bearer wrong-token-123456' } })).status).toBe(401);

    const entries: RecordedAuditEntry[] = [];
    for await (const e of gw.app.internals.audit!.entries()) entries.push(e);
    const byAction = (a: string) => entries.filter((e) => e.action === a);
    const bootstrap = { kind: 'bootstrap', id: 'ADMIN_TOKEN', display: 'ADMIN_TOKEN', role: 'admin' };
    expect(byAction('message.searched').length).toBeGreaterThanOrEqual(1);
    expect(byAction('message.viewed')[0]).toMatchObject({ outcome: 'success', principal: bootstrap, sourceAddress: expect.stringMatching(/127\.0\.0\.1/) });
    expect(byAction('message.viewed')[0]!.resources!.some((r) => r.type === 'message')).toBe(true);
    expect(byAction('delivery.viewed')[0]).toMatchObject({ outcome: 'success', resources: expect.arrayContaining([{ type: 'delivery', id: ids[0] }]) });
    expect(byAction('delivery.replayed')[0]).toMatchObject({ outcome: 'success', principal: bootstrap, resources: [{ type: 'delivery', id: ids[0] }], detail: { reason: 'fixed', generation: 1 } });
    expect(byAction('delivery.discarded').map((e) => e.outcome)).toEqual(['success', 'failure']);
    expect(byAction('delivery.bulk_replayed')[0]).toMatchObject({ outcome: 'success', detail: { channel: 'whatsapp-to-ehr' } });
    expect(byAction('destination.paused')[0]).toMatchObject({ resources: [{ type: 'destination', id: 'whatsapp-to-ehr/ehr' }], detail: { reason: 'maintenance' } });
    expect(byAction('destination.resumed')).toHaveLength(1);
    expect(byAction('channels.reloaded')).toHaveLength(1);
    expect(byAction('media.fetched')[0]).toMatchObject({ outcome: 'failure', principal: bootstrap, resources: [{ type: 'media', id: 'a'.repeat(64) }] });
    expect(byAction('auth.failed')[0]).toMatchObject({ outcome: 'failure', principal: null });
    // Ids, codes and reasons only: no message content, names or numbers.
    expect(JSON.stringify(entries)).not.toMatch(/Hello from a test|Jane|15551234567|wamid/);

    // The delivery actions name the principal too.
    const actor = await new pg.Client({ connectionString: dbUrl });
    await actor.connect();
    expect((await actor.query('SELECT DISTINCT actor FROM delivery_actions')).rows.map((r) => r.actor)).toEqual(['bootstrap:ADMIN_TOKEN']);
    await actor.end();

    const env = { DATABASE_URL: dbUrl, ENCRYPTION_KEYS: ring };
    const fhirOut = cliIo(env);
    expect(await runCli(['audit', 'export', '--format', 'fhir', '--since', '2000-01-01'], fhirOut)).toBe(0);
    const events = fhirOut.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.length).toBe(entries.length);
    for (const ev of events) {
      const v = validateFhirResource(ev, 'AuditEvent');
      expect(v, JSON.stringify(ev)).toEqual({ ok: true });
    }
    // The validator does refuse a broken AuditEvent (no type, a recorded time without a zone).
    expect(validateFhirResource({ ...events[0], type: undefined, recorded: '2025-01-01T10:00:00' }, 'AuditEvent').ok).toBe(false);
    expect(events.find((e) => (e['subtype'] as { code: string }[])[0]!.code === 'delivery.replayed')).toMatchObject({
      type: { code: '110110' },
      action: 'U',
      outcome: '0',
      agent: [{ who: { identifier: { value: 'bootstrap:ADMIN_TOKEN' } }, requestor: true, network: { type: '2' } }],
      entity: expect.arrayContaining([expect.objectContaining({ what: { identifier: { system: 'urn:switchboard:delivery', value: ids[0] } } })]),
    });

    const nd = cliIo(env);
    expect(await runCli(['audit', 'export', '--until', '2100-01-01T00:00:00Z'], nd)).toBe(0);
    const lines = nd.out.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; action: string; prev_hash: string; hash: string });
    expect(lines.at(-1)?.action).toBe('audit.exported'); // the FHIR export above was recorded
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.prev_hash).toBe(lines[i - 1]!.hash);
    const empty = cliIo(env);
    expect(await runCli(['audit', 'export', '--since', '2001-01-01', '--until', '2002-01-01'], empty)).toBe(0);
    expect(empty.out).toBe('');
    expect(await runCli(['audit', 'export', '--format', 'csv'], cliIo(env))).toBe(2);
    expect((await verify(dbUrl, ring)).code).toBe(0);
  });
});
