/**
 * `${VAR}` interpolation in channel files, applied to string scalars of a parsed YAML document
 * so that every problem keeps the position of the scalar it came from.
 *
 *   ${VAR}           the value of VAR; an issue when VAR is not set
 *   ${VAR:-default}  the value of VAR, or `default` when VAR is unset or empty
 *   $${              a literal `${`
 *
 * Variable names are `[A-Z_][A-Z0-9_]*`. Keys are never interpolated. Keys that name secrets
 * (ending in secret, token, password or key) must be written as a bare `${VAR}`: secrets are
 * read from the environment only, never from the file. The environment is always passed in.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, Scalar, type Document, type LineCounter, type Node } from 'yaml';
import type { ConfigIssue, ErrorCode } from '../core/errors.js';

/** A ConfigIssue with the error code it would be thrown under. */
export interface ChannelIssue extends ConfigIssue {
  code: ErrorCode;
}

export type Env = Readonly<Record<string, string | undefined>>;

const NAME = /^[A-Z_][A-Z0-9_]*$/;
const BARE_REFERENCE = /^\$\{[A-Z_][A-Z0-9_]*\}$/;

/** Keys whose values are secrets and must come from the environment. */
export function isSecretKey(key: string): boolean {
  return /(secret|token|password|key)$/i.test(key);
}

export interface InterpolationProblem {
  /** Offset of the offending `${` in the original string. */
  offset: number;
  code: ErrorCode;
  message: string;
}

export interface InterpolationResult {
  value: string;
  problems: InterpolationProblem[];
  /** Names of the variables referenced (resolved or not). */
  references: string[];
}

/** Interpolates one string. Unresolvable references are left as written and reported. */
export function interpolateString(text: string, env: Env): InterpolationResult {
  const problems: InterpolationProblem[] = [];
  const references: string[] = [];
  let value = '';
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      value += '${';
      i += 3;
      continue;
    }
    if (!text.startsWith('${', i)) {
      value += text[i];
      i++;
      continue;
    }
    const close = text.indexOf('}', i + 2);
    if (close === -1) {
      problems.push({
        offset: i,
        code: 'CONFIG_INVALID',
        message: 'unclosed "${": end the reference with "}", or write "$${" for a literal "${"',
      });
      value += text.slice(i);
      break;
    }
    const written = text.slice(i, close + 1);
    const inner = text.slice(i + 2, close);
    const dash = inner.indexOf(':-');
    const name = dash === -1 ? inner : inner.slice(0, dash);
    const fallback = dash === -1 ? undefined : inner.slice(dash + 2);
    const problem = referenceProblem(written, name, fallback);
    if (problem !== undefined) {
      problems.push({ offset: i, code: 'CONFIG_INVALID', message: problem });
      value += written;
    } else {
      references.push(name);
      const set = env[name];
      if (fallback !== undefined && (set === undefined || set === '')) {
        value += fallback;
      } else if (set === undefined) {
        problems.push({ offset: i, code: 'CONFIG_ENV_MISSING', message: `environment variable ${name} is not set` });
        value += written;
      } else {
        value += set;
      }
    }
    i = close + 1;
  }
  return { value, problems, references };
}

function referenceProblem(written: string, name: string, fallback: string | undefined): string | undefined {
  if (name === '') return `"${written}" names no variable: write \${NAME} or \${NAME:-default}, or "$\${" for a literal "\${"`;
  if (fallback?.includes('${')) return `"${written}": a default value cannot contain another reference`;
  if (NAME.test(name)) return undefined;
  const colon = name.indexOf(':');
  if (colon > 0 && NAME.test(name.slice(0, colon))) {
    return `"${written}" is not a valid reference: write \${${name.slice(0, colon)}:-${name.slice(colon + 1)}} for a default value`;
  }
  return `"${written}" is not a valid reference: variable names are upper-case letters, digits and _ (e.g. \${FHIR_BASE_URL}); write "$\${" for a literal "\${"`;
}

/** 1-based line and column. */
export interface LineColumn {
  line: number;
  column: number;
}

