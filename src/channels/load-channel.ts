/**
 * Loads channel files: YAML (with positions) → `${VAR}` interpolation → the registry's channel
 * schema → filter and mapping compilation. Every problem becomes a ConfigIssue at the
 * file:line:column where the analyst has to fix it; all problems are collected before one
 * ConfigError is thrown, so one `validate` run shows everything.
 */
import { didYouMean, missingFileHint } from '../core/did-you-mean.js';
import { describeIndentation } from '../core/yaml-indentation.js';
import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair, type YAMLError, type YAMLMap } from 'yaml';
import { z } from 'zod';
import { ConfigError, type ErrorCode } from '../core/errors.js';
import { compileMapping, loadMapping } from '../mapping/jsonata-mapping.js';
import {
  buildChannelSchema,
  CHANNEL_ID_PATTERN,
  CHANNEL_ID_RULE,
  type ChannelConfig,
  type ChannelSchema,
} from './channel-schema.js';
import type { ConnectorRegistry } from '../connectors/types.js';
import {
  interpolateDocument,
  nodePosition,
  scalarPosition,
  type ChannelIssue,
  type Env,
  type InterpolatedScalar,
  type LineColumn,
  type YamlPath,
} from './interpolate.js';

export type { ChannelIssue } from './interpolate.js';

export interface LoadChannelOptions {
  registry: ConnectorRegistry;
  /** Values for `${VAR}` references; pass `process.env` at the edge, a plain object in tests. */
  env: Env;
}

/** A validated channel config whose `id` is filled in (from the file name when not written). */
export type LoadedChannelConfig = Omit<ChannelConfig, 'id'> & { id: string };

export interface LoadedChannel {
  id: string;
  /** Absolute path of the channel file. */
  file: string;
  /** Parsed, interpolated and validated, with defaults applied. */
  config: LoadedChannelConfig;
  /** Destination name → absolute path of its JSONata mapping (checked to exist and compile). */
  mappingFiles: Record<string, string>;
  /** Loads, but should be written differently (e.g. an old spelling); lint shows them as warnings. */
  warnings?: readonly ChannelIssue[];
}

/**
 * \`auth: { type: bearer }\` (and \`rooms: [{ type: channel }]\`) was the spelling before every block
 * named its variant with \`kind\`: renamed in place (so old files keep loading); returns the paths of
 * the blocks renamed.
 */
function renameLegacyType(data: unknown): YamlPath[] {
  const renamed: YamlPath[] = [];
  const fix = (block: unknown, at: YamlPath) => {
    if (!isRecord(block) || !isRecord(block['auth'])) return;
    const auth = block['auth'];
    if (!('type' in auth) || 'kind' in auth) return;
    const { type, ...rest } = auth;
    block['auth'] = { kind: type, ...rest };
    renamed.push([...at, 'auth']);
  };
  if (!isRecord(data)) return renamed;
  fix(data['source'], ['source']);
  // rocketchat_poll rooms: `{ id, type: channel }` before rooms named their kind too.
  const rooms = isRecord(data['source']) ? data['source']['rooms'] : undefined;
  if (Array.isArray(rooms)) {
    rooms.forEach((room: unknown, i) => {
      if (!isRecord(room) || !('type' in room) || 'kind' in room) return;
      const { type, ...rest } = room;
      rooms[i] = { kind: type, ...rest };
      renamed.push(['source', 'rooms', i]);
    });
  }
  const destinations = data['destinations'];
  if (Array.isArray(destinations)) destinations.forEach((d: unknown, i) => fix(d, ['destinations', i]));
  return renamed;
}

/** Loads one channel file; throws a ConfigError listing every problem found. */
export async function loadChannelFile(file: string, opts: LoadChannelOptions): Promise<LoadedChannel> {
  const loader = createLoader(opts);
  const result = await loadOne(file, loader);
  const issues = [...sortIssues(result.issues), ...result.mappingIssues];
  if (issues.length > 0 || result.channel === undefined) throw channelConfigError(issues);
  return result.channel;
}

/**
 * Loads every `*.yaml` / `*.yml` file of `dir` (not recursive, dot-files and `*.test.yaml` channel
 * tests skipped), in name order.
 * Channel ids and source paths must be unique across files. Throws one ConfigError with the
 * problems of all files.
 */
