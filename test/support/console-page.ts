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

/** The elements a person can operate, found in the DOM (not by role, so one without a role or name is found too). */
const CONTROLS = 'input:not([type=hidden]), select, textarea, button, a[href], [role=button], [role=link], [tabindex]:not([tabindex="-1"])';

/**
 * Every control on the page has an accessible name, as the browser's accessibility tree (what a
 * screen reader announces, what getByRole and getByLabel match) computes it: each visible input,
 * select, textarea, button and link found in the DOM is asked for its role and name through
 * Playwright's aria snapshot of that element, and the whole page's tree is checked too. Returns
 * the `role "name"` of each control.
 */
export async function expectEveryControlNamed(page: Page): Promise<string[]> {
  const named: string[] = [];
  const unnamed: string[] = [];
  const controls = page.locator(CONTROLS);
  const n = await controls.count();
  for (let i = 0; i < n; i++) {
    const control = controls.nth(i);
    if (!(await control.isVisible())) continue;
    const first = (await control.ariaSnapshot()).split('\n')[0] ?? '';
    const m = /^- (\w+)(?: "((?:[^"\\]|\\.)*)")?/.exec(first);
    if (m?.[2]?.trim()) named.push(`${m[1]} "${m[2]}"`);
    else unnamed.push(`${await control.evaluate((el) => el.outerHTML.slice(0, 160))} -> ${first || '(no accessible node)'}`);
  }
  const tree = await page.locator('body').ariaSnapshot();
  for (const line of tree.split('\n')) {
    const m = /^\s*- (\w+)(?: "((?:[^"\\]|\\.)*)")?/.exec(line);
    if (m && operable.includes(m[1]!) && !m[2]?.trim()) unnamed.push(line.trim());
  }
  expect(unnamed, 'controls without an accessible name').toEqual([]);
  expect(named.length).toBeGreaterThan(0);
  return named;
}

/**
 * No table is cut off: each lies within the window, and neither it nor a box around it that
 * hides or scrolls its overflow is wider inside than it shows, nor a cell that clips its text.
 */
export async function expectNoClippedTable(page: Page): Promise<void> {
  const problems = (await page.evaluate(`(() => {
    const out = [];
    const width = document.documentElement.clientWidth;
    for (const [i, table] of [...document.querySelectorAll('table')].entries()) {
      const name = (table.querySelector('caption')?.textContent || table.getAttribute('aria-label') || 'table ' + (i + 1)).trim();
      const r = table.getBoundingClientRect();
      if (r.width === 0) continue;
      if (r.left < -0.5 || r.right > width + 0.5) out.push(name + ': spans ' + Math.round(r.left) + '..' + Math.round(r.right) + ' px in a ' + width + ' px window');
      for (let el = table; el && el !== document.body; el = el.parentElement) {
        const ox = getComputedStyle(el).overflowX;
        if (ox !== 'visible' && el.scrollWidth > el.clientWidth + 1) out.push(name + ': ' + el.tagName.toLowerCase() + ' is ' + el.scrollWidth + ' px wide inside ' + el.clientWidth + ' px (overflow-x ' + ox + ')');
      }
      for (const cell of table.querySelectorAll('th, td')) {
        const cs = getComputedStyle(cell);
        if (cs.overflowX !== 'visible' && cell.scrollWidth > cell.clientWidth + 1) out.push(name + ': a cell clips "' + cell.textContent.trim().slice(0, 40) + '"');
      }
    }
    return out;
  })()`)) as string[];
  expect(problems, 'clipped tables').toEqual([]);
}

/** The focused element shows it: a focus ring (outline or box shadow) that a sighted keyboard user sees. */
export async function expectFocusVisible(target: Locator): Promise<void> {
  const ring = await target.evaluate((el) => {
    const cs = el.ownerDocument.defaultView!.getComputedStyle(el);
    return {
      focused: el === el.ownerDocument.activeElement,
      focusVisible: el.matches(':focus-visible'),
      outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 1 ? `${cs.outlineWidth} ${cs.outlineStyle}` : '',
      shadow: cs.boxShadow !== 'none' ? cs.boxShadow : '',
    };
  });
  expect(ring.focused, 'the element has the focus').toBe(true);
  expect(ring.focusVisible, 'the browser shows focus on it (:focus-visible)').toBe(true);
  expect(ring.outline || ring.shadow, 'a visible focus ring').not.toBe('');
}

/**
 * Moves the focus with Tab (Shift+Tab when `back`) until `target` has it, as a keyboard user does,
 * and checks that the focus shows; fails after `max` presses.
 */
export async function tabTo(page: Page, target: Locator, o: { back?: boolean; max?: number } = {}): Promise<void> {
  await target.waitFor();
  for (let i = 0; i < (o.max ?? 80); i++) {
    if (await target.evaluate((el) => el === el.ownerDocument.activeElement)) {
      await expectFocusVisible(target);
      return;
    }
    await page.keyboard.press(o.back ? 'Shift+Tab' : 'Tab');
  }
  throw new Error(`Tab never reached ${target.toString()}`);
}

/** At the page's width (1280 px in these tests) nothing makes the document scroll sideways. */
export async function expectNoHorizontalScroll(page: Page): Promise<void> {
  const { scrollWidth, clientWidth } = (await page.evaluate('({ scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth })')) as {
    scrollWidth: number;
    clientWidth: number;
  };
  expect(scrollWidth, `the page is ${scrollWidth} px wide in a ${clientWidth} px window`).toBeLessThanOrEqual(clientWidth);
}
