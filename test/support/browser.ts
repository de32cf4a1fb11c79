/**
 * A real browser for end-to-end tests: Debian's chromium driven by playwright-core (Playwright's
 * own browser download cannot run here). Missing chromium is a loud skip, and with CI=true a
 * failure (global-setup says so once per run).
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM);
}

export function launchChromium(): Promise<Browser> {
  // As root (CI, containers) Chromium's sandbox cannot start; the pages are our own.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
}
