/**
 * Imports run one way: `core` at the ground; the foundations (store, queue, hl7, fhir, mapping and
 * their kin) above it; then connectors, pipeline, channels; the analyst tooling; `http`, `cli` and
 * `app` on top. This test parses every import of src/**\/*.ts (static, type-only, re-exports,
 * dynamic `import()` and `import('…')` types) and fails on any that runs the wrong way, so the
 * layering is a build failure instead of a convention. A new folder under src/ fails it too until
 * it is placed in the table below.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSync } from 'rolldown/utils';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Parts that import only `core`, with the two exceptions below. */
const FOUNDATIONS = ['core', 'config', 'crypto', 'queue', 'hl7', 'fhir', 'mapping', 'media', 'store', 'mllp'] as const;
const MIDDLE = [...FOUNDATIONS, 'connectors', 'pipeline', 'channels'] as const;

/** Each part of src/ (a folder, or a file at its root) and the parts it may import. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  core: [],
  config: ['core'],
  crypto: ['core'],
  queue: ['core'],
  hl7: ['core'],
  fhir: ['core'],
  mapping: ['core'],
  media: ['core'],
  // Encryption at rest: the store seals and opens columns with the keyring.
  store: ['core', 'crypto'],
  // The MLLP transport frames HL7 v2 messages and reads their acknowledgements.
  mllp: ['core', 'hl7'],
  // Connectors, pipeline and channels, in that order: each may use the ones before it.
  connectors: FOUNDATIONS,
  pipeline: [...FOUNDATIONS, 'connectors'],
  channels: [...FOUNDATIONS, 'connectors', 'pipeline'],
  // Analyst tooling (the mapping test runner runs channels as the gateway would) and the
  // development sandbox peers.
  'mapping-tests': MIDDLE,
  sandbox: FOUNDATIONS,
  // The top: neither edge imports the other; only main imports app.
  http: [...MIDDLE, 'mapping-tests', 'sandbox'],
  cli: [...MIDDLE, 'mapping-tests', 'sandbox'],
  app: [...MIDDLE, 'mapping-tests', 'sandbox', 'http'],
  main: [...MIDDLE, 'mapping-tests', 'sandbox', 'http', 'cli', 'app'],
};

interface SourceFile {
  /** Path relative to src/, with forward slashes. */
  file: string;
  text: string;
}

/** The part a path relative to src/ belongs to: its first folder, or the file's name at the root. */
function partOf(relative: string): string {
  const [first, ...rest] = relative.split('/');
  return rest.length > 0 ? first! : first!.replace(/(\.d)?\.[cm]?[jt]s$/, '');
}

/** Every module specifier in a TypeScript source, found by parsing it. */
function specifiers(file: SourceFile): { specifier: string | null; offset: number }[] {
  const parsed = parseSync(file.file, file.text, { lang: file.file.endsWith('.d.ts') ? 'dts' : 'ts' });
  if (parsed.errors.length > 0) throw new Error(`src/${file.file}: does not parse: ${parsed.errors[0]!.message}`);
  const found: { specifier: string | null; offset: number }[] = [];
  const literal = (node: unknown, at: number): void => {
    const n = node as { type?: string; value?: unknown } | null;
    found.push({ specifier: n?.type === 'Literal' && typeof n.value === 'string' ? n.value : null, offset: at });
  };
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const child of node) walk(child);
      return;
    }
    if (node === null || typeof node !== 'object') return;
    const n = node as Record<string, unknown> & { type?: string; start?: number };
    switch (n.type) {
      case 'ImportDeclaration':
      case 'ExportAllDeclaration':
      case 'ImportExpression':
      case 'TSImportType':
        literal(n.source, n.start ?? 0);
        break;
      case 'ExportNamedDeclaration':
        if (n.source) literal(n.source, n.start ?? 0);
        break;
      case 'TSExternalModuleReference':
        literal(n.expression, n.start ?? 0);
        break;
    }
    for (const [key, child] of Object.entries(n)) if (key !== 'parent') walk(child);
  };
  walk(parsed.program);
  return found;
}

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length;
}

