/**
 * Test files (mapping and channel tests) as YAML with positions: parse errors and schema
 * problems become ConfigIssues at file:line:column, like channel files.
 */
import { didYouMean } from '../core/did-you-mean.js';
import { describeIndentation } from '../core/yaml-indentation.js';
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import { z } from 'zod';
import type { ConfigIssue } from '../core/errors.js';

export type YamlPath = readonly (string | number)[];

export interface PositionedYaml {
  file: string;
  data: unknown;
  /** Line and column of the node at `path` (or of its nearest existing parent). */
  at(path: YamlPath): { line: number; column: number };
  /** Line and column of the key of the last segment of `path` (e.g. an unknown key). */
  keyAt(path: YamlPath): { line: number; column: number };
}

export type ParsedYaml = { ok: true; yaml: PositionedYaml } | { ok: false; issues: ConfigIssue[] };

export function parseYamlWithPositions(file: string, source: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const issues: ConfigIssue[] = [];
  const firstSyntax = doc.errors.find((e) => e.code !== 'DUPLICATE_KEY');
  for (const err of doc.errors.filter((e) => e.code === 'DUPLICATE_KEY' || e === firstSyntax)) {
    const indentation = err.code === 'DUPLICATE_KEY' ? undefined : describeIndentation({ code: err.code, linePos: [lineCounter.linePos(err.pos[0])] }, source);
    if (indentation !== undefined) {
      issues.push({ file, line: indentation.line, column: indentation.column, message: indentation.message });
      continue;
    }
    const { line, col } = lineCounter.linePos(err.pos[0]);
    const message =
      err.code === 'DUPLICATE_KEY'
        ? 'duplicate key: a key may appear only once in a mapping; remove or merge the repeated one'
        : `YAML syntax error: ${(err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`;
    issues.push({ file, line, column: col, message });
  }
  if (issues.length > 0) return { ok: false, issues };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, issues: [{ file, line: 1, column: 1, message: `cannot expand YAML aliases: ${err instanceof Error ? err.message : String(err)}` }] };
  }
  return {
    ok: true,
    yaml: {
      file,
      data,
      at(path) {
        const { node, nearest } = locate(doc, path);
        const offset = (node ?? nearest)?.range?.[0] ?? 0;
        const { line, col } = lineCounter.linePos(offset);
        return { line, column: col };
      },
      keyAt(path) {
        const parent = locate(doc, path.slice(0, -1)).node;
        const last = path[path.length - 1];
        const pair = isMap(parent) && typeof last === 'string' ? findPair(parent, last) : undefined;
        const offset = (pair !== undefined && isScalar(pair.key) ? pair.key.range?.[0] : undefined) ?? locate(doc, path).nearest?.range?.[0] ?? 0;
        const { line, col } = lineCounter.linePos(offset);
        return { line, column: col };
      },
    },
  };
}

function findPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p): p is Pair => isPair(p) && isScalar(p.key) && String(p.key.value) === key);
}

function locate(doc: Document, path: YamlPath): { node: Node | undefined; nearest: Node | undefined } {
  const resolve = (n: unknown): unknown => (isAlias(n) ? n.resolve(doc) : n);
  let current = resolve(doc.contents) as Node | undefined;
  for (const segment of path) {
    let next: unknown;
    if (isMap(current) && typeof segment === 'string') next = findPair(current, segment)?.value;
    else if (isSeq(current) && typeof segment === 'number') next = current.items[segment];
    next = resolve(next);
    if (next === undefined || next === null) {
      // A key written with no value: point at the key.
      if (isMap(current) && typeof segment === 'string') {
        const pair = findPair(current, segment);
        if (pair !== undefined && isScalar(pair.key)) return { node: undefined, nearest: pair.key };
      }
      return { node: undefined, nearest: current };
    }
    current = next as Node;
  }
  return { node: current, nearest: current };
}

function label(path: YamlPath): string {
  if (path.length === 0) return 'the file';
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (let i = 0; i < 32; i++) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodPipe) s = s.in as z.ZodType;
    else break;
  }
  return s;
}

function schemaAt(root: z.ZodType, path: YamlPath): z.ZodType | undefined {
  let s: z.ZodType | undefined = unwrap(root);
  for (const segment of path) {
    if (s instanceof z.ZodObject && typeof segment === 'string') s = s.shape[segment] as z.ZodType | undefined;
    else if (s instanceof z.ZodArray && typeof segment === 'number') s = s.element as z.ZodType;
    else if (s instanceof z.ZodRecord) s = s.valueType as z.ZodType;
    else return undefined;
    if (s !== undefined) s = unwrap(s);
  }
  return s;
}

function valueAt(data: unknown, path: YamlPath): unknown {
  let current = data;
  for (const segment of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string | number, unknown>)[segment];
  }
  return current;
}

const typeNames: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

/** Zod issues of `schema` on `yaml.data` → plain reasons at the YAML positions. */
export function describeSchemaIssues(yaml: PositionedYaml, schema: z.ZodType, error: z.ZodError, what: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map((s) => (typeof s === 'number' ? s : String(s)));
    const here = (message: string, at: YamlPath = path): void => {
      issues.push({ file: yaml.file, ...yaml.at(at), message });
    };
    const value = valueAt(yaml.data, path);
    switch (issue.code) {
      case 'unrecognized_keys': {
        const objectSchema = schemaAt(schema, path);
        const allowed = objectSchema instanceof z.ZodObject ? Object.keys(objectSchema.shape) : [];
        for (const key of issue.keys) {
          issues.push({
            file: yaml.file,
            ...yaml.keyAt([...path, key]),
            message: `unknown key "${key}" in ${path.length === 0 ? what : label(path)}${didYouMean(key, allowed)}; allowed keys: ${allowed.join(', ')}`,
          });
        }
        break;
      }
      case 'invalid_type':
        if (value === undefined) here(`missing required key "${String(path[path.length - 1])}" (${typeNames[issue.expected] ?? issue.expected}) in ${label(path.slice(0, -1))}`);
        else if (value === null) here(`${label(path)} is empty; write ${typeNames[issue.expected] ?? issue.expected}`);
        else here(`${label(path)} must be ${typeNames[issue.expected] ?? issue.expected}, not ${Array.isArray(value) ? 'a list' : typeof value === 'object' ? 'a mapping' : JSON.stringify(value)}`);
        break;
      case 'invalid_value':
        here(`${label(path)} must be ${issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`}, not ${JSON.stringify(value)}${typeof value === 'string' ? didYouMean(value, issue.values.map(String)) : ''}`);
        break;
      case 'too_small':
        here(issue.origin === 'array' ? `${label(path)} must list at least ${String(issue.minimum)} item${issue.minimum === 1 ? '' : 's'}` : issue.origin === 'string' ? `${label(path)} must not be empty` : `${label(path)} must be at least ${String(issue.minimum)}`);
        break;
      case 'invalid_format':
        here(`${label(path)} ${JSON.stringify(value)} is not valid: ${issue.message}`);
        break;
      default:
        here(path.length === 0 ? issue.message : `${label(path)}: ${issue.message}`);
    }
  }
  return issues;
}