export async function loadChannelDirectory(dir: string, opts: LoadChannelOptions): Promise<LoadedChannel[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT' ? 'channel directory not found' : code === 'ENOTDIR' ? 'not a directory: pass the folder that holds the channel files' : `cannot read the channel directory: ${String(err)}`;
    throw channelConfigError([{ file: dir, line: 1, column: 1, message, code: 'CONFIG_INVALID' }]);
  }
  const names = entries
    // `<name>.test.yaml` beside a channel is its channel test (switchboard test), not a channel.
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && !e.name.startsWith('.') && /\.ya?ml$/i.test(e.name) && !/\.test\.ya?ml$/i.test(e.name))
    .map((e) => e.name)
    .sort();

  const loader = createLoader(opts);
  const results = await Promise.all(names.map((name) => loadOne(path.join(dir, name), loader)));
  checkAcrossFiles(results);

  const issues = results.flatMap((r) => [...sortIssues(r.issues), ...r.mappingIssues]);
  if (issues.length > 0) throw channelConfigError(issues);
  return results.flatMap((r) => (r.channel === undefined ? [] : [r.channel]));
}

// ---------------------------------------------------------------------------------------------
// One file
// ---------------------------------------------------------------------------------------------

type MappingCheck = { status: 'missing' } | { status: 'directory' } | { status: 'checked'; issues: ChannelIssue[] };

interface Loader {
  schema: ChannelSchema;
  env: Env;
  /** Absolute mapping path → its check, shared by all channels of one load. */
  mappings: Map<string, Promise<MappingCheck>>;
}

function createLoader(opts: LoadChannelOptions): Loader {
  return { schema: buildChannelSchema(opts.registry), env: opts.env, mappings: new Map() };
}

interface FileResult {
  /** The file as given (used in issues). */
  file: string;
  /** Problems located in the channel file itself. */
  issues: ChannelIssue[];
  /** Problems located in mapping files. */
  mappingIssues: ChannelIssue[];
  /** What loads but should be written differently (old spellings). */
  warnings: ChannelIssue[];
  channel?: LoadedChannel;
  /** Whether `id:` is written in the file (else it comes from the file name). */
  idWritten?: boolean;
  idAt?: LineColumn;
  sourcePathAt?: LineColumn;
}

/** A parsed channel file, kept for mapping schema issues back to YAML nodes. */
interface ParsedFile {
  file: string;
  source: string;
  doc: Document;
  lineCounter: LineCounter;
  data: unknown;
  /** Interpolated scalars, by node: their text as written (values from the environment are never echoed). */
  written: Map<Node, InterpolatedScalar>;
}

