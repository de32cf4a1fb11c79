/**
 * The console's dashboard in Debian's chromium, against a gateway whose channel folder the test
 * owns: one EHR behind a fault proxy (one message refused, the rest delivered), one at a dead
 * port (its circuit opens), a destination paused and resumed from the console, and a channel
 * file with a mistake whose refused reload shows its file:line:column. What the operator reads
 * (states, last hour's deliveries and error rate, queue depths, dead letters) must match what
 * was sent.
 */
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { chromiumAvailable, launchChromium } from '../support/browser.js';
import { cell, screenshot, signInWithToken } from '../support/console-page.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { freePort } from '../support/free-port.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();

const channel = (deadUrl: string) => `id: clinic
description: Patient messages to the EHR, and a copy to an archive EHR that is down.
source:
  kind: whatsapp_cloud
  path: /webhooks/clinic
  app_secret: \${WHATSAPP_APP_SECRET}
  verify_token: \${WHATSAPP_VERIFY_TOKEN}
destinations:
  - name: ehr
    kind: fhir_r4
    base_url: \${FHIR_BASE_URL}
    mapping: ../mappings/whatsapp-to-communication.jsonata
  - name: archive
    kind: fhir_r4
    base_url: ${deadUrl}
    mapping: ../mappings/whatsapp-to-communication.jsonata
    timeout_ms: 2000
    retry: { attempts: 20, initial_delay_ms: 50, max_delay_ms: 100 }
    circuit_breaker: { failure_threshold: 2, open_ms: 600000 }
`;

// A channel file with one mistake: an unknown destination kind on line 9, column 11.
const broken = `id: broken
source:
  kind: whatsapp_cloud
  path: /webhooks/broken
  app_secret: \${WHATSAPP_APP_SECRET}
  verify_token: \${WHATSAPP_VERIFY_TOKEN}
destinations:
  - name: ehr
    kind: fhir_r5
    base_url: \${FHIR_BASE_URL}
    mapping: ../mappings/whatsapp-to-communication.jsonata
`;

describe.skipIf(redis === null || !chromiumAvailable())('console dashboard in chromium', () => {
  let dir: string;
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let browser: Browser;
  let page: Page;
  const refused = newWamid();

  const table = () => page.getByRole('table');
  const row = (destination: string): Locator => table().getByRole('row').filter({ has: page.getByRole('cell', { name: destination, exact: true }) });
  const read = (destination: string, column: string) => cell(table(), row(destination), column);
  const queued = async (destination: string) => (await Promise.all(['Waiting', 'Active', 'Delayed'].map((c) => read(destination, c)))).reduce((n, v) => n + Number(v), 0);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-dashboard-'));
    await mkdir(path.join(dir, 'channels'));
    await cp(path.join(repoRoot, 'mappings'), path.join(dir, 'mappings'), { recursive: true });
    await writeFile(path.join(dir, 'channels', 'clinic.yaml'), channel(`http://127.0.0.1:${await freePort()}/fhir/R4`));
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    // The EHR refuses one message for its content (permanent): that one becomes a dead letter.
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.includes('/Communication') && req.body.includes(refused)
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","diagnostics":"Patient is inactive"}]}' }
        : { kind: 'pass' },
    );
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

  it("shows each destination's state, last hour's deliveries and error rate, queues and dead letters as sent", async () => {
    for (const wamid of [newWamid(), newWamid(), newWamid(), refused]) {
      expect((await postWebhook(`${gw.url}/webhooks/clinic`, textEvent({ wamid }))).status).toBe(200);
    }
    await waitFor('the EHR settled and the archive circuit open', async () => {
      const stats = (await (await gw.admin('/admin/stats')).json()) as { destinations: { destination: string; delivered: number }[]; dead_letters: { count: number }[] };
      const live = (await (await gw.admin('/admin/destinations')).json()) as { destinations: { destination: string; circuit: { state: string } | null }[] };
      return (
        (stats.destinations.find((d) => d.destination === 'ehr')?.delivered === 3 &&
          stats.dead_letters.reduce((n, d) => n + d.count, 0) === 1 &&
          live.destinations.find((d) => d.destination === 'archive')?.circuit?.state === 'open') ||
        undefined
      );
    });

    await signInWithToken(page, gw.url, gw.adminToken);
    await expect.poll(() => read('ehr', 'State')).toBe('running');
    expect(await read('ehr', 'Delivered (1 h)')).toBe('3');
    // Four attempts, one refused: 25 %.
    expect(await read('ehr', 'Error rate (1 h)')).toBe('25 %');
    expect(await read('ehr', 'Dead letters')).toBe('1');
    expect(await queued('ehr')).toBe(0);
    await row('ehr').getByRole('link', { name: '1' }).waitFor();

    expect(await read('archive', 'State')).toBe('circuit open');
    expect(await read('archive', 'Delivered (1 h)')).toBe('0');
    expect(await read('archive', 'Error rate (1 h)')).toBe('100 %');
    expect(await read('archive', 'Dead letters')).toBe('0');
    // Every message still waits for the archive, none lost while its circuit is open.
    await expect.poll(() => queued('archive'), { timeout: 10_000 }).toBe(4);
    await page.getByRole('region', { name: 'Dead letters' }).getByText('1 waiting for an operator').waitFor();
  });

  it('pauses a destination from the console, shows it paused with its queue, and resumes it', async () => {
    await row('ehr').getByRole('button', { name: 'Pause ehr' }).click();
    await page.getByLabel('Reason to pause').fill('EHR maintenance window');
    await row('ehr').getByRole('button', { name: 'Pause', exact: true }).click();
    await expect.poll(() => read('ehr', 'State')).toBe('paused');
    expect((await (await gw.admin('/admin/destinations')).json()) as unknown).toMatchObject({ destinations: expect.arrayContaining([expect.objectContaining({ destination: 'ehr', paused: true })]) });

    // A message sent meanwhile waits for the EHR; the dashboard shows it queued, not delivered.
    expect((await postWebhook(`${gw.url}/webhooks/clinic`, textEvent({ wamid: newWamid() }))).status).toBe(200);
    await expect.poll(() => queued('ehr'), { timeout: 15_000 }).toBe(1);
    expect(await read('ehr', 'Delivered (1 h)')).toBe('3');

    // A channel file with a mistake: the reload is refused with the place of the mistake.
    await writeFile(path.join(dir, 'channels', 'broken.yaml'), broken);
    await page.getByRole('button', { name: 'Reload channels' }).click();
    const last = page.getByRole('region', { name: 'Last reload' });
    await last.getByText('refused').waitFor();
    await last.getByText(/broken\.yaml:9:11\b/).waitFor();
    await last.getByText(/fhir_r5/).first().waitFor();
    await page.getByRole('status').filter({ hasText: 'Reload refused' }).waitFor();
    // The running channels were kept.
    expect(await read('archive', 'State')).toBe('circuit open');
    await screenshot(page, 'dashboard');

    await row('ehr').getByRole('button', { name: 'Resume ehr' }).click();
    await expect.poll(() => read('ehr', 'State')).toBe('running');
    await expect.poll(() => read('ehr', 'Delivered (1 h)'), { timeout: 15_000 }).toBe('4');
    expect(await queued('ehr')).toBe(0);
    expect(await read('ehr', 'Error rate (1 h)')).toBe('20 %');

    // Fixed file, applied reload.
    await rm(path.join(dir, 'channels', 'broken.yaml'));
    await page.getByRole('button', { name: 'Reload channels' }).click();
    await last.getByText('applied').waitFor();
  });
});