/** Position of a node's first character. */
export function nodePosition(node: Node | null | undefined, lineCounter: LineCounter): LineColumn {
  const offset = node?.range?.[0] ?? 0;
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/**
 * Position of the character at `valueOffset` in the value of a scalar as written in `source`.
 * Exact for plain and quoted scalars written on one line without escapes and for literal block
 * scalars (`|`); otherwise the scalar's start.
 */
export function scalarPosition(node: Scalar, value: string, valueOffset: number, source: string, lineCounter: LineCounter): LineColumn {
  const [start, end] = node.range ?? [0, 0];
  const raw = source.slice(start, end);
  const at = (offset: number): LineColumn => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  switch (node.type) {
    case Scalar.PLAIN:
      return raw === value ? at(start + valueOffset) : at(start);
    case Scalar.QUOTE_SINGLE:
    case Scalar.QUOTE_DOUBLE:
      return raw.slice(1, -1) === value ? at(start + 1 + valueOffset) : at(start);
    case Scalar.BLOCK_LITERAL: {
      const headerEnd = raw.indexOf('\n');
      if (headerEnd === -1) return at(start);
      const before = value.slice(0, valueOffset).split('\n');
      const lineIndex = before.length - 1;
      const column = before[lineIndex]?.length ?? 0;
      const sourceLines = raw.slice(headerEnd + 1).split('\n');
      const indent = sourceLines.find((l) => l.trim() !== '')?.search(/\S/) ?? 0;
      const valueLine = value.split('\n')[lineIndex] ?? '';
      const sourceLine = sourceLines[lineIndex];
      if (sourceLine === undefined || sourceLine.slice(indent) !== valueLine) return at(start);
      let offset = start + headerEnd + 1;
      for (let l = 0; l < lineIndex; l++) offset += (sourceLines[l]?.length ?? 0) + 1;
      return at(offset + indent + column);
    }
    default:
      return at(start);
  }
}

export type YamlPath = (string | number)[];

/** A string scalar that contained at least one `${...}` reference. */
export interface InterpolatedScalar {
  node: Scalar;
  path: YamlPath;
  /** The value as written in the file (never a secret: secrets are references). */
  written: string;
  /** True for an unquoted scalar that is exactly one reference, e.g. `port: ${LIS_PORT}`. */
  bareReference: boolean;
  /** True when a problem was reported for this scalar. */
  failed: boolean;
}

export interface DocumentInterpolation {
  issues: ChannelIssue[];
  scalars: InterpolatedScalar[];
}

export interface InterpolateDocumentOptions {
  env: Env;
  /** File name used in issues. */
  file: string;
  /** The document's source text. */
  source: string;
  lineCounter: LineCounter;
}

/**
 * Interpolates every string scalar value of `doc` in place and checks the secret rule.
 * Returns the issues (with positions) and the scalars that held references.
 */
export function interpolateDocument(doc: Document, options: InterpolateDocumentOptions): DocumentInterpolation {
  const { env, file, source, lineCounter } = options;
  const issues: ChannelIssue[] = [];
  const scalars: InterpolatedScalar[] = [];
  // An alias may point at a scalar interpolated earlier; the secret rule looks at the text as written.
  const writtenValues = new Map<Scalar, string>();

  const interpolate = (node: Scalar, path: YamlPath): void => {
    if (typeof node.value !== 'string' || !node.value.includes('$')) return;
    const written = node.value;
    const result = interpolateString(written, env);
    if (result.value === written && result.problems.length === 0 && result.references.length === 0) return;
    writtenValues.set(node, written);
    for (const problem of result.problems) {
      issues.push({ file, ...scalarPosition(node, written, problem.offset, source, lineCounter), message: problem.message, code: problem.code });
    }
    node.value = result.value;
    scalars.push({
      node,
      path,
      written,
      bareReference: node.type === Scalar.PLAIN && /^\$\{[^}]*\}$/.test(written) && result.references.length === 1,
      failed: result.problems.length > 0,
    });
  };

  const checkSecret = (key: string, value: unknown): void => {
    const target = isAlias(value) ? value.resolve(doc) : value;
    if (!isScalar(target) || target.value === null) return;
    const written = writtenValues.get(target) ?? target.value;
    if (typeof written === 'string' && BARE_REFERENCE.test(written)) return;
    const hasDefault = typeof written === 'string' && /^\$\{[A-Z_][A-Z0-9_]*:-[^}]*\}$/.test(written);
    issues.push({
      file,
      ...nodePosition(target, lineCounter),
      code: 'CONFIG_INVALID',
      message: hasDefault
        ? `"${key}" is a secret and cannot have a default in the file: write secrets as \${VAR}; secrets are read from the environment only`
        : `"${key}" is a secret: write secrets as \${VAR}; secrets are read from the environment only`,
    });
  };

  const walk = (node: unknown, path: YamlPath): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        if (isSecretKey(key)) checkSecret(key, pair.value);
        walk(pair.value, [...path, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, index) => walk(item, [...path, index]));
    } else if (isScalar(node)) {
      interpolate(node, path);
    }
  };

  walk(doc.contents, []);
  return { issues, scalars };
}