async function loadOne(file: string, loader: Loader): Promise<FileResult> {
  const result: FileResult = { file, issues: [], mappingIssues: [], warnings: [] };
  const issue = (at: LineColumn, message: string, code: ErrorCode = 'CONFIG_INVALID'): void => {
    result.issues.push({ file, ...at, message, code });
  };

  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    issue({ line: 1, column: 1 }, code === 'ENOENT' ? 'channel file not found' : `cannot read the channel file: ${String(err)}`);
    return result;
  }

  // 1. YAML syntax. Later steps would only echo the same mistake, so stop here on errors.
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: true, uniqueKeys: true });
  // After the first syntax error the parser mostly reports its consequences: keep the first one,
  // and every duplicate key (those are independent mistakes).
  const firstSyntaxError = doc.errors.find((e) => e.code !== 'DUPLICATE_KEY');
  const reported = doc.errors.filter((e) => e.code === 'DUPLICATE_KEY' || e === firstSyntaxError);
  for (const err of [...reported, ...doc.warnings]) result.issues.push(yamlIssue(err, file, source));
  if (doc.errors.length > 0) return result;
  if (!isMap(doc.contents)) {
    const found = doc.contents === null ? 'the file is empty' : isSeq(doc.contents) ? 'it holds a list' : 'it holds a single value';
    issue(nodePosition(doc.contents, lineCounter), `a channel file is a mapping with at least "source" and "destinations"; ${found}`);
    return result;
  }

  // 2. ${VAR} interpolation and the secrets rule, per scalar.
  const interpolation = interpolateDocument(doc, { env: loader.env, file, source, lineCounter });
  result.issues.push(...interpolation.issues);
  const written = new Map<Node, InterpolatedScalar>(interpolation.scalars.map((s) => [s.node, s]));

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    issue({ line: 1, column: 1 }, `cannot expand YAML aliases: ${err instanceof Error ? err.message : String(err)}`);
    return result;
  }
  coerceBareReferences(loader.schema, data, interpolation.scalars);
  for (const at of renameLegacyType(data)) {
    result.warnings.push({
      file,
      ...nodePosition(locate(doc, [...at, 'type']).nearest, lineCounter),
      message: `${at.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').slice(1)}: "type" is the old spelling; write "kind" (every block names its variant with kind, like source.kind and destinations[].kind)`,
      code: 'CONFIG_INVALID',
    });
  }
  const parsed: ParsedFile = { file, source, doc, lineCounter, data, written };

  // 3. The schema. Scalars whose interpolation failed were reported already.
  const validation = loader.schema.safeParse(data);
  if (!validation.success) {
    for (const zodIssue of validation.error.issues) {
      for (const described of describeZodIssue(zodIssue, parsed, loader.schema)) {
        if (described.node !== undefined && written.get(described.node)?.failed === true) continue;
        issue(described.at, described.message);
      }
    }
  }

  // 4. The filter and the mappings are checked even when the schema failed, so that one run
  //    shows every problem. They read the data as written (strings only).
  const filter = valueAt(data, ['filter']);
  if (typeof filter === 'string' && filter !== '') {
    const filterNode = locate(doc, ['filter']).node;
    const filterIssue = compileIssue(() => compileMapping(file, filter));
    if (filterIssue !== undefined && isScalar(filterNode)) {
      const offset = offsetOf(filter, filterIssue.line, filterIssue.column);
      issue(scalarPosition(filterNode, filter, offset, source, lineCounter), `filter does not compile: ${filterIssue.message}`);
    }
  }

  // Mappings are relative to the channel file and must exist and compile.
  const destinations = valueAt(data, ['destinations']);
  // Each destination's `when` routing expression must compile, like the filter.
  (Array.isArray(destinations) ? destinations : []).forEach((destination: unknown, index) => {
    const when = isRecord(destination) ? destination['when'] : undefined;
    if (typeof when !== 'string' || when === '') return;
    const whenNode = locate(doc, ['destinations', index, 'when']).node;
    const whenIssue = compileIssue(() => compileMapping(file, when));
    if (whenIssue !== undefined && isScalar(whenNode)) {
      const offset = offsetOf(when, whenIssue.line, whenIssue.column);
      issue(scalarPosition(whenNode, when, offset, source, lineCounter), `when does not compile: ${whenIssue.message}`);
    }
  });
  const mappingFiles: Record<string, string> = {};
  await Promise.all(
    (Array.isArray(destinations) ? destinations : []).map(async (destination: unknown, index) => {
      const mapping = isRecord(destination) ? destination['mapping'] : undefined;
      if (typeof mapping !== 'string' || mapping === '') return;
      const shown = path.isAbsolute(mapping) ? mapping : path.join(path.dirname(file), mapping);
      const absolute = path.resolve(shown);
      const name = isRecord(destination) ? destination['name'] : undefined;
      if (typeof name === 'string') mappingFiles[name] = absolute;
      const check = await checkMapping(loader, shown, absolute);
      const at = nodePosition(locate(doc, ['destinations', index, 'mapping']).node, lineCounter);
      if (check.status === 'missing') issue(at, `mapping file not found: ${shown}${missingFileHint(absolute)} (paths are relative to the channel file)`);
      else if (check.status === 'directory') issue(at, `mapping must name a .jsonata file, not a directory: ${shown}`);
      else result.mappingIssues.push(...check.issues);
    }),
  );
  if (!validation.success) return result;
  const config = validation.data;

  // 5. The id, written or from the file name.
  result.idWritten = config.id !== undefined;
  result.idAt = nodePosition(locate(doc, ['id']).node, lineCounter);
  const id = config.id ?? path.basename(file).replace(/\.ya?ml$/i, '');
  if (config.id === undefined && !CHANNEL_ID_PATTERN.test(id)) {
    issue(
      { line: 1, column: 1 },
      `the channel id defaults to the file name "${id}", which is not a valid id (${CHANNEL_ID_RULE}); rename the file or add an "id:" key`,
    );
  }
  const sourcePath = locate(doc, ['source', 'path']);
  result.sourcePathAt = nodePosition(sourcePath.node ?? sourcePath.nearest, lineCounter);

  if (result.issues.length === 0 && result.mappingIssues.length === 0) {
    result.channel = { id, file: path.resolve(file), config: { ...config, id }, mappingFiles, warnings: result.warnings };
  }
  return result;
}

