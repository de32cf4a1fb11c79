/**
 * What the console's browser tests share: signing in as a person would, reading a table cell by
 * its column heading, checking that every control has an accessible name and that a page fits
 * 1280 px without scrolling sideways, and the README's screenshots (written only when
 * CONSOLE_SCREENSHOTS=1, so an ordinary run leaves the work tree alone).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { expect } from 'vitest';
import { repoRoot } from './gateway.js';

export const SCREENSHOT_DIR = path.join(repoRoot, 'docs', 'console');

/** A full-page PNG of what the user sees; into docs/console/<name>.png when CONSOLE_SCREENSHOTS=1. */
export async function screenshot(page: Page, name: string): Promise<void> {
  // Let transitions and late paints settle so the same state gives the same picture.
  await page.evaluate('document.fonts.ready');
  const png = await page.screenshot({ fullPage: true, animations: 'disabled', caret: 'hide' });
  expect(png.length).toBeGreaterThan(10_000);
  if (process.env['CONSOLE_SCREENSHOTS'] === '1') {
    await mkdir(SCREENSHOT_DIR, { recursive: true });
    await writeFile(path.join(SCREENSHOT_DIR, `${name}.png`), png);
  }
}

export async function signInWithToken(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/console/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}

/** The text of a row's cell under the column whose heading is `column`. */
export async function cell(table: Locator, row: Locator, column: string): Promise<string> {
  const headings = (await table.locator('thead th').allInnerTexts()).map((t) => t.trim());
  const i = headings.indexOf(column);
  if (i < 0) throw new Error(`no column "${column}" among ${headings.join(', ')}`);
  return (await row.locator('td').nth(i).innerText()).trim();
}

/** Roles a person operates; each must carry an accessible name. */
const operable = ['button', 'link', 'textbox', 'searchbox', 'combobox', 'checkbox', 'radio', 'spinbutton', 'slider', 'switch', 'tab', 'menuitem', 'listbox'];

/**
 * Every control on the page has an accessible name, as the browser's accessibility tree (what a
 * screen reader announces, what getByRole and getByLabel match) computes it. Returns the names.
 */
export async function expectEveryControlNamed(page: Page): Promise<string[]> {
  const tree = await page.locator('body').ariaSnapshot();
  const named: string[] = [];
  const unnamed: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^\s*- (\w+)(?: "((?:[^"\\]|\\.)*)")?/.exec(line);
    if (!m || !operable.includes(m[1]!)) continue;
    if (m[2]?.trim()) named.push(`${m[1]} ${m[2]}`);
    else unnamed.push(line.trim());
  }
  expect(unnamed, `controls without an accessible name:\n${tree}`).toEqual([]);
  expect(named.length).toBeGreaterThan(0);
  return named;
}

/** At the page's width (1280 px in these tests) nothing makes the document scroll sideways. */
export async function expectNoHorizontalScroll(page: Page): Promise<void> {
  const { scrollWidth, clientWidth } = (await page.evaluate('({ scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth })')) as {
    scrollWidth: number;
    clientWidth: number;
  };
  expect(scrollWidth, `the page is ${scrollWidth} px wide in a ${clientWidth} px window`).toBeLessThanOrEqual(clientWidth);
}
