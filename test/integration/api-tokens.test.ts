/**
 * Named API tokens end to end: `switchboard tokens` against a running gateway and offline against
 * its database; each token authenticates as its own principal with its role, only a hash is
 * stored, revocation and expiry take effect at once, creation and revocation are audited.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import type { RecordedAuditEntry } from '../../src/core/audit.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { capturedIo } from '../support/cli-io.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';

const redis = redisUrl();

describe.skipIf(redis === null)('switchboard tokens', () => {
  let fhir: FhirSandbox;
  let gw: TestGateway;
  let dbUrl: string;
  let db: pg.Client;
  const ring = `tokens-test:${randomBytes(32).toString('base64')}`;
  const online = () => capturedIo({ SWITCHBOARD_URL: gw.url, ADMIN_TOKEN: gw.adminToken });
  const offline = () => capturedIo({ DATABASE_URL: dbUrl, ENCRYPTION_KEYS: ring });
  const as = (token: string, p: string, init: RequestInit = {}) =>
    fetch(`${gw.url}${p}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    dbUrl = await createTestDatabase();
    gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redis, fhirBaseUrl: fhir.baseUrl, encryptionKeys: ring });
    db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
  });
  afterAll(async () => {
    await db?.end();
    await gw?.stop();
    await fhir?.close();
  });

  it('creates a token through the gateway, prints it once, and it acts as its own principal with its role', async () => {
    const io = online();
    expect(await runCli(['tokens', 'create', '--name', 'night-operator', '--role', 'operator', '--expires', '90d'], io), io.err).toBe(0);
    const token = io.out.trim();
    expect(token).toMatch(/^sbt_[A-Za-z0-9_-]{43}$/);
    expect(io.err).toContain('shown this once');

    const who = (await (await as(token, '/admin/whoami')).json()) as { principal: unknown; permissions: string[] };
    expect(who.principal).toEqual({ kind: 'token', display: 'night-operator', role: 'operator' });
    expect(who.permissions).toContain('deliveries.replay');
    expect((await as(token, '/admin/stats')).status).toBe(200);
    // An operator sees no content and manages no tokens.
    expect((await as(token, '/admin/messages?channel=x&source_id=y')).status).toBe(403);
    expect((await as(token, '/admin/tokens')).status).toBe(403);

    // Stored only as a hash: the secret is nowhere in the table.
    const rows = await db.query<{ row: string; hash: Buffer }>("SELECT api_tokens::text AS row, token_hash AS hash FROM api_tokens WHERE name = 'night-operator'");
    expect(rows.rows).toHaveLength(1);
    expect(rows.rows[0]!.row).not.toContain(token.slice(4));
    expect(rows.rows[0]!.hash.length).toBe(32);

    const list = online();
    expect(await runCli(['tokens', 'list'], list)).toBe(0);
    expect(list.out).toMatch(/night-operator\s+operator\s+active .*by bootstrap:ADMIN_TOKEN; expires 20\d\d-.*last used 20\d\d-/);
    expect(list.out).not.toContain(token);
  });

  it('refuses a second token of the same name, and a token lacking tokens.manage', async () => {
    const again = online();
    expect(await runCli(['tokens', 'create', '--name', 'night-operator', '--role', 'viewer'], again)).toBe(1);
    expect(again.err).toContain('a token named "night-operator" exists (active)');
    const viewer = online();
    expect(await runCli(['tokens', 'create', '--name', 'dash', '--role', 'viewer'], viewer)).toBe(0);
    const denied = capturedIo({ SWITCHBOARD_URL: gw.url, ADMIN_TOKEN: viewer.out.trim() });
    expect(await runCli(['tokens', 'list'], denied)).toBe(1);
    expect(denied.err).toContain('HTTP 403');
    expect(denied.err).toContain('tokens.manage');
    const usage = online();
    expect(await runCli(['tokens', 'create', '--name', 'x', '--role', 'root'], usage)).toBe(2);
    expect(await runCli(['tokens', 'create', '--name', 'x', '--role', 'viewer', '--expires', 'soon'], usage)).toBe(2);
    expect(await runCli(['tokens', 'create', '--name', 'ADMIN_TOKEN', '--role', 'viewer'], usage)).toBe(2);
  });

  it('works offline against the database; a token created there authenticates at the running gateway; revoking ends it at once', async () => {
    const io = offline();
    expect(await runCli(['tokens', 'create', '--offline', '--name', 'ehr-analyst', '--role', 'analyst'], io), io.err).toBe(0);
    const token = io.out.trim();
    expect((await as(token, '/admin/whoami')).status).toBe(200);
    expect((await as(token, '/admin/channels/reload', { method: 'POST', body: '{}' })).status).toBe(200);

    const list = offline();
    expect(await runCli(['tokens', 'list', '--offline', '--format', 'json'], list)).toBe(0);
    const items = JSON.parse(list.out) as { name: string; createdBy: string; state: string }[];
    expect(items.find((t) => t.name === 'ehr-analyst')).toMatchObject({ createdBy: 'system:cli', state: 'active' });

    const revoke = offline();
    expect(await runCli(['tokens', 'revoke', '--offline', 'ehr-analyst'], revoke)).toBe(0);
    const refused = await as(token, '/admin/whoami');
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string; message: string } }).error).toEqual({ code: 'UNAUTHENTICATED', message: 'the API token "ehr-analyst" was revoked' });
    const twice = offline();
    expect(await runCli(['tokens', 'revoke', '--offline', 'ehr-analyst'], twice)).toBe(1);
    expect(twice.err).toContain('no token named "ehr-analyst"');
    // The name is free again; the revoked one stays listed.
    const reuse = online();
    expect(await runCli(['tokens', 'create', '--name', 'ehr-analyst', '--role', 'viewer'], reuse)).toBe(0);
    const both = offline();
    expect(await runCli(['tokens', 'list', '--offline'], both)).toBe(0);
    expect(both.out.match(/ehr-analyst/g)).toHaveLength(2);
    expect(both.out).toContain('revoked');
  });

  it('revokes through the gateway; an expired token is refused', async () => {
    const io = online();
    expect(await runCli(['tokens', 'create', '--name', 'short-lived', '--role', 'viewer', '--expires', '30m'], io)).toBe(0);
    const token = io.out.trim();
    expect((await as(token, '/admin/stats')).status).toBe(200);
    await db.query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short-lived'");
    const expired = await as(token, '/admin/stats');
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as { error: { message: string } }).error.message).toBe('the API token "short-lived" has expired');
    const list = online();
    expect(await runCli(['tokens', 'list'], list)).toBe(0);
    expect(list.out).toMatch(/short-lived\s+viewer\s+expired/);
    const revoke = online();
    expect(await runCli(['tokens', 'revoke', 'short-lived'], revoke)).toBe(0);
    expect(revoke.out).toContain('revoked');
  });

  it('audits every creation and revocation with who did it, never the secret', async () => {
    const entries: RecordedAuditEntry[] = [];
    for await (const e of gw.app.internals.audit!.entries()) entries.push(e);
    const created = entries.filter((e) => e.action === 'token.created');
    expect(created.find((e) => e.resources?.[0]?.id === 'night-operator' && e.outcome === 'success')).toMatchObject({
      principal: { kind: 'bootstrap', id: 'ADMIN_TOKEN' },
      sourceAddress: expect.stringMatching(/127\.0\.0\.1/),
      detail: { role: 'operator', expires_at: expect.stringMatching(/^20\d\d-/) },
    });
    expect(created.find((e) => e.resources?.[0]?.id === 'night-operator' && e.outcome === 'failure')?.detail).toMatchObject({ reason: 'name_taken' });
    expect(created.find((e) => e.resources?.[0]?.id === 'ehr-analyst')).toMatchObject({ principal: { kind: 'system', id: 'cli' }, sourceAddress: 'cli' });
    const revoked = entries.filter((e) => e.action === 'token.revoked');
    expect(revoked.map((e) => [e.resources?.[0]?.id, e.outcome, e.principal?.id])).toEqual([
      ['ehr-analyst', 'success', 'cli'],
      ['ehr-analyst', 'failure', 'cli'],
      ['short-lived', 'success', 'ADMIN_TOKEN'],
    ]);
    expect(entries.filter((e) => e.action === 'auth.failed').map((e) => e.detail?.['reason'])).toEqual(expect.arrayContaining(['token_revoked', 'token_expired']));
    expect(JSON.stringify(entries)).not.toMatch(/sbt_/);
  });
});
