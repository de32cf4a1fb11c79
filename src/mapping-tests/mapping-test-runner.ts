/**
 * Runs test files: `mappings/<name>.test.yaml` (a mapping on sample inputs) and, through
 * mapping-test-channel.ts, `channels/<name>.test.yaml` (raw webhooks through a whole channel).
 * Plain functions over files; the CLI prints the results.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import { missingFileHint } from '../core/did-you-mean.js';
import type { ConnectorRegistry, SourceInstance } from '../connectors/types.js';
import { compileMapping, type CompiledMapping } from '../mapping/jsonata-mapping.js';
import { runChannelTests } from './mapping-test-channel.js';
import { checkExpectation, type Outcome } from './mapping-test-expect.js';
import { testedFileCandidates } from './mapping-test-files.js';
import { compileHint } from './mapping-test-hints.js';
import {
  InputError,
  checkCanonical,
  pickMessage,
  resolveBody,
  sourceForParsing,
  type InputContext,
} from './mapping-test-input.js';
import { looksLikeChannelTest, mappingTestFileSchema, type MappingTestCase, type MappingTestFile } from './mapping-test-schema.js';
import { describeSchemaIssues, parseYamlWithPositions, type PositionedYaml } from './mapping-test-yaml.js';

/** `input.source: canonical`: the input is a canonical message as written (overrides defaults.source). */
export const CANONICAL_INPUT = 'canonical';

export interface CaseResult {
  name: string;
  /** Line of the case in the test file. */
  line: number;
  status: 'passed' | 'failed' | 'skipped';
  reasons: string[];
  durationMs: number;
}

export interface TestFileResult {
  file: string;
  kind: 'mapping' | 'channel';
  /** The mapping or channel file tested, when known. */
  target?: string;
  /** Problems that stop the whole file (test file schema, mapping or channel that does not load). */
  issues: ConfigIssue[];
  cases: CaseResult[];
  /** Golden files written by --update. */
  written: string[];
}

export interface TestRunOptions {
  registry: ConnectorRegistry;
  /** Folder of `fixture:` inputs. Default: `fixtures/` in the nearest folder with a package.json, else the working directory. */
  fixturesDir?: string;
  /** Rewrite `equals_file` golden files from the current output. */
  update?: boolean;
  /** Environment for ${VAR} in channel files (channel tests); default: process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Only run cases whose name contains this text. */
  filter?: string;
}

/** `fixtures/` beside the nearest package.json above `from`, else under the working directory. */
export function defaultFixturesDir(from: string): string {
  let dir = path.resolve(path.dirname(from));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'fixtures');
    const parent = path.dirname(dir);
    if (parent === dir) return path.resolve('fixtures');
    dir = parent;
  }
}

export function shown(file: string): string {
  return path.relative(process.cwd(), file) || file;
}

/** Reads, parses and schema-checks a test file; returns its kind too. */
export async function readTestFile(file: string): Promise<{ yaml?: PositionedYaml; issues: ConfigIssue[] }> {
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (err) {
    return { issues: [{ file, line: 1, column: 1, message: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'test file not found' : `cannot read the test file: ${String(err)}` }] };
  }
  const parsed = parseYamlWithPositions(file, source);
  if (!parsed.ok) return { issues: parsed.issues };
  return { yaml: parsed.yaml, issues: [] };
}

/** Runs one test file of either kind. */
export async function runTestFile(file: string, options: TestRunOptions): Promise<TestFileResult> {
  const { yaml, issues } = await readTestFile(file);
  if (yaml === undefined) return { file, kind: 'mapping', issues, cases: [], written: [] };
  const paired = testedFileCandidates(file);
  const isChannel =
    looksLikeChannelTest(yaml.data) || (!existsSync(paired.mapping) && paired.channels.some((c) => existsSync(c)));
  if (isChannel) {
    return runChannelTests(file, yaml, options);
  }
  return runMappingTests(file, yaml, options);
}

function caseFilter(options: TestRunOptions) {
  return (name: string): boolean => options.filter === undefined || name.includes(options.filter);
}

/** Compile problems of a mapping, each with what to do. */
function compileIssues(err: ConfigError): ConfigIssue[] {
  return err.issues.map((i) => (/JSONata S0/.test(i.message) ? { ...i, message: `${i.message} — ${compileHint(i.message)}` } : i));
}

