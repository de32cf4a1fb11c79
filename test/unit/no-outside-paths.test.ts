/**
 * A fresh clone has nothing beside it: no file of the project may name a path outside the
 * repository. Absolute paths of a developer's machine (under /work, /home, /root) never; the
 * optional conformance corpus beside the checkout only in the one helper that resolves it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCANNED = ['src', 'test', 'bench', 'scripts', 'fixtures', 'mappings', 'channels'];
/** The only file that may name the corpus beside the checkout. */
const CORPUS_HELPER = 'test/support/conformance-corpus.ts';
const BINARY = /\.(png|jpe?g|gif|webp|pdf|ogg|mp3|mp4|ico|woff2?)$/i;

// The patterns are written so that their own source text does not match them.
const ABSOLUTE = new RegExp(String.raw`(?:^|[\s'"\x60(=,:/])/(?:work|home|root)/`, 'm');
const CORPUS = [
  new RegExp(String.raw`\.\.[/\\]shared\b`),
  new RegExp(String.raw`['"\x60]\.\.['"\x60]\s*,\s*['"\x60]shared['"\x60]`),
  new RegExp(String.raw`\bshared[/\\](?:fixtures|reference)\b`),
  // Design notes kept beside the repository (docs/reference is the project's own).
  new RegExp(String.raw`(?<!docs/)\breference/[\w-]+\.md\b`),
];

/** Every outside path in `text`, as "line: excerpt"; `allowCorpus` for the conformance helper. */
function outsidePaths(text: string, allowCorpus: boolean): string[] {
  const found: string[] = [];
  text.split('\n').forEach((raw, i) => {
    // Escaped slashes (as in regular expressions) count as slashes.
    const line = raw.replaceAll('\\/', '/');
    const hits = [ABSOLUTE, ...(allowCorpus ? [] : CORPUS)].some((re) => re.test(line));
    if (hits) found.push(`${i + 1}: ${raw.trim().slice(0, 120)}`);
  });
  return found;
}

function filesUnder(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && !BINARY.test(e.name))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}

describe('no path outside the repository', () => {
  it('the checker finds what it looks for', () => {
    const machine = ['', 'work', 'shared', 'fixtures', 'hl7', 'a.hl7'].join('/');
    const up = '..';
    const beside = [up, up, up, 'shared', 'fixtures', 'twilio'].join('/');
    expect(outsidePaths(`readFileSync('${machine}')`, false)).toHaveLength(1);
    expect(outsidePaths(`const d = ${JSON.stringify(['', 'home', 'dev', 'x'].join('/'))};`, false)).toHaveLength(1);
    expect(outsidePaths(`new URL('${beside}/', import.meta.url)`, false)).toHaveLength(1);
    expect(outsidePaths(`path.resolve(root, '${up}', 'shared')`, false)).toHaveLength(1);
    expect(outsidePaths(`/${['', 'root', 'x'].join('\\/')}/`, false)).toHaveLength(1);
    expect(outsidePaths(` * See ${['reference', 'hl7.md'].join('/')} section 2`, false)).toHaveLength(1);
    // What is allowed: URLs, the project's docs, the corpus in its helper.
    expect(outsidePaths(`'https://example.org${['', 'home', ''].join('/')}' and docs/${['reference', 'functions.md'].join('/')}`, false)).toEqual([]);
    expect(outsidePaths(`path.resolve(ROOT, '${[up, 'shared', 'fixtures'].join('/')}')`, true)).toEqual([]);
  });

  const files = SCANNED.flatMap(filesUnder);
  it('scans the project', () => {
    expect(files).toContain(CORPUS_HELPER);
    expect(files.length).toBeGreaterThan(100);
  });

  it.each(SCANNED)('%s/ names no path outside the repository', (dir) => {
    const offending = files
      .filter((f) => f.startsWith(`${dir}/`))
      .flatMap((f) => outsidePaths(readFileSync(path.join(ROOT, f), 'utf8'), f === CORPUS_HELPER).map((hit) => `${f}:${hit}`));
    expect(offending).toEqual([]);
  });
});
