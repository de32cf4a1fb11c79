/**
 * The operator console in a real browser (Debian's chromium via playwright-core), against a real
 * gateway, FHIR server and fault proxy: sign in with the token, send a sample message, find it by
 * its wamid, open its trace, make a delivery fail, replay it from the console and see it
 * delivered; bulk replay with progress; sign-out and session expiry. Most of the README's
 * screenshots come from here (docs/console/*.png, written only with CONSOLE_SCREENSHOTS=1, so
 * ordinary runs leave the work tree alone).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { runCli } from '../../src/cli/main.js';
import { chromiumAvailable, launchChromium } from '../support/browser.js';
import { capturedIo } from '../support/cli-io.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { screenshot } from '../support/console-page.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, TEST_APP_SECRET, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();
const run = promisify(execFile);

const refuseCommunications = (proxy: FaultProxy) =>
  proxy.setRule((req) =>
    req.method === 'POST' && req.url.includes('/Communication')
      ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","diagnostics":"Patient is inactive"}]}' }
      : { kind: 'pass' },
  );

describe.skipIf(redis === null || !chromiumAvailable())('operator console in chromium', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let browser: Browser;
  let page: Page;
  let dir: string;
  const mappingFile = () => path.join(dir, 'mappings', 'whatsapp-to-communication.jsonata');

  /** `npm run sample` as a person runs it against this gateway: what it printed, the wamid and the console address it gave. */
  const sendSample = async (text: string) => {
    const r = await run(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [path.join(repoRoot, 'scripts', 'sample.ts'), '--url', gw.url, '--token', gw.adminToken, text], {
      cwd: dir,
      env: { ...process.env, WHATSAPP_APP_SECRET: TEST_APP_SECRET },
      timeout: 60_000,
    });
    const wamid = /^wamid: (wamid\.\S+)$/m.exec(r.stdout)?.[1];
    const consoleUrl = /^In the console: (\S+)$/m.exec(r.stdout)?.[1];
    if (!wamid || !consoleUrl) throw new Error(`npm run sample printed no wamid and console address:\n${r.stdout}${r.stderr}`);
    return { out: r.stdout, wamid, consoleUrl };
  };

  const deadLetterCount = async () => ((await (await gw.admin('/admin/dead-letters/count')).json()) as { count: number }).count;

  beforeAll(async () => {
    // The shipped channels and mappings, in a folder of this test's own (a mapping is fixed mid-test).
    dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-console-'));
    await cp(path.join(repoRoot, 'channels'), path.join(dir, 'channels'), { recursive: true });
    await cp(path.join(repoRoot, 'mappings'), path.join(dir, 'mappings'), { recursive: true });
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    gw = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: proxy.url, channelsDir: path.join(dir, 'channels') });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses a wrong token and signs in with the right one, by keyboard alone', async () => {
    await page.goto(`${gw.url}/console/`);
    const token = page.getByLabel('API token');
    await expect.poll(() => token.isVisible()).toBe(true);
    // Where a new user finds the token: the file the banner names (the banner never prints it).
    expect(await page.locator('#sign-in-help').innerText()).toContain('ADMIN_TOKEN is kept in .data/admin-token');
    await token.fill('not-the-token-at-all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'The gateway did not accept this token.' }).waitFor();
    await screenshot(page, 'sign-in');
    await token.fill('');
    await token.focus();
    await page.keyboard.type(gw.adminToken);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.getByText('Signed in as').waitFor();
    expect(await page.getByText('ADMIN_TOKEN (admin)').count()).toBe(1);
  });

  let firstWamid = '';
  let firstMessageId = '';

  it('finds a sample message by its wamid and shows its trace through to the EHR', async () => {
    const sample = await sendSample('Can I move my appointment?');
    expect(sample.out).toContain('delivery to ehr: delivered');
    expect(sample.out).toContain('"resourceType": "Communication"');
    const wamid = sample.wamid;
    firstWamid = wamid;
    await page.getByRole('link', { name: 'Messages' }).click();
    const search = page.getByLabel('Search messages');
    await search.fill(wamid);
    await search.press('Enter');
    const link = page.getByRole('link', { name: `Trace of ${wamid}` });
    await link.waitFor();
    await page.getByText('ehr: delivered').waitFor({ timeout: 20_000 });
    await link.click();
    await page.getByRole('heading', { name: `Trace of ${wamid}` }).waitFor();
    await page.getByRole('heading', { name: 'ehr: delivered' }).waitFor({ timeout: 20_000 });
    const timeline = page.locator('ol.timeline');
    await timeline.getByText('Received on whatsapp-to-ehr').waitFor();
    await timeline.getByText('ehr: attempt 1: delivered').waitFor();
    // Content only when asked for, and each view is audited (see the audit log test below).
    expect(await page.content()).not.toContain('Can I move my appointment?');
    const content = page.getByRole('region', { name: 'Message content' });
    await content.getByRole('button', { name: 'Show message content' }).click();
    await content.getByText('Can I move my appointment?', { exact: true }).waitFor();
    await content.getByText(/^Jane Demo, \+15551234567$/).waitFor();
    firstMessageId = new URL(page.url()).hash.replace('#/messages/', '');
    await content.getByRole('button', { name: 'Hide message content' }).click();
    expect(await page.content()).not.toContain('Can I move my appointment?');
    await page.getByRole('link', { name: 'Conversation with this patient' }).click();
    await page.getByRole('heading', { name: 'Conversation' }).waitFor();
    await page.getByRole('link', { name: wamid }).waitFor();
  });

  it('shows a failed delivery as a dead letter, and replaying it from the console delivers it', async () => {
    refuseCommunications(proxy);
    const sample = await sendSample('Please move my appointment to Monday');
    expect(sample.out).toContain('delivery to ehr: dead_lettered (FHIR_HTTP_PERMANENT)');
    const wamid = sample.wamid;
    expect(await deadLetterCount()).toBe(1);

    await page.getByRole('link', { name: 'Dashboard' }).click();
    const row = page.getByRole('row').filter({ hasText: 'whatsapp-to-ehr' }).filter({ hasText: 'ehr' }).first();
    await row.getByRole('link', { name: '1' }).waitFor({ timeout: 10_000 });

    // The address the sample printed finds it.
    await page.goto(sample.consoleUrl);
    expect(await page.getByLabel('Search messages').inputValue()).toBe(wamid);
    await page.getByRole('link', { name: `Trace of ${wamid}` }).click();
    await page.getByRole('heading', { name: 'ehr: dead letter' }).waitFor();
    await page.locator('ol.timeline').getByText('ehr: attempt 1: dead-lettered').waitFor();
    await page.getByText('FHIR_HTTP_PERMANENT', { exact: false }).first().waitFor();
    await page.getByText("Server's answer").first().click();
    await page.getByText('Patient is inactive').first().waitFor();
    // Each attempt says which mapping version made its output.
    const versionOf = async () => ((await (await gw.admin('/admin/channels')).json()) as { channels: { id: string; destinations: { name: string; mapping_version: string }[] }[] }).channels.find((c) => c.id === 'whatsapp-to-ehr')!.destinations[0]!.mapping_version;
    const before = await versionOf();
    const attempt = (title: string) => page.locator('ol.timeline > li').filter({ hasText: title });
    expect(await attempt('ehr: attempt 1: dead-lettered').innerText()).toContain(`mapping ${before}`);
    await screenshot(page, 'trace');

    // An analyst changes the mapping (hot reload), the EHR is fixed, the operator replays.
    await writeFile(mappingFile(), `/* Reviewed after a refused delivery. */\n${await readFile(mappingFile(), 'utf8')}`);
    const after = await waitFor('the new mapping loaded', async () => {
      const v = await versionOf();
      return v !== before && v;
    });
    proxy.setRule(() => ({ kind: 'pass' }));
    await page.getByLabel('Reason').fill('EHR reactivated the Patient');
    await page.getByRole('button', { name: 'Replay ehr delivery' }).click();
    await page.getByRole('heading', { name: 'ehr: delivered' }).waitFor({ timeout: 20_000 });
    await page.locator('ol.timeline').getByText('ehr: attempt 1 (replay 1): delivered').waitFor();
    expect(await attempt('ehr: attempt 1 (replay 1): delivered').innerText()).toContain(`mapping ${after}`);
    expect(await attempt('ehr: attempt 1: dead-lettered').innerText()).toContain(`mapping ${before}`);
    await page.getByText('Resource: ').waitFor();
    await page.locator('ol.timeline').getByText('EHR reactivated the Patient').waitFor();
    expect(await deadLetterCount()).toBe(0);

    // The same patient's thread: both messages, oldest first, each with its delivery's state.
    await page.getByRole('link', { name: 'Conversation with this patient' }).click();
    await page.getByRole('heading', { name: 'Conversation' }).waitFor();
    const items = page.locator('ol.timeline > li');
    await expect.poll(() => items.count()).toBe(2);
    expect(await items.nth(0).innerText()).toContain(firstWamid);
    expect(await items.nth(1).innerText()).toContain(wamid);
    await items.nth(1).getByText('ehr: delivered').waitFor();
    expect(await page.getByRole('link', { name: wamid }).getAttribute('aria-current')).toBe('true');
    await screenshot(page, 'conversation');
  });

  it('discards several dead letters with a reason and replays many at once, with progress', async () => {
    refuseCommunications(proxy);
    const wamids = Array.from({ length: 5 }, () => newWamid());
    for (const wamid of wamids) expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid }))).status).toBe(200);
    await waitFor('5 dead-lettered', async () => (await deadLetterCount()) === 5 || undefined);
    await page.getByRole('link', { name: 'Dead letters' }).click();
    await page.getByRole('heading', { name: '5 dead letters' }).waitFor();
    await page.getByRole('button', { name: 'Inspect' }).first().click();
    await page.locator('.inspect').getByText('attempt 1: dead-lettered').waitFor();
    await page.getByRole('button', { name: 'Close' }).click();

    // Two are not worth delivering: select them and discard, which needs a reason.
    const [spam, duplicate, ...rest] = wamids;
    const rows = page.locator('table.grid tbody tr');
    for (const w of [spam, duplicate]) await page.getByRole('checkbox', { name: `Select ${w} to ehr` }).check();
    await page.getByRole('button', { name: 'Discard selected (2)' }).click();
    await page.getByRole('status').filter({ hasText: 'Give a reason to discard' }).waitFor();
    expect(await deadLetterCount()).toBe(5);
    await page.getByLabel('Reason for selected').fill('Test messages from the clinic');
    await page.getByRole('button', { name: 'Discard selected (2)' }).click();
    await page.getByText('Discarding 2 of 2: done').waitFor();
    expect(await page.getByRole('progressbar', { name: 'Discarding dead letters' }).getAttribute('value')).toBe('2');
    await page.getByRole('heading', { name: '3 dead letters' }).waitFor();
    const left = (await rows.allInnerTexts()).join('\n');
    for (const w of [spam!, duplicate!]) expect(left).not.toContain(w);
    for (const w of rest) expect(left).toContain(w);
    expect(await deadLetterCount()).toBe(3);

    // The rest, all at once once the EHR is back.
    await page.getByRole('checkbox', { name: 'Select all shown' }).check();
    await page.getByLabel('Reason for selected').fill('EHR back from maintenance');
    await screenshot(page, 'dead-letters');
    proxy.setRule(() => ({ kind: 'pass' }));
    await page.getByRole('button', { name: 'Replay selected (3)' }).click();
    await page.getByText('Replaying 3 of 3: done').waitFor();
    await page.getByRole('heading', { name: '0 dead letters' }).waitFor();
    await waitFor('all delivered', async () => {
      const r = (await (await gw.admin('/admin/messages/search?state=delivered')).json()) as { items: unknown[] };
      return r.items.length === 5 || undefined;
    });
    // A discarded one's trace says who discarded it and why.
    await page.getByRole('link', { name: 'Messages' }).click();
    await page.getByLabel('Search messages').fill(spam!);
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('link', { name: `Trace of ${spam}` }).click();
    await page.getByRole('heading', { name: 'ehr: discarded' }).waitFor();
    await page.locator('ol.timeline').getByText('ehr: discarded by bootstrap:ADMIN_TOKEN').waitFor();
    await page.locator('ol.timeline').getByText('Reason: Test messages from the clinic').waitFor();
  });

  it('browses the audit log by action, shows that the chain holds, and exports it', async () => {
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    await page.getByLabel('Action').selectOption('message.viewed');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByRole('heading', { name: /^\d+ entries, newest first \(numbers \d+ to \d+\)$/ }).waitFor();
    const rows = page.locator('table.grid tbody tr');
    await expect.poll(async () => (await rows.allInnerTexts()).every((t) => t.includes('message.viewed'))).toBe(true);
    expect(await rows.count()).toBeGreaterThanOrEqual(3);
    expect(await rows.first().innerText()).toContain('ADMIN_TOKEN (admin)');

    // The content view of the first message is in the trail, told apart from opening its trace.
    await page.getByLabel('Resource id').fill(firstMessageId);
    await page.getByRole('button', { name: 'Filter' }).click();
    const views = page.locator('table.grid tbody tr').filter({ hasText: 'message.viewed' });
    await expect.poll(async () => (await views.allInnerTexts()).some((t) => /view\s+content/.test(t))).toBe(true);
    expect((await views.allInnerTexts()).some((t) => /view\s+trace/.test(t))).toBe(true);
    await page.getByLabel('Resource id').fill('');
    await page.getByRole('button', { name: 'Filter' }).click();

    await page.getByRole('button', { name: 'Verify the audit trail' }).click();
    await page.getByRole('status').filter({ hasText: /audit trail intact: \d+ entries/ }).waitFor();
    await screenshot(page, 'audit');

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
    expect(download.suggestedFilename()).toMatch(/^switchboard-audit-.+\.ndjson$/);
    const lines = (await readFile(await download.path(), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as { seq: number; action: string; prev_hash: string; hash: string });
    expect(lines[0]!.seq).toBe(1);
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.prev_hash).toBe(lines[i - 1]!.hash);
    expect(lines.some((l) => l.action === 'audit.verified')).toBe(true);
    // The views, the check and the export are themselves in the trail.
    const recorded = (await (await gw.admin('/admin/audit?action=audit.viewed,audit.verified,audit.exported&limit=10')).json()) as { items: { action: string }[] };
    expect(new Set(recorded.items.map((e) => e.action))).toEqual(new Set(['audit.viewed', 'audit.verified', 'audit.exported']));
  });

  it('a viewer sees no replay button and no message content', async () => {
    // A named viewer token, made as an administrator would: switchboard tokens create --role viewer.
    const io = capturedIo({ SWITCHBOARD_URL: gw.url, ADMIN_TOKEN: gw.adminToken });
    expect(await runCli(['tokens', 'create', '--name', 'front-desk', '--role', 'viewer'], io), io.err).toBe(0);
    const viewerToken = io.out.trim();
    refuseCommunications(proxy);
    const wamid = newWamid();
    const text = 'Please cancel my test results appointment';
    expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid, text }))).status).toBe(200);
    await waitFor('dead-lettered', async () => (await deadLetterCount()) === 1 || undefined);
    proxy.setRule(() => ({ kind: 'pass' }));

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const v = await context.newPage();
      await v.goto(`${gw.url}/console/`);
      await v.getByLabel('API token').fill(viewerToken);
      await v.getByRole('button', { name: 'Sign in' }).click();
      await v.getByRole('heading', { name: 'Dashboard' }).waitFor();
      expect(await v.getByText('front-desk (viewer)').count()).toBe(1);
      await v.getByRole('row').filter({ hasText: 'whatsapp-to-ehr' }).first().waitFor();
      expect(await v.getByRole('button', { name: /^(Reload channels|Pause|Resume)/ }).count()).toBe(0);
      expect(await v.getByRole('link', { name: 'Audit log' }).count()).toBe(0);

      await v.getByRole('link', { name: 'Messages' }).click();
      await v.getByLabel('Search messages').fill(wamid);
      await v.getByRole('button', { name: 'Search' }).click();
      await v.getByRole('link', { name: `Trace of ${wamid}` }).click();
      await v.getByRole('heading', { name: 'ehr: dead letter' }).waitFor();
      await v.locator('ol.timeline').getByText('ehr: attempt 1: dead-lettered').waitFor();
      expect(await v.getByRole('button', { name: /Replay|Discard/ }).count()).toBe(0);
      expect(await v.getByText("Server's answer").count()).toBe(0);
      expect(await v.getByRole('button', { name: 'Show message content' }).count()).toBe(0);
      expect(await v.getByRole('region', { name: 'Message content' }).count()).toBe(0);
      await v.getByText("Servers' answers are not shown: your role may not read message content.").waitFor();
      const html = await v.content();
      expect(html).not.toContain(text);
      expect(html).not.toContain('Patient is inactive');
      await screenshot(v, 'viewer-trace');

      await v.getByRole('link', { name: 'Dead letters' }).click();
      await v.getByText('Your role may not read message content').waitFor();
      expect(await v.getByRole('checkbox').count()).toBe(0);
    } finally {
      await context.close();
    }

    // The gateway refuses what the console does not offer, and keeps the server's answer from the trace.
    const as = (p: string, init: RequestInit = {}) => fetch(`${gw.url}/admin${p}`, { ...init, headers: { authorization: `Bearer ${viewerToken}`, 'content-type': 'application/json' } });
    const found = (await (await as(`/messages/search?q=${wamid}`)).json()) as { items: { id: string; deliveries: { id: string }[] }[] };
    const deliveryId = found.items[0]!.deliveries[0]!.id;
    expect((await as(`/dead-letters/${deliveryId}/replay`, { method: 'POST', body: '{}' })).status).toBe(403);
    expect((await as(`/deliveries/${deliveryId}/rejected-output`)).status).toBe(403);
    expect((await as(`/messages/${found.items[0]!.id}/content`)).status).toBe(403);
    expect((await as('/dead-letters')).status).toBe(403);
    const trace = await (await as(`/messages/${found.items[0]!.id}/trace`)).text();
    expect(trace).not.toContain('Patient is inactive');
    expect(trace).not.toContain(text);
    expect(JSON.parse(trace)).toMatchObject({ contentWithheld: true });
    expect(await (await gw.admin(`/admin/messages/${found.items[0]!.id}/trace`)).text()).toContain('Patient is inactive');
    expect((await gw.admin(`/admin/dead-letters/${deliveryId}/replay`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(202);
  });

  it('signs out, and ends a session left idle', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('You signed out.').waitFor();
    await page.getByLabel('API token').waitFor();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    await page.goto(`${gw.url}/console/#/`);
    await page.getByLabel('API token').waitFor();

    await page.getByLabel('API token').fill(gw.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    // The idle deadline passes (as after CONSOLE_SESSION_MINUTES without a key, click or call).
    // (A string, evaluated in the page: the test's own TypeScript has no DOM.)
    await page.evaluate(`(() => {
      const key = 'switchboard.console.session';
      const s = JSON.parse(sessionStorage.getItem(key));
      sessionStorage.setItem(key, JSON.stringify({ token: s.token, expiresAt: Date.now() - 1 }));
    })()`);
    await page.getByText(/Your session ended after 30 minutes without activity/).waitFor({ timeout: 10_000 });
    await page.getByLabel('API token').waitFor();
  });
});
