/**
 * Console sign-in at a real OpenID provider (oidc-provider) in Debian's chromium: authorization
 * code with PKCE as a public client, the person signs in on the provider's own pages, the console
 * calls the admin API with the provider's JWT access token, and the role comes from its claim.
 * Loud skip without chromium (failure with CI=true, see global-setup).
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { chromiumAvailable, launchChromium } from '../support/browser.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { API_AUDIENCE, startOpenIdProvider, type TestOpenIdProvider } from '../support/openid-provider.js';
import { createTestDatabase, redisUrl } from '../support/services.js';

const redis = redisUrl();

describe.skipIf(redis === null || !chromiumAvailable())('console sign-in at the OpenID provider in chromium', () => {
  let fhir: FhirSandbox;
  let idp: TestOpenIdProvider;
  let gw: TestGateway;
  let browser: Browser;

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    idp = await startOpenIdProvider([], { 'front-desk': ['viewer'], 'dr-lee': ['analyst'] });
    gw = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redis,
      fhirBaseUrl: fhir.baseUrl,
      oidc: { issuer: idp.issuer, audience: API_AUDIENCE, roleClaim: 'roles' },
      consoleSignIn: { clientId: 'switchboard-console', scope: 'openid' },
    });
    idp.registerBrowserClient('switchboard-console', `${gw.url}/console/`);
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.stop();
    await idp?.close();
    await fhir?.close();
  });

  const signInAtProvider = async (login: string, at: TestGateway = gw, onPage?: (page: import('playwright-core').Page) => void) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    onPage?.(page);
    await page.goto(`${at.url}/console/`);
    await page.getByRole('button', { name: 'Sign in with the provider' }).click();
    // The provider's own pages: login, then consent.
    await page.waitForURL((u) => u.origin === new URL(idp.issuer).origin);
    await page.locator('input[name=login]').fill(login);
    await page.locator('input[name=password]').fill('any password');
    await page.locator('button[type=submit]').click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    return { context, page };
  };

  /** The console's session in the tab (its bearer is the provider's JWT access token) and that token's claims. */
  const sessionOf = async (page: import('playwright-core').Page) => {
    const s = (await page.evaluate(`JSON.parse(sessionStorage.getItem('switchboard.console.session'))`)) as { token: string; expiresAt: number; notAfter?: number };
    const claims = JSON.parse(Buffer.from(s.token.split('.')[1]!, 'base64url').toString()) as { iss: string; aud: string; sub: string; roles: string[]; exp: number };
    return { ...s, claims };
  };

  it('signs in by authorization code with PKCE, and the role comes from the provider', async () => {
    const { context, page } = await signInAtProvider('front-desk');
    try {
      // Back on the console with the code and state gone from the address.
      expect(new URL(page.url()).search).toBe('');
      await page.getByText('front-desk (viewer)').waitFor();
      await page.getByRole('row').filter({ hasText: 'whatsapp-to-ehr' }).first().waitFor();
      expect(await page.getByRole('button', { name: 'Reload channels' }).count()).toBe(0);
      // The session's bearer is the provider's JWT access token for the API's audience.
      const { token, claims } = await sessionOf(page);
      expect(claims).toMatchObject({ iss: idp.issuer, aud: API_AUDIENCE, sub: 'front-desk', roles: ['viewer'] });
      const who = await fetch(`${gw.url}/admin/whoami`, { headers: { authorization: `Bearer ${token}` } });
      expect(((await who.json()) as { principal: { kind: string } }).principal.kind).toBe('oidc');
      expect((await fetch(`${gw.url}/admin/channels/reload`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status).toBe(403);

      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByText('You signed out.').waitFor();
      expect(await page.evaluate('sessionStorage.length')).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('gives an analyst of the provider the controls of the role', async () => {
    const { context, page } = await signInAtProvider('dr-lee');
    try {
      await page.getByText('dr-lee (analyst)').waitFor();
      await page.getByRole('button', { name: 'Reload channels' }).waitFor();
    } finally {
      await context.close();
    }
  });

  it('sends no resource indicator with OIDC_CONSOLE_RESOURCE=none (providers that refuse the parameter), and still signs in', async () => {
    const plain = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redis,
      fhirBaseUrl: fhir.baseUrl,
      oidc: { issuer: idp.issuer, audience: API_AUDIENCE, roleClaim: 'roles' },
      consoleSignIn: { clientId: 'switchboard-console-plain', scope: 'openid', resource: null },
    });
    idp.registerBrowserClient('switchboard-console-plain', `${plain.url}/console/`);
    const toProvider: string[] = [];
    try {
      const { context, page } = await signInAtProvider('dr-lee', plain, (p) =>
        p.on('request', (r) => {
          if (new URL(r.url()).origin === new URL(idp.issuer).origin) toProvider.push(`${r.url()} ${r.postData() ?? ''}`);
        }),
      );
      try {
        await page.getByText('dr-lee (analyst)').waitFor();
        expect(toProvider.some((r) => r.includes('code_challenge_method=S256'))).toBe(true);
        expect(toProvider.some((r) => r.includes('grant_type=authorization_code'))).toBe(true);
        expect(toProvider.filter((r) => /[?&\s]resource=/.test(r))).toEqual([]);
      } finally {
        await context.close();
      }
    } finally {
      await plain.stop();
    }
  });

  it("ends the session when the provider's access token expires, however active the person is", async () => {
    const { context, page } = await signInAtProvider('dr-lee');
    try {
      await page.getByText('dr-lee (analyst)').waitFor();
      const session = await sessionOf(page);
      // The session may not outlive the token (300 s here), though the idle limit is 30 minutes.
      expect(Math.abs(session.notAfter! - session.claims.exp * 1000)).toBeLessThan(10_000);
      expect(session.expiresAt).toBeLessThanOrEqual(session.notAfter!);
      // Five minutes pass in the page, with a key pressed every minute: activity does not extend it.
      await page.clock.install();
      for (let i = 0; i < 5; i++) {
        await page.keyboard.press('Shift');
        await page.clock.fastForward('01:00');
      }
      await page.clock.fastForward('00:15');
      await page.getByText("Your session ended when the provider's sign-in expired. Sign in again.").waitFor();
      await page.getByRole('button', { name: 'Sign in with the provider' }).waitFor();
      expect(await page.evaluate('sessionStorage.length')).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('refuses an answer that does not belong to a sign-in started in the tab', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${gw.url}/console/?code=forged&state=forged`);
      await page.getByText('The sign-in answer does not belong to a sign-in started in this tab. Sign in again.').waitFor();
      await page.getByLabel('API token').waitFor();
    } finally {
      await context.close();
    }
  });
});
