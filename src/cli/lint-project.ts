/**
 * Offline checks of channel files, mappings and test files: everything that can be known
 * without a network. Used by `switchboard lint` and as the first layer of `validate`.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { ConnectorRegistry } from '../connectors/types.js';
import { loadChannelFile, type LoadedChannel } from '../channels/load-channel.js';
import { scalarPosition } from '../channels/interpolate.js';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import { missingFileHint } from '../core/did-you-mean.js';
import { compileMapping } from '../mapping/jsonata-mapping.js';
import { effectiveChannelEnv, type EnvMode } from '../mapping-tests/mapping-test-env.js';
import { collectProjectFiles, testedFileCandidates, testFileCandidates } from '../mapping-tests/mapping-test-files.js';
import { compileHint } from '../mapping-tests/mapping-test-hints.js';
import { CANONICAL_INPUT, defaultFixturesDir, readTestFile } from '../mapping-tests/mapping-test-runner.js';
import {
  channelTestFileSchema,
  looksLikeChannelTest,
  mappingTestFileSchema,
  type Expectation,
} from '../mapping-tests/mapping-test-schema.js';
import { describeSchemaIssues, type PositionedYaml } from '../mapping-tests/mapping-test-yaml.js';

export type LintLevel = 'error' | 'warning' | 'info';

export interface LintIssue extends ConfigIssue {
  level: LintLevel;
}

export interface EnvVariable {
  name: string;
  /** set: in the environment; filled_in: the gateway supplies a value (see note); defaulted: the file's ${VAR:-default}; missing: nothing. */
  status: 'set' | 'filled_in' | 'defaulted' | 'missing';
  note?: string;
  /** Where it is referenced, `file:line:column`. */
  references: string[];
}

export interface LintReport {
  issues: LintIssue[];
  environment: EnvVariable[];
  counts: { channels: number; mappings: number; tests: number };
  /** Channels that loaded without problems. */
  channels: LoadedChannel[];
}

export interface LintOptions {
  registry: ConnectorRegistry;
  /** The variables given (process environment plus --env-file). */
  env: Readonly<Record<string, string | undefined>>;
  mode: EnvMode;
  fixturesDir?: string;
  /** Resolve and show paths relative to this folder. */
  cwd: string;
}

const REFERENCE = /(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(:-[^}]*)?\}/g;

/** `${VAR}` references of a channel file with their positions. */
export interface EnvReference {
  name: string;
  hasDefault: boolean;
  line: number;
  column: number;
  /** YAML path of the scalar, e.g. ['destinations', 0, 'base_url']. */
  path: (string | number)[];
}

export async function envReferences(file: string): Promise<EnvReference[]> {
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter });
  if (doc.errors.length > 0) return [];
  const found: EnvReference[] = [];
  const visit = (node: unknown, at: (string | number)[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) if (isPair(pair)) visit(pair.value, [...at, isScalar(pair.key) ? String(pair.key.value) : '?']);
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => visit(item, [...at, i]));
    } else if (isScalar(node) && typeof node.value === 'string') {
      for (const match of node.value.matchAll(REFERENCE)) {
        const position = scalarPosition(node, node.value, match.index, source, lineCounter);
        found.push({ name: match[1] as string, hasDefault: match[2] !== undefined, ...position, path: at });
      }
    }
  };
  visit(doc.contents, []);
  return found;
}

function withHint(issue: ConfigIssue): ConfigIssue {
  return /JSONata S0/.test(issue.message) ? { ...issue, message: `${issue.message} — ${compileHint(issue.message)}` } : issue;
}

function isChannelIssueCode(issue: ConfigIssue, code: string): boolean {
  return (issue as { code?: unknown }).code === code;
}

