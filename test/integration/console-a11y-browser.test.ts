/**
 * The console as a keyboard user and at 1280 px, in Debian's chromium against a real gateway:
 * a whole task by keyboard alone (sign in, search a message, open its trace, replay its dead
 * letter; the focus always visible, no mouse click anywhere), and on every main page each input,
 * select, button and link has an accessible name, nothing scrolls sideways and no table is cut
 * off; the dead letters filtered by channel and error code on the way. Loud skip without chromium (failure with CI=true, see global-setup).
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { chromiumAvailable, launchChromium } from '../support/browser.js';
import { expectEveryControlNamed, expectNoClippedTable, expectNoHorizontalScroll, signInWithToken, tabTo } from '../support/console-page.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();

describe.skipIf(redis === null || !chromiumAvailable())('console by keyboard and at 1280 px in chromium', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let gw: TestGateway;
  let browser: Browser;

  const state = async (wamid: string) => {
    const r = (await (await gw.admin(`/admin/messages/search?q=${encodeURIComponent(wamid)}`)).json()) as { items: { deliveries: { state: string }[] }[] };
    return r.items[0]?.deliveries[0]?.state;
  };
  /** Sends a message and waits until its delivery is `until`. */
  const send = async (until: string) => {
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid, text: 'Is the clinic open on Saturday?' }))).status).toBe(200);
    await waitFor(`${wamid} ${until}`, async () => (await state(wamid)) === until);
    return wamid;
  };
  const refuse = () =>
    proxy.setRule((req) =>
      req.method === 'POST' && req.url.includes('/Communication')
        ? { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","diagnostics":"Patient is inactive"}]}' }
        : { kind: 'pass' },
    );

  let delivered = '';
  let deadLetter = '';

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    gw = await startGateway({ databaseUrl: await createTestDatabase(), redisUrl: redis, fhirBaseUrl: proxy.url });
    delivered = await send('delivered');
    refuse();
    deadLetter = await send('dead_lettered');
    await send('dead_lettered');
    proxy.setRule(() => ({ kind: 'pass' }));
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.stop();
    await proxy?.close();
    await fhir?.close();
  });

  it('signs in, finds a message, opens its trace and replays its dead letter by keyboard alone, the focus always visible', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    // Any mouse press would be counted: only keys move through the task.
    await page.addInitScript('document.addEventListener("mousedown", () => { window.__mouse = (window.__mouse || 0) + 1; }, true)');
    try {
      await page.goto(`${gw.url}/console/`);
      // Sign in: Tab to the token field, type it, Enter.
      await tabTo(page, page.getByLabel('API token'));
      await page.keyboard.type(gw.adminToken);
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Dashboard' }).waitFor();

      // Messages: through the navigation.
      await tabTo(page, page.getByRole('link', { name: 'Messages' }));
      await page.keyboard.press('Enter');
      const search = page.getByLabel('Search messages');
      await tabTo(page, search);
      await page.keyboard.type(deadLetter);
      await page.keyboard.press('Enter');
      const traceLink = page.getByRole('link', { name: `Trace of ${deadLetter}` });
      await tabTo(page, traceLink);
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: `Trace of ${deadLetter}` }).waitFor();
      await page.getByRole('heading', { name: 'ehr: dead letter' }).waitFor();

      // Replay with a reason, from the keyboard.
      await tabTo(page, page.getByLabel('Reason'));
      await page.keyboard.type('EHR reactivated the Patient');
      await tabTo(page, page.getByRole('button', { name: 'Replay ehr delivery' }));
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'ehr: delivered' }).waitFor({ timeout: 20_000 });
      expect(await state(deadLetter)).toBe('delivered');

      // Back to the dashboard through the navigation, Shift+Tab this time.
      await tabTo(page, page.getByRole('link', { name: 'Dashboard' }), { back: true });
      await page.keyboard.press('Space'); // a link is not pressed with Space: nothing happens
      expect(page.url()).toContain('#/messages/');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
      expect(await page.evaluate('window.__mouse || 0')).toBe(0);
    } finally {
      await context.close();
    }
  });

  /** What each main page must be at 1280 px: every control named, no sideways scrolling, no table cut off. */
  const fits = async (page: Page, what: string) => {
    const names = await expectEveryControlNamed(page);
    await expectNoHorizontalScroll(page);
    await expectNoClippedTable(page);
    return { what, names };
  };

  it('names every control and fits 1280 px on each main page', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    try {
      await page.goto(`${gw.url}/console/`);
      await page.getByLabel('API token').waitFor();
      expect((await fits(page, 'sign-in')).names).toEqual(expect.arrayContaining(['textbox "API token"', 'button "Sign in"']));

      await signInWithToken(page, gw.url, gw.adminToken);
      await page.getByRole('row').filter({ hasText: 'whatsapp-to-ehr' }).first().waitFor();
      await page.getByRole('button', { name: /^Pause/ }).first().waitFor();
      const dashboard = await fits(page, 'dashboard');
      expect(dashboard.names).toEqual(expect.arrayContaining(['button "Reload channels"', 'link "Messages"', 'button "Sign out"']));

      await page.getByRole('link', { name: 'Messages' }).click();
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.getByRole('link', { name: `Trace of ${delivered}` }).waitFor();
      const messages = await fits(page, 'messages');
      expect(messages.names).toEqual(expect.arrayContaining(['searchbox "Search messages"', 'combobox "Channel"', 'textbox "Patient phone"']));

      await page.getByRole('link', { name: `Trace of ${delivered}` }).click();
      await page.getByRole('heading', { name: 'ehr: delivered' }).waitFor();
      await page.getByRole('button', { name: 'Show message content' }).click();
      await page.getByRole('button', { name: 'Hide message content' }).waitFor();
      await fits(page, 'trace');

      await page.getByRole('link', { name: 'Conversation with this patient' }).click();
      await page.getByRole('heading', { name: 'Conversation' }).waitFor();
      await fits(page, 'conversation');

      await page.getByRole('link', { name: 'Dead letters' }).click();
      await page.getByRole('heading', { name: /^\d+ dead letters?$/ }).waitFor();
      // Filtered by channel and error code, as the page offers.
      await page.getByLabel('Error code').fill('SMART_TOKEN_REFUSED');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.getByRole('heading', { name: '0 dead letters' }).waitFor();
      await page.getByLabel('Channel').selectOption('whatsapp-care-routing');
      await page.getByLabel('Error code').fill('FHIR_HTTP_PERMANENT');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.getByRole('heading', { name: '0 dead letters' }).waitFor();
      expect(page.url()).toContain('channel=whatsapp-care-routing');
      await page.getByLabel('Channel').selectOption('whatsapp-to-ehr');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.getByRole('heading', { name: /^[1-9]\d* dead letters?$/ }).waitFor();
      for (const row of await page.locator('table.grid tbody tr').allInnerTexts()) expect(row).toContain('FHIR_HTTP_PERMANENT');
      await page.getByRole('button', { name: 'Inspect' }).first().click();
      await page.locator('.inspect').getByText('attempt 1: dead-lettered').waitFor();
      const deadLetters = await fits(page, 'dead letters');
      expect(deadLetters.names).toEqual(expect.arrayContaining(['checkbox "Select all shown"']));
      // The one inspected is discarded on its own: a reason first, then it is gone from the list.
      const inspect = page.locator('tr.expanded');
      await inspect.getByRole('button', { name: /^Discard / }).click();
      await inspect.getByRole('alert').filter({ hasText: 'Give a reason to discard.' }).waitFor();
      await inspect.getByLabel('Reason', { exact: true }).fill('Sent twice by the patient');
      await inspect.getByRole('button', { name: /^Discard / }).click();
      await page.getByRole('heading', { name: '0 dead letters' }).waitFor();
      const discarded = await gw.app.internals.audit!.search({ actions: ['delivery.discarded'] });
      expect(discarded.map((e) => e.detail?.['reason'])).toContain('Sent twice by the patient');

      await page.getByRole('link', { name: 'Audit log' }).click();
      await page.getByRole('heading', { name: /entries, newest first/ }).waitFor();
      await page.getByRole('button', { name: 'Verify the audit trail' }).click();
      await page.getByRole('status').filter({ hasText: /audit trail intact/ }).waitFor();
      const audit = await fits(page, 'audit log');
      expect(audit.names).toEqual(expect.arrayContaining(['combobox "Action"', 'button "Export"']));
    } finally {
      await context.close();
    }
  });

  it('offers an operator pause, replay and discard, and not reload, the audit log or message content', async () => {
    const created = await gw.admin('/admin/tokens', { method: 'POST', body: JSON.stringify({ name: 'night-operator', role: 'operator' }) });
    expect(created.status).toBe(201);
    const { token } = (await created.json()) as { token: string };
    refuse();
    const wamid = await send('dead_lettered');
    proxy.setRule(() => ({ kind: 'pass' }));
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    try {
      await signInWithToken(page, gw.url, token);
      await page.getByText('night-operator (operator)').waitFor();
      await page.getByRole('button', { name: /^Pause/ }).first().waitFor();
      expect(await page.getByRole('button', { name: 'Reload channels' }).count()).toBe(0);
      expect(await page.getByRole('link', { name: 'Audit log' }).count()).toBe(0);

      await page.getByRole('link', { name: 'Messages' }).click();
      await page.getByLabel('Search messages').fill(wamid);
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.getByRole('link', { name: `Trace of ${wamid}` }).click();
      await page.getByRole('heading', { name: 'ehr: dead letter' }).waitFor();
      await page.getByRole('button', { name: 'Replay ehr delivery' }).waitFor();
      await page.getByRole('button', { name: 'Discard ehr delivery' }).waitFor();
      expect(await page.getByRole('button', { name: 'Show message content' }).count()).toBe(0);
      expect(await page.getByText("Server's answer").count()).toBe(0);
      await fits(page, 'trace as an operator');

      await page.getByLabel('Reason').fill('EHR back');
      await page.getByRole('button', { name: 'Replay ehr delivery' }).click();
      await page.getByRole('heading', { name: 'ehr: delivered' }).waitFor({ timeout: 20_000 });
      const replays = await gw.app.internals.audit!.search({ actions: ['delivery.replayed'] });
      expect(replays.some((e) => e.principal?.kind === 'token' && e.principal.display === 'night-operator')).toBe(true);
    } finally {
      await context.close();
    }
  });

  it('the checks themselves catch an unnamed control, a sideways scroll, a clipped table and an invisible focus', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const fails = async (check: () => Promise<unknown>) => {
      let failed = false;
      await check().catch(() => (failed = true));
      return failed;
    };
    try {
      await page.setContent('<main><label for="a">Named</label><input id="a"><input id="b" placeholder=""><button></button></main>');
      expect(await fails(() => expectEveryControlNamed(page))).toBe(true);
      await page.setContent('<main><div style="width:1600px">wide</div></main>');
      expect(await fails(() => expectNoHorizontalScroll(page))).toBe(true);
      await page.setContent('<main><div style="overflow:auto;width:600px"><table style="width:900px"><tr><td>a</td></tr></table></div></main>');
      expect(await fails(() => expectNoHorizontalScroll(page))).toBe(false);
      expect(await fails(() => expectNoClippedTable(page))).toBe(true);
      await page.setContent('<style>button:focus{outline:none}</style><button>Go</button><a href="#x">Next</a>');
      expect(await fails(() => tabTo(page, page.getByRole('button', { name: 'Go' }), { max: 5 }))).toBe(true);
      expect(await fails(() => tabTo(page, page.getByRole('link', { name: 'Next' }), { max: 5 }))).toBe(false);
    } finally {
      await context.close();
    }
  });
});