function checkMapping(loader: Loader, shown: string, absolute: string): Promise<MappingCheck> {
  let check = loader.mappings.get(absolute);
  if (check === undefined) {
    check = (async (): Promise<MappingCheck> => {
      try {
        if ((await stat(absolute)).isDirectory()) return { status: 'directory' };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
      }
      try {
        await loadMapping(shown);
        return { status: 'checked', issues: [] };
      } catch (err) {
        if (err instanceof ConfigError) return { status: 'checked', issues: err.issues.map((i) => ({ ...i, code: err.code })) };
        throw err;
      }
    })();
    loader.mappings.set(absolute, check);
  }
  return check;
}

/** Runs a compile step and returns its first ConfigIssue, if it threw one. */
function compileIssue(compile: () => unknown): { line: number; column: number; message: string } | undefined {
  try {
    compile();
    return undefined;
  } catch (err) {
    if (err instanceof ConfigError && err.issues[0] !== undefined) return err.issues[0];
    throw err;
  }
}

/** Character offset of a 1-based line and column in `text`. */
function offsetOf(text: string, line: number, column: number): number {
  const lines = text.split('\n');
  let offset = 0;
  for (let l = 0; l < line - 1 && l < lines.length; l++) offset += (lines[l]?.length ?? 0) + 1;
  return Math.min(offset + column - 1, text.length);
}

// ---------------------------------------------------------------------------------------------
// Across files
// ---------------------------------------------------------------------------------------------