export async function lintProject(paths: readonly string[], options: LintOptions): Promise<LintReport> {
  const resolve = (p: string): string => path.resolve(options.cwd, p);
  const files = await collectProjectFiles(paths.map(resolve));
  const issues: LintIssue[] = [];
  const add = (level: LintLevel, issue: ConfigIssue): void => {
    // Paths inside messages are shown relative to the working directory too.
    const message = issue.message.split(`${path.resolve(options.cwd)}${path.sep}`).join('');
    issues.push({ ...withHint({ ...issue, message }), level });
  };
  for (const missing of files.missing) add('error', { file: missing, line: 1, column: 1, message: 'no such file or folder (lint takes channel files, mappings, test files or folders)' });

  // 1. Channel files: schema, unknown keys, env, filter/when, referenced mappings.
  const { env, filledIn } = effectiveChannelEnv(options.env, options.mode);
  const variables = new Map<string, EnvVariable>();
  const loaded: LoadedChannel[] = [];
  for (const file of files.channels) {
    try {
      const channel = await loadChannelFile(file, { registry: options.registry, env });
      loaded.push(channel);
      for (const warning of channel.warnings ?? []) add('warning', warning);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const issue of err.issues) {
        if (isChannelIssueCode(issue, 'CONFIG_ENV_MISSING')) {
          add('error', {
            ...issue,
            message: `${issue.message}: set it in the environment or in a file given with --env-file${options.mode === 'production' ? ' (production: no development defaults)' : ''}`,
          });
        } else {
          add('error', issue);
        }
      }
    }
    for (const ref of await envReferences(file)) {
      const where = `${path.relative(options.cwd, file)}:${ref.line}:${ref.column}`;
      let variable = variables.get(ref.name);
      if (variable === undefined) {
        const set = options.env[ref.name] !== undefined && options.env[ref.name] !== '';
        const note = filledIn.get(ref.name);
        variable = set
          ? { name: ref.name, status: 'set', references: [] }
          : note !== undefined
            ? { name: ref.name, status: 'filled_in', note, references: [] }
            : ref.hasDefault
              ? { name: ref.name, status: 'defaulted', note: 'the default written in the file is used', references: [] }
              : { name: ref.name, status: 'missing', references: [] };
        variables.set(ref.name, variable);
        if (variable.status === 'filled_in') add('info', { file, line: ref.line, column: ref.column, message: `${ref.name} is not set: ${note ?? ''}` });
      }
      variable.references.push(where);
    }
  }
  checkAcrossChannels(loaded, add);

  // 2. Mappings: syntax, tables, and a test file beside each.
  for (const file of files.mappings) {
    let source: string;
    try {
      source = await readFile(file, 'utf8');
    } catch (err) {
      add('error', { file, line: 1, column: 1, message: `cannot read the mapping: ${String(err)}` });
      continue;
    }
    try {
      compileMapping(file, source);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const issue of err.issues) add('error', issue);
    }
    if (!testFileCandidates(file).some((t) => existsSync(t))) {
      add('warning', {
        file,
        line: 1,
        column: 1,
        message: `mapping without a test file: create ${path.basename(testFileCandidates(file)[0] ?? '')} beside it (docs/analyst-guide.md, "Test")`,
      });
    }
  }

  // 3. Test files: their own schema, what they test, their inputs and assertions.
  for (const file of files.tests) {
    const { yaml, issues: readIssues } = await readTestFile(file);
    for (const issue of readIssues) add('error', issue);
    if (yaml !== undefined) for (const issue of await lintTestFile(file, yaml, options)) add(issue.level, issue);
  }

  // One issue once; in file, line, column order.
  const seen = new Set<string>();
  const unique = issues.filter((i) => {
    const key = `${path.resolve(i.file)}:${i.line}:${i.column}:${i.level}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  unique.sort((a, b) => path.resolve(a.file).localeCompare(path.resolve(b.file)) || a.line - b.line || a.column - b.column);
  return {
    issues: unique,
    environment: [...variables.values()].sort((a, b) => a.name.localeCompare(b.name)),
    counts: { channels: files.channels.length, mappings: files.mappings.length, tests: files.tests.length },
    channels: loaded,
  };
}

/** Channel ids and webhook paths are unique across the channels linted together. */
function checkAcrossChannels(channels: readonly LoadedChannel[], add: (level: LintLevel, issue: ConfigIssue) => void): void {
  const ids = new Map<string, LoadedChannel>();
  const paths = new Map<string, LoadedChannel>();
  for (const channel of channels) {
    const first = ids.get(channel.id);
    if (first !== undefined) {
      add('error', { file: channel.file, line: 1, column: 1, message: `channel id "${channel.id}" is already used by ${first.file}; give each channel its own id` });
    } else ids.set(channel.id, channel);
    const written = channel.config.source['path'];
    const sourcePath = (typeof written === 'string' ? written : `/webhooks/${channel.id}`).replace(/\/+$/, '');
    const owner = paths.get(sourcePath);
    if (owner !== undefined) {
      add('error', { file: channel.file, line: 1, column: 1, message: `source path "${sourcePath}" is already served by channel "${owner.id}" (${owner.file}); give each channel its own path` });
    } else paths.set(sourcePath, channel);
  }
}

interface InputLike {
  file?: string | undefined;
  fixture?: string | undefined;
}

async function lintTestFile(file: string, yaml: PositionedYaml, options: LintOptions): Promise<LintIssue[]> {
  const out: LintIssue[] = [];
  const error = (at: readonly (string | number)[], message: string): void => {
    out.push({ file, ...yaml.at(at), level: 'error', message });
  };
  const paired = testedFileCandidates(file);
  const fixturesDir = options.fixturesDir ?? defaultFixturesDir(file);
  const checkInput = (input: InputLike, at: (string | number)[]): void => {
    if (input.file !== undefined && !existsSync(path.resolve(path.dirname(file), input.file))) {
      error([...at, 'file'], `input file not found: ${input.file} (relative to the test file)`);
    }
    if (input.fixture !== undefined && !existsSync(path.resolve(fixturesDir, input.fixture))) {
      error([...at, 'fixture'], `fixture not found: ${input.fixture} (in ${path.relative(options.cwd, fixturesDir) || '.'}; change it with --fixtures)`);
    }
  };
  const checkExpect = (expect: Expectation, at: (string | number)[]): void => {
    if (expect.equals_file !== undefined && !existsSync(path.resolve(path.dirname(file), expect.equals_file))) {
      out.push({ file, ...yaml.at([...at, 'equals_file']), level: 'warning', message: `golden file ${expect.equals_file} does not exist yet: run \`switchboard test --update\` to write it` });
    }
    (expect.assert ?? []).forEach((predicate, i) => {
      try {
        compileMapping(`${file}#assert`, predicate);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        const first = err.issues[0];
        error([...at, 'assert', i], `assert[${i}] does not compile: ${first?.message ?? err.message} (column ${first?.column ?? 1} of the predicate)`);
      }
    });
  };

  if (looksLikeChannelTest(yaml.data) || (!existsSync(paired.mapping) && paired.channels.some((c) => existsSync(c)))) {
    const checked = channelTestFileSchema.safeParse(yaml.data);
    if (!checked.success) return describeSchemaIssues(yaml, channelTestFileSchema, checked.error, 'the test file').map((i) => ({ ...i, level: 'error' }));
    const spec = checked.data;
    const channel = spec.channel !== undefined ? path.resolve(path.dirname(file), spec.channel) : paired.channels.find((c) => existsSync(c));
    if (channel === undefined || !existsSync(channel)) {
      error(spec.channel !== undefined ? ['channel'] : [], spec.channel !== undefined ? `channel file not found: ${spec.channel}` : 'test file without a channel: no channel file of the same name beside it; add "channel: <file>.yaml"');
    }
    spec.tests.forEach((t, i) => {
      checkInput(t.request.body, ['tests', i, 'request', 'body']);
      for (const [name, expect] of Object.entries(t.expect.destinations ?? {})) checkExpect(expect, ['tests', i, 'expect', 'destinations', name]);
    });
    return out;
  }

  const checked = mappingTestFileSchema.safeParse(yaml.data);
  if (!checked.success) return describeSchemaIssues(yaml, mappingTestFileSchema, checked.error, 'the test file').map((i) => ({ ...i, level: 'error' }));
  const spec = checked.data;
  const mapping = spec.mapping !== undefined ? path.resolve(path.dirname(file), spec.mapping) : paired.mapping;
  if (!existsSync(mapping)) {
    error(
      spec.mapping !== undefined ? ['mapping'] : [],
      spec.mapping !== undefined
        ? `mapping file not found: ${spec.mapping}${missingFileHint(mapping)} (relative to the test file)`
        : `test file without a mapping: there is no ${path.basename(mapping)} beside it; rename the test file or add "mapping: <file>.jsonata"`,
    );
  }
  const knownSources = new Set(options.registry.sources.map((s) => s.kind));
  spec.tests.forEach((t, i) => {
    checkInput(t.input, ['tests', i, 'input']);
    const sourceKind = t.input.source ?? spec.defaults?.source;
    if (sourceKind !== undefined && sourceKind !== CANONICAL_INPUT && !knownSources.has(sourceKind)) {
      error(
        t.input.source !== undefined ? ['tests', i, 'input', 'source'] : ['defaults', 'source'],
        `unknown source kind "${sourceKind}"; known: ${[...knownSources].join(', ')}, or ${CANONICAL_INPUT} for a canonical message as written`,
      );
    }
    checkExpect(t.expect, ['tests', i, 'expect']);
  });
  return out;
}

/** `file:line:column: level: message`, paths relative to `cwd`. */
export function formatLintIssue(issue: LintIssue, cwd: string): string {
  return `${displayFile(issue.file, cwd)}:${issue.line}:${issue.column}: ${issue.level}: ${issue.message}`;
}

/** A file path as shown to the analyst: relative to the working directory. */
export function displayFile(file: string, cwd: string): string {
  return path.isAbsolute(file) ? path.relative(cwd, file) || file : file;
}