/** Imports that run the wrong way, as `src/file:line: reason` lines. */
function layeringViolations(files: readonly SourceFile[]): string[] {
  const problems: string[] = [];
  for (const file of files) {
    const from = partOf(file.file);
    const allowed = ALLOWED[from];
    if (allowed === undefined) {
      problems.push(`src/${file.file}: part "${from}" has no place in the layering; add it to ALLOWED in test/unit/import-direction.test.ts`);
      continue;
    }
    for (const { specifier, offset } of specifiers(file)) {
      const where = `src/${file.file}:${lineOf(file.text, offset)}`;
      if (specifier === null) {
        problems.push(`${where}: an import whose specifier is not a plain string cannot be checked; write the path out`);
        continue;
      }
      if (!specifier.startsWith('.')) continue; // node: builtins and packages
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file.file), specifier));
      if (target.startsWith('../')) {
        problems.push(`${where}: imports ${specifier}, outside src/`);
        continue;
      }
      const to = partOf(target);
      const rule = allowed.length > 0 ? `${from} may import only ${allowed.join(', ')}` : `${from} imports nothing else in src/`;
      if (to !== from && !allowed.includes(to)) problems.push(`${where}: ${from} imports ${to} (${specifier}); ${rule}`);
    }
  }
  return problems;
}

function sourceFiles(): SourceFile[] {
  return readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .map((f) => f.split(path.sep).join('/'))
    .filter((f) => f.endsWith('.ts'))
    .sort()
    .map((file) => ({ file, text: readFileSync(path.join(SRC, file), 'utf8') }));
}

describe('import direction in src/', () => {
  it('every import runs down the layers', () => {
    const files = sourceFiles();
    expect(files.length).toBeGreaterThan(100);
    expect(layeringViolations(files)).toEqual([]);
  });

  it('the analyst test runner is its own part and the mapping runtime imports only core', () => {
    const files = sourceFiles();
    expect(files.filter((f) => f.file.startsWith('mapping/') && /mapping-test-/.test(f.file))).toEqual([]);
    const mappingTargets = files
      .filter((f) => partOf(f.file) === 'mapping')
      .flatMap((f) => specifiers(f).map((s) => s.specifier ?? ''))
      .filter((s) => s.startsWith('../'))
      .map((s) => s.replace(/^(\.\.\/)+/, '').split('/')[0]);
    expect(new Set(mappingTargets)).toEqual(new Set(['core']));
  });

  it('catches every form of import that runs the wrong way', () => {
    const problems = layeringViolations([
      { file: 'core/a.ts', text: "import type { X } from '../pipeline/x.js';\n" },
      { file: 'mapping/b.ts', text: "import { y } from '../channels/y.js';\nexport { z } from '../connectors/z.js';\nexport * from '../pipeline/w.js';\n" },
      { file: 'connectors/c.ts', text: "type T = typeof import('../pipeline/circuit-breaker.js');\nconst m = await import('../http/h.js');\n" },
      { file: 'pipeline/d.ts', text: "import { app } from '../app.js';\nconst n = await import(`../cli/${name}.js`);\n" },
      { file: 'http/e.ts', text: "import { cli } from '../cli/main.js';\nimport pkg from '../../package.json';\n" },
      { file: 'newpart/f.ts', text: "import { ok } from '../core/errors.js';\n" },
      // Allowed: within a part, down the layers, packages.
      { file: 'channels/g.ts', text: "import { a } from './load.js';\nimport { b } from '../pipeline/p.js';\nimport { z } from 'zod';\nimport fs from 'node:fs';\n" },
    ]);
    expect(problems).toEqual([
      expect.stringMatching(/^src\/core\/a\.ts:1: core imports pipeline .*; core imports nothing else in src\/$/),
      expect.stringMatching(/^src\/mapping\/b\.ts:1: mapping imports channels/),
      expect.stringMatching(/^src\/mapping\/b\.ts:2: mapping imports connectors/),
      expect.stringMatching(/^src\/mapping\/b\.ts:3: mapping imports pipeline/),
      expect.stringMatching(/^src\/connectors\/c\.ts:1: connectors imports pipeline/),
      expect.stringMatching(/^src\/connectors\/c\.ts:2: connectors imports http/),
      expect.stringMatching(/^src\/pipeline\/d\.ts:1: pipeline imports app/),
      expect.stringMatching(/^src\/pipeline\/d\.ts:2: an import whose specifier is not a plain string/),
      expect.stringMatching(/^src\/http\/e\.ts:1: http imports cli/),
      expect.stringMatching(/^src\/http\/e\.ts:2: imports \.\.\/\.\.\/package\.json, outside src\/$/),
      expect.stringMatching(/^src\/newpart\/f\.ts: part "newpart" has no place in the layering/),
    ]);
  });
});