function normalisePath(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

function checkAcrossFiles(results: FileResult[]): void {
  const ids = new Map<string, FileResult>();
  const paths = new Map<string, FileResult>();
  for (const result of results) {
    const channel = result.channel;
    if (channel === undefined) continue;
    const first = ids.get(channel.id);
    if (first === undefined) {
      ids.set(channel.id, result);
    } else {
      result.issues.push({
        file: result.file,
        ...(result.idWritten === true && result.idAt !== undefined ? result.idAt : { line: 1, column: 1 }),
        code: 'CONFIG_INVALID',
        message:
          result.idWritten === true
            ? `channel id "${channel.id}" is already used by ${first.file}; give each channel its own id`
            : `channel id "${channel.id}" (from the file name) is already used by ${first.file}; add an "id:" key with a different id`,
      });
    }

    // Sources serve `path`, by convention /webhooks/<channel id> when not written.
    const written = channel.config.source['path'];
    const sourcePath = typeof written === 'string' ? written : `/webhooks/${channel.id}`;
    const key = normalisePath(sourcePath);
    const owner = paths.get(key);
    if (owner === undefined) {
      paths.set(key, result);
    } else {
      const shown = typeof written === 'string' ? `"${sourcePath}"` : `"${sourcePath}" (the default for this channel)`;
      result.issues.push({
        file: result.file,
        ...(result.sourcePathAt ?? { line: 1, column: 1 }),
        code: 'CONFIG_INVALID',
        message: `source path ${shown} is already served by channel "${owner.channel?.id ?? ''}" (${owner.file}); give each channel its own path`,
      });
    }
  }
  for (const result of results) if (result.issues.length > 0) delete result.channel;
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

function sortIssues(issues: ChannelIssue[]): ChannelIssue[] {
  return [...issues].sort((a, b) => a.line - b.line || a.column - b.column);
}

/** One ConfigError; its code is the issues' common code, else CONFIG_INVALID. */
function channelConfigError(issues: ChannelIssue[]): ConfigError {
  const seen = new Set<string>();
  const unique = issues.filter((i) => {
    const key = `${i.file}:${i.line}:${i.column}: ${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const codes = new Set(unique.map((i) => i.code));
  const [only] = codes;
  return new ConfigError(unique, codes.size === 1 && only !== undefined ? only : 'CONFIG_INVALID');
}

function yamlIssue(err: YAMLError, file: string, source: string): ChannelIssue {
  const start = err.linePos?.[0] ?? { line: 1, col: 1 };
  let message = err.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '');
  if (err.code === 'DUPLICATE_KEY') {
    const lineText = source.slice(err.pos[0]).split('\n')[0] ?? '';
    const key = /^\s*(.*?)\s*:(\s|$)/.exec(lineText)?.[1];
    message = `duplicate key${key ? ` "${key.replace(/^["']|["']$/g, '')}"` : ''}: a key may appear only once in a mapping; remove or merge the repeated one`;
  } else if (err.code === 'MULTIPLE_DOCS') {
    message = 'a channel file holds one YAML document: remove the second "---" or move that channel to its own file';
  } else if (describeIndentation(err, source) !== undefined) {
    const indentation = describeIndentation(err, source)!;
    return { file, line: indentation.line, column: indentation.column, message: indentation.message, code: 'CONFIG_INVALID' };
  } else {
    message = `YAML ${err.name === 'YAMLWarning' ? 'warning' : 'syntax error'}: ${message}`;
    const lineText = source.split('\n')[start.line - 1] ?? '';
    if (/[[{].*\$\{/.test(lineText)) message += ' (inside { } or [ ], quote values that hold ${VAR}: "${VAR}")';
  }
  return { file, line: start.line, column: start.col, message, code: 'CONFIG_INVALID' };
}

// ---------------------------------------------------------------------------------------------
// YAML nodes by path
// ---------------------------------------------------------------------------------------------

interface Located {
  /** The node at the path, if it exists. */
  node: Node | undefined;
  /** The deepest node that exists along the path (the node itself when found). */
  nearest: Node | undefined;
}

function findPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p): p is Pair => isPair(p) && isScalar(p.key) && String(p.key.value) === key);
}

function resolveAlias(doc: Document, node: unknown): unknown {
  return isAlias(node) ? node.resolve(doc) : node;
}

function locate(doc: Document, at: YamlPath): Located {
  let current = resolveAlias(doc, doc.contents) as Node | undefined;
  for (const segment of at) {
    let next: unknown;
    if (isMap(current) && typeof segment === 'string') next = findPair(current, segment)?.value;
    else if (isSeq(current) && typeof segment === 'number') next = current.items[segment];
    next = resolveAlias(doc, next);
    if (next === undefined || next === null) return { node: undefined, nearest: current };
    current = next as Node;
  }
  return { node: current, nearest: current };
}

// ---------------------------------------------------------------------------------------------
// Schema walking (allowed keys, expected types)
// ---------------------------------------------------------------------------------------------

function unwrapSchema(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (let depth = 0; depth < 64; depth++) {
    if (
      s instanceof z.ZodOptional ||
      s instanceof z.ZodNullable ||
      s instanceof z.ZodDefault ||
      s instanceof z.ZodPrefault ||
      s instanceof z.ZodNonOptional ||
      s instanceof z.ZodReadonly ||
      s instanceof z.ZodCatch ||
      s instanceof z.ZodLazy
    ) {
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) {
      s = s.in as z.ZodType;
    } else {
      return s;
    }
  }
  return s;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Picks the union option that `data` is meant to be: by discriminator, else by its keys. */
function resolveUnion(schema: z.ZodType, data: unknown): z.ZodType {
  let s = unwrapSchema(schema);
  while (s instanceof z.ZodUnion) {
    const options = (s.options as readonly z.ZodType[]).map(unwrapSchema);
    const discriminator = (s.def as { discriminator?: string }).discriminator;
    let chosen: z.ZodType | undefined;
    if (isRecord(data)) {
      if (discriminator !== undefined) {
        chosen = options.find((o) => {
          const literal = o instanceof z.ZodObject ? unwrapSchema(o.shape[discriminator] as z.ZodType) : undefined;
          return literal instanceof z.ZodLiteral && (literal.values as Set<unknown>).has(data[discriminator]);
        });
      } else {
        chosen = options.find((o) => o instanceof z.ZodObject && Object.keys(data).every((k) => k in o.shape));
      }
    }
    if (chosen === undefined) return s;
    s = chosen;
  }
  return s;
}

function childSchema(schema: z.ZodType, data: unknown, segment: string | number): z.ZodType | undefined {
  const s = resolveUnion(schema, data);
  if (s instanceof z.ZodObject && typeof segment === 'string') return s.shape[segment] as z.ZodType | undefined;
  if (s instanceof z.ZodArray && typeof segment === 'number') return s.element as z.ZodType;
  if (s instanceof z.ZodRecord) return s.valueType as z.ZodType;
  return undefined;
}

function valueAt(data: unknown, at: YamlPath): unknown {
  let current = data;
  for (const segment of at) {
    if (Array.isArray(current) && typeof segment === 'number') current = current[segment];
    else if (isRecord(current) && typeof segment === 'string') current = current[segment];
    else return undefined;
  }
  return current;
}

/** The (unwrapped, union-resolved) schema that validates the value at `at`. */
function schemaAt(root: z.ZodType, data: unknown, at: YamlPath): z.ZodType | undefined {
  let s: z.ZodType | undefined = root;
  for (let i = 0; i < at.length && s !== undefined; i++) {
    const segment = at[i];
    if (segment === undefined) return undefined;
    s = childSchema(s, valueAt(data, at.slice(0, i)), segment);
  }
  return s === undefined ? undefined : resolveUnion(s, valueAt(data, at));
}

/**
 * `port: ${LIS_PORT}` should be a number, as if the value had been written in the file: an
 * unquoted scalar that is exactly one reference takes the type the schema expects there
 * (number or boolean) when its value reads as one. Quoted scalars stay strings.
 */
function coerceBareReferences(schema: ChannelSchema, data: unknown, scalars: readonly InterpolatedScalar[]): void {
  for (const scalar of scalars) {
    if (!scalar.bareReference || scalar.failed) continue;
    const value = valueAt(data, scalar.path);
    const parentPath = scalar.path.slice(0, -1);
    const parent = valueAt(data, parentPath);
    const last = scalar.path[scalar.path.length - 1];
    if (typeof value !== 'string' || last === undefined) continue;
    const expected = schemaAt(schema, data, scalar.path);
    let coerced: unknown = value;
    if (expected instanceof z.ZodNumber && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(value.trim())) coerced = Number(value);
    else if (expected instanceof z.ZodBoolean && (value === 'true' || value === 'false')) coerced = value === 'true';
    if (coerced === value) continue;
    if (Array.isArray(parent) && typeof last === 'number') parent[last] = coerced;
    else if (isRecord(parent) && typeof last === 'string') parent[last] = coerced;
  }
}

// ---------------------------------------------------------------------------------------------
// Zod issues → plain reasons at YAML positions
// ---------------------------------------------------------------------------------------------

interface DescribedIssue {
  at: LineColumn;
  message: string;
  /** The YAML node the issue is about, when it exists. */
  node?: Node;
}

function label(at: YamlPath): string {
  if (at.length === 0) return 'the channel';
  return at.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

/** "source (whatsapp_cloud)", "destinations[1] (fhir_r4)", "destinations[0].retry", "the channel". */
function where(at: YamlPath, data: unknown): string {
  const value = valueAt(data, at);
  const kind = isRecord(value) && typeof value['kind'] === 'string' && at.length > 0 ? ` (${value['kind']})` : '';
  return `${label(at)}${kind}`;
}

function expectedName(expected: string): string {
  const names: Record<string, string> = {
    object: 'a mapping',
    array: 'a list',
    string: 'a string',
    number: 'a number',
    int: 'an integer',
    boolean: 'true or false',
    null: 'empty',
  };
  return names[expected] ?? expected;
}

function describeValue(value: unknown, node: Node | undefined, parsed: ParsedFile): string {
  const interpolated = node === undefined ? undefined : parsed.written.get(node);
  if (interpolated !== undefined) return `a string (from ${interpolated.written})`;
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `the string ${JSON.stringify(shown)}`;
  }
  if (typeof value === 'number') return `${Number.isInteger(value) ? 'the integer' : 'the number'} ${value}`;
  if (typeof value === 'boolean') return `the boolean ${value}`;
  return typeof value;
}

function shownValue(value: unknown, node: Node | undefined, parsed: ParsedFile): string {
  const interpolated = node === undefined ? undefined : parsed.written.get(node);
  if (interpolated !== undefined) return `from ${interpolated.written}`;
  return JSON.stringify(value) ?? String(value);
}

/** "source kind", "destination kind", or the discriminator key of a nested union. */
function kindNoun(at: YamlPath, discriminator: string): string {
  if (at.length === 2 && at[0] === 'source') return 'source kind';
  if (at.length === 3 && at[0] === 'destinations') return 'destination kind';
  return discriminator;
}

function describeZodIssue(issue: z.core.$ZodIssue, parsed: ParsedFile, schema: ChannelSchema): DescribedIssue[] {
  const { doc, lineCounter, data } = parsed;
  const at: YamlPath = issue.path.map((s) => (typeof s === 'number' ? s : String(s)));
  const located = locate(doc, at);
  const node = located.node;
  const value = valueAt(data, at);
  const here = (message: string): DescribedIssue[] => {
    const target = node ?? located.nearest;
    return [{ at: nodePosition(target, lineCounter), message, ...(node === undefined ? {} : { node }) }];
  };
  const parentPath = at.slice(0, -1);
  const lastKey = at[at.length - 1];

  switch (issue.code) {
    case 'unrecognized_keys': {
      const objectSchema = schemaAt(schema, data, at);
      const allowed = objectSchema instanceof z.ZodObject ? Object.keys(objectSchema.shape) : [];
      const map = node;
      return issue.keys.map((key) => {
        const pair = isMap(map) ? findPair(map, key) : undefined;
        const keyNode = pair !== undefined && isScalar(pair.key) ? pair.key : undefined;
        return {
          at: nodePosition(keyNode ?? map, lineCounter),
          message: `unknown key "${key}" in ${where(at, data)}${didYouMean(key, allowed)}; allowed keys: ${allowed.join(', ')}`,
        };
      });
    }

    case 'invalid_union': {
      if (issue.discriminator !== undefined && 'options' in issue && issue.options !== undefined) {
        const kinds = issue.options.map(String);
        const noun = kindNoun(at, issue.discriminator);
        const nested = noun === issue.discriminator ? ` in ${label(parentPath)}` : '';
        if (node === undefined) {
          return here(`missing required key "${String(lastKey)}" in ${where(parentPath, data)}; known ${noun}s: ${kinds.join(', ')}`);
        }
        const shown = typeof value === 'string' ? `"${value}"` : describeValue(value, node, parsed);
        const hint = typeof value === 'string' ? didYouMean(value, kinds) : '';
        return here(`unknown ${noun} ${shown}${nested}${hint}; known ${noun}s: ${kinds.join(', ')}`);
      }
      return here(`${label(at)} matches none of the allowed forms: ${issue.message}`);
    }

    case 'invalid_type': {
      if (node === undefined && value === undefined) {
        return here(`missing required key "${String(lastKey)}" (${expectedName(issue.expected)}) in ${where(parentPath, data)}`);
      }
      if (value === null) return here(`${label(at)} is empty; write ${expectedName(issue.expected)}`);
      return here(`${label(at)} must be ${expectedName(issue.expected)}, not ${describeValue(value, node, parsed)}`);
    }

    case 'too_small': {
      const min = String(issue.minimum);
      if (issue.origin === 'array') {
        return here(
          at.length === 1 && at[0] === 'destinations'
            ? 'a channel needs at least one destination: add one under "destinations"'
            : `${label(at)} must list at least ${min} item${min === '1' ? '' : 's'}`,
        );
      }
      if (issue.origin === 'string') {
        return here(min === '1' ? `${label(at)} must not be empty` : `${label(at)} must be at least ${min} characters long`);
      }
      return here(`${label(at)} must be ${issue.inclusive === false ? 'more than' : 'at least'} ${min} (got ${shownValue(value, node, parsed)})`);
    }

    case 'too_big': {
      const max = String(issue.maximum);
      if (issue.origin === 'array') return here(`${label(at)} must list at most ${max} items`);
      if (issue.origin === 'string') return here(`${label(at)} must be at most ${max} characters long`);
      return here(`${label(at)} must be ${issue.inclusive === false ? 'less than' : 'at most'} ${max} (got ${shownValue(value, node, parsed)})`);
    }

    case 'invalid_format': {
      const zodDefault = /^Invalid string: (.*)$/.exec(issue.message)?.[1];
      const rule = zodDefault ?? (issue.message.startsWith('Invalid') ? `must be a valid ${issue.format}` : `must be ${issue.message}`);
      return here(`${label(at)} ${shownValue(value, node, parsed)} is not valid: it ${rule}`);
    }

    case 'invalid_value': {
      const allowed = issue.values.map((v) => JSON.stringify(v));
      const hint = typeof value === 'string' ? didYouMean(value, issue.values.map(String)) : '';
      return here(`${label(at)} must be ${allowed.length === 1 ? allowed[0] : `one of ${allowed.join(', ')}`}, not ${shownValue(value, node, parsed)}${hint}`);
    }

    case 'not_multiple_of':
      return here(`${label(at)} must be a multiple of ${issue.divisor} (got ${shownValue(value, node, parsed)})`);

    case 'custom':
      return here(issue.message);

    default:
      return here(`${label(at)}: ${issue.message}`);
  }
}