async function runMappingTests(file: string, yaml: PositionedYaml, options: TestRunOptions): Promise<TestFileResult> {
  const result: TestFileResult = { file, kind: 'mapping', issues: [], cases: [], written: [] };
  const checked = mappingTestFileSchema.safeParse(yaml.data);
  if (!checked.success) {
    result.issues = describeSchemaIssues(yaml, mappingTestFileSchema, checked.error, 'the test file');
    return result;
  }
  const spec: MappingTestFile = checked.data;

  // The mapping: named, or beside the test file.
  const mappingFile = spec.mapping !== undefined ? path.resolve(path.dirname(file), spec.mapping) : testedFileCandidates(file).mapping;
  result.target = mappingFile;
  let source: string;
  try {
    source = await readFile(mappingFile, 'utf8');
  } catch {
    result.issues.push({
      file,
      ...yaml.at(spec.mapping !== undefined ? ['mapping'] : []),
      message:
        spec.mapping !== undefined
          ? `mapping file not found: ${shown(mappingFile)}${missingFileHint(mappingFile)} (the path is relative to the test file)`
          : `test file without a mapping: there is no ${path.basename(mappingFile)} beside it; rename the test file or add "mapping: <file>.jsonata"`,
    });
    return result;
  }
  let mapping: CompiledMapping;
  try {
    mapping = compileMapping(mappingFile, source);
  } catch (err) {
    if (err instanceof ConfigError) {
      result.issues.push(...compileIssues(err));
      return result;
    }
    throw err;
  }

  const inputCtx: InputContext = { testFile: file, fixturesDir: options.fixturesDir ?? defaultFixturesDir(file) };
  const sources = new Map<string, SourceInstance>();
  const selected = caseFilter(options);
  for (const [index, testCase] of spec.tests.entries()) {
    if (!selected(testCase.name)) continue;
    const line = yaml.at(['tests', index]).line;
    if (testCase.skip === true) {
      result.cases.push({ name: testCase.name, line, status: 'skipped', reasons: [], durationMs: 0 });
      continue;
    }
    const started = performance.now();
    const reasons = await runMappingCase(testCase, index, { spec, yaml, mapping, source, inputCtx, sources, options, written: result.written });
    result.cases.push({ name: testCase.name, line, status: reasons.length === 0 ? 'passed' : 'failed', reasons, durationMs: performance.now() - started });
  }
  return result;
}

interface MappingCaseContext {
  spec: MappingTestFile;
  yaml: PositionedYaml;
  mapping: CompiledMapping;
  source: string;
  inputCtx: InputContext;
  sources: Map<string, SourceInstance>;
  options: TestRunOptions;
  written: string[];
}

async function runMappingCase(testCase: MappingTestCase, index: number, ctx: MappingCaseContext): Promise<string[]> {
  const nowText = testCase.now ?? ctx.spec.defaults?.now;
  const now = nowText !== undefined ? new Date(nowText) : new Date();
  const bindings = { ...ctx.spec.defaults?.bindings, ...testCase.bindings };
  const given = testCase.input.source ?? ctx.spec.defaults?.source;
  const sourceKind = given === CANONICAL_INPUT ? undefined : given;

  // 1. The input.
  let input: unknown;
  let outcome: Outcome | undefined;
  try {
    const body = await resolveBody(testCase.input, ctx.inputCtx);
    if (sourceKind !== undefined) {
      let source = ctx.sources.get(sourceKind);
      if (source === undefined) {
        source = sourceForParsing(ctx.options.registry, sourceKind);
        ctx.sources.set(sourceKind, source);
      }
      const picked = pickMessage(await source.parse(body.raw, { channelId: 'test', receivedAt: now }), testCase.input.message, body.origin);
      if (picked.kind === 'no_message') outcome = { kind: 'dropped', reason: picked.reason };
      else input = picked.value;
    } else {
      if (testCase.input.message !== undefined) throw new InputError('input.message only applies with input.source (a raw webhook)');
      input = checkCanonical(body.value, body.origin);
    }
  } catch (err) {
    if (err instanceof InputError) return [`input: ${err.message}`];
    throw err;
  }

  // 2. The mapping.
  if (outcome === undefined) {
    try {
      const output = await ctx.mapping.evaluate(input, { now, bindings });
      if (output === undefined) {
        outcome = { kind: 'dropped', reason: 'the mapping returned nothing' };
      } else {
        const json = JSON.stringify(output);
        outcome =
          json === undefined
            ? { kind: 'error', error: new Error('the mapping returned something that is not JSON (a function?)') }
            : { kind: 'output', value: JSON.parse(json) as unknown };
      }
    } catch (err) {
      outcome = { kind: 'error', error: err };
    }
  }

  // 3. The expectations.
  return checkExpectation(testCase.expect, outcome, {
    testFile: ctx.yaml.file,
    at: (p) => ctx.yaml.at(p),
    expectPath: ['tests', index, 'expect'],
    input,
    mapping: { file: ctx.mapping.file, source: ctx.source },
    update: ctx.options.update === true,
    written: ctx.written,
  });
}

/** Totals over results: a file that cannot run counts as one failure. */
export function summarise(results: readonly TestFileResult[]): { passed: number; failed: number; skipped: number } {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const r of results) {
    if (r.issues.length > 0) failed++;
    for (const c of r.cases) {
      if (c.status === 'passed') passed++;
      else if (c.status === 'failed') failed++;
      else skipped++;
    }
  }
  return { passed, failed, skipped };
}
