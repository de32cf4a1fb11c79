/**
 * Message search in the console, in Debian's chromium: by wamid and by Twilio SID, narrowed by
 * channel, destination, delivery state, error code and time range, a patient's messages across
 * channels by their phone (through the blind index) with the phone in no address and no request
 * but the search's own POST body, her conversation across both channels, and paging through more
 * messages than one page holds.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { twilioSignature } from '../../src/connectors/sources/twilio-whatsapp-signature.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { chromiumAvailable, launchChromium } from '../support/browser.js';
import { screenshot, signInWithToken } from '../support/console-page.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();
const TWILIO_TOKEN = 'twilio-console-search-token';
const TWILIO_PUBLIC = 'https://hooks.clinic.example';
// Two patients: Ana writes on WhatsApp and through Twilio, Bob fills more than a page.
const ANA = '15550001111';
const BOB = '15550002222';
const TWILIO_SID = `SM${'c0ffee'.repeat(5)}01`;

/** A local time as a datetime-local field takes it (the browser and this process share the zone). */
function localInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

describe.skipIf(redis === null || !chromiumAvailable())('console message search in chromium', () => {
  let dir: string;
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let browser: Browser;
  let page: Page;
  const requests: { method: string; url: string; headers: string; body: string }[] = [];
  const early = newWamid();
  const refused = newWamid();
  const ana = [newWamid(), newWamid()];
  let boundary = 0;

  const total = 27;
  const results = () => page.getByRole('region', { name: /message/ }).locator('tbody tr');
  const shownIds = async () => (await results().locator('td:nth-child(2)').allInnerTexts()).map((t) => t.trim());
  /** Does `act`, waits for the search it sends and for the results it brings to be shown. */
  const answered = async (act: () => Promise<void>) => {
    await Promise.all([page.waitForResponse((r) => new URL(r.url()).pathname === '/admin/messages/search' && r.request().method() === 'POST'), act()]);
    await page.locator('section[aria-busy="false"]').waitFor();
  };
  const texts = ['Search messages', 'Patient phone', 'Error code', 'Received from', 'Received before'];
  const selects = ['Channel', 'Destination', 'Delivery state'];
  /** Fills the search form as given (every other field empty) and searches. */
  const search = async (f: Record<string, string>) => {
    for (const l of texts) await page.getByLabel(l, { exact: true }).fill(f[l] ?? '');
    for (const l of selects) await page.getByLabel(l, { exact: true }).selectOption(f[l] ?? '');
    await answered(() => page.getByRole('button', { name: 'Search', exact: true }).click());
  };
  const heading = (text: string) => page.getByRole('heading', { name: text, exact: true }).waitFor();

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-search-'));
    await mkdir(path.join(dir, 'channels'));
    await cp(path.join(repoRoot, 'mappings'), path.join(dir, 'mappings'), { recursive: true });
    await cp(path.join(repoRoot, 'channels', 'whatsapp-to-ehr.yaml'), path.join(dir, 'channels', 'whatsapp-to-ehr.yaml'));
    // The shipped Twilio example, its destination named "chart" so the destination filter tells them apart.
    const twilio = (await readFile(path.join(repoRoot, 'channels', 'examples', 'twilio-to-ehr.yaml'), 'utf8'))
      .replace('../../mappings/', '../mappings/')
      .replace('  # public_base_url: https://hooks.clinic.example', `  public_base_url: ${TWILIO_PUBLIC}`)
      .replace('  - name: ehr', '  - name: chart');
    await writeFile(path.join(dir, 'channels', 'twilio-to-ehr.yaml'), twilio);
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.includes('/Communication') && req.body.includes(refused)
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","diagnostics":"Patient is inactive"}]}' }
        : { kind: 'pass' },
    );
    gw = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: proxy.url, channelsDir: path.join(dir, 'channels'), env: { TWILIO_AUTH_TOKEN: TWILIO_TOKEN } });

    const whatsapp = async (wamid: string, from: string) => expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid, from }))).status).toBe(200);
    // One message, then a time boundary on a whole second, then the rest.
    await whatsapp(early, ANA);
    await waitFor('the first message stored', async () => ((await (await gw.admin(`/admin/messages/search?q=${early}`)).json()) as { items: unknown[] }).items.length === 1 || undefined);
    boundary = Math.ceil((Date.now() + 1) / 1000) * 1000;
    await new Promise((r) => setTimeout(r, boundary - Date.now() + 20));
    for (const w of ana) await whatsapp(w, ANA);
    const form = new URLSearchParams({ MessageSid: TWILIO_SID, SmsMessageSid: TWILIO_SID, AccountSid: 'AC8f3c2e1d0b9a8f7e6d5c4b3a2f1e0d9c', From: `whatsapp:+${ANA}`, To: 'whatsapp:+14155238886', WaId: ANA, ProfileName: 'Ana Demo', Body: 'Is my prescription ready?', NumMedia: '0', MessageType: 'text', ApiVersion: '2010-04-01' });
    const twilioRes = await fetch(`${gw.url}/webhooks/twilio-to-ehr`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(TWILIO_TOKEN, `${TWILIO_PUBLIC}/webhooks/twilio-to-ehr`, Object.fromEntries(form)) },
      body: form.toString(),
    });
    expect(twilioRes.status, await twilioRes.clone().text()).toBe(200);
    await whatsapp(refused, BOB);
    await Promise.all(Array.from({ length: total - 5 }, () => whatsapp(newWamid(), BOB)));
    await waitFor('every delivery settled', async () => {
      const r = (await (await gw.admin('/admin/messages/search?limit=200')).json()) as { items: { deliveries: { state: string }[] }[] };
      return (r.items.length === total && r.items.every((m) => m.deliveries.length === 1 && m.deliveries[0]!.state !== 'pending')) || undefined;
    }, 40_000);

    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('request', (r) => requests.push({ method: r.method(), url: r.url(), headers: JSON.stringify(r.headers()), body: r.postData() ?? '' }));
    await signInWithToken(page, gw.url, gw.adminToken);
    await page.getByRole('link', { name: 'Messages' }).click();
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finds a message by its wamid and by its Twilio SID', async () => {
    await search({ 'Search messages': ana[0]! });
    await heading('1 message');
    expect(await shownIds()).toEqual([ana[0]]);
    expect(await results().first().innerText()).toContain('ehr: delivered');

    await search({ 'Search messages': TWILIO_SID });
    await heading('1 message');
    expect(await shownIds()).toEqual([TWILIO_SID]);
    expect(await results().first().innerText()).toContain('twilio-to-ehr');
    expect(await results().first().innerText()).toContain('chart: delivered');
  });

  it('narrows by channel, destination, state, error code and time range', async () => {
    await search({ Channel: 'twilio-to-ehr' });
    await heading('1 message');
    expect(await shownIds()).toEqual([TWILIO_SID]);

    await search({ Destination: 'chart' });
    await heading('1 message');
    expect(await shownIds()).toEqual([TWILIO_SID]);

    await search({ 'Delivery state': 'dead_lettered' });
    await heading('1 message');
    expect(await shownIds()).toEqual([refused]);
    expect(await results().first().innerText()).toContain('ehr: dead letter (FHIR_HTTP_PERMANENT)');

    await search({ 'Error code': 'FHIR_HTTP_PERMANENT' });
    await heading('1 message');
    expect(await shownIds()).toEqual([refused]);
    await search({ 'Error code': 'MLLP_NAK' });
    await heading('No message matches');

    await search({ 'Received before': localInput(boundary) });
    await heading('1 message');
    expect(await shownIds()).toEqual([early]);
    await search({ 'Received from': localInput(boundary), 'Delivery state': 'delivered', Channel: 'whatsapp-to-ehr', 'Search messages': early });
    await heading('No message matches');
    await search({ 'Received from': localInput(boundary), 'Delivery state': 'delivered', Channel: 'whatsapp-to-ehr', 'Search messages': ana[1]! });
    await heading('1 message');
  });

  it("finds a patient's messages across channels by phone, the phone only in the search's POST body", async () => {
    requests.length = 0;
    await search({ 'Patient phone': '+1 555 000 1111' });
    await heading('4 messages');
    // Newest first: the Twilio message, Ana's two later WhatsApp messages, then the early one.
    expect(await shownIds()).toEqual([TWILIO_SID, ana[1], ana[0], early]);
    await screenshot(page, 'messages');

    // A number typed into the id field is taken as a phone, and kept out of the address too.
    await search({ 'Search messages': `+${ANA}` });
    await heading('4 messages');
    expect(await page.getByLabel('Patient phone').inputValue()).toBe(`+${ANA}`);

    const digits = [ANA, '555 000 1111', '555%20000%201111', '000-1111', '0001111'];
    const leaks = (s: string) => digits.some((d) => s.includes(d));
    expect(leaks(page.url())).toBe(false);
    expect(leaks(String(await page.evaluate('location.href + JSON.stringify(history.state)')))).toBe(false);
    const carrying = requests.filter((r) => leaks(r.body));
    expect(carrying.length).toBeGreaterThanOrEqual(2);
    for (const r of carrying) expect(`${r.method} ${new URL(r.url).pathname}`).toBe('POST /admin/messages/search');
    for (const r of requests) {
      expect(leaks(r.url), r.url).toBe(false);
      expect(leaks(r.headers), r.url).toBe(false);
    }
    // The audit trail says a phone search happened, not the number.
    const audit = await (await gw.admin('/admin/audit?action=message.searched&limit=5')).text();
    expect(audit).toContain('"by_phone":true');
    expect(leaks(audit)).toBe(false);
  });

  it("shows one patient's conversation across WhatsApp and Twilio, oldest first, from a trace", async () => {
    await search({ 'Search messages': TWILIO_SID });
    await page.getByRole('link', { name: `Trace of ${TWILIO_SID}` }).click();
    await page.getByRole('link', { name: 'Conversation with this patient' }).click();
    await page.getByRole('heading', { name: 'Conversation' }).waitFor();
    const items = page.locator('ol.timeline > li');
    await expect.poll(() => items.count()).toBe(4);
    const texts = await items.allInnerTexts();
    expect(texts.map((t) => [early, ana[0]!, ana[1]!, TWILIO_SID].find((id) => t.includes(id)))).toEqual([early, ana[0], ana[1], TWILIO_SID]);
    expect(texts[0]).toContain('whatsapp-to-ehr');
    expect(texts[3]).toContain('twilio-to-ehr');
    expect(texts[3]).toContain('chart: delivered');
    expect(await page.getByRole('link', { name: TWILIO_SID }).getAttribute('aria-current')).toBe('true');
    // Bob's messages are another thread.
    expect(texts.join('\n')).not.toContain(BOB);
    // Back on the search page, Search with the filters as they are asks the gateway again.
    await page.getByRole('link', { name: 'Messages' }).click();
    await search({});
    await heading('25 messages');
  });

  it('pages through more messages than a page holds', async () => {
    await search({});
    await heading('25 messages');
    const first = await shownIds();
    expect(new Set(first).size).toBe(25);
    await answered(() => page.getByRole('button', { name: 'Older' }).click());
    await heading(`${total - 25} messages (page 2)`);
    const second = await shownIds();
    expect(second.at(-1)).toBe(early);
    expect(second.filter((id) => first.includes(id))).toEqual([]);
    expect(await page.getByRole('button', { name: 'Older' }).isDisabled()).toBe(true);
    await answered(() => page.getByRole('button', { name: 'Newer' }).click());
    await heading('25 messages');
    expect(await shownIds()).toEqual(first);
  });
});
