/**
 * Checks one `expect` block against what a mapping (or a destination's render) produced.
 * Returns the failure reasons; an empty list is a pass.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import jsonata from 'jsonata';
import { SwitchboardError } from '../core/errors.js';
import { outboundMessageSchema } from '../core/outbound.js';
import { validateFhirResource } from '../fhir/validate-resource.js';
import { compileMapping } from '../mapping/jsonata-mapping.js';
import { diffContains, diffEquals, formatDifferences, normaliseText, show } from './mapping-test-diff.js';
import { checkHl7Message } from './mapping-test-hl7.js';
import { evaluateHint } from './mapping-test-hints.js';
import { locateOutputElement } from '../mapping/output-position.js';
import type { Expectation } from './mapping-test-schema.js';
import type { YamlPath } from './mapping-test-yaml.js';

export type Outcome =
  | { kind: 'output'; value: unknown }
  | { kind: 'dropped'; reason: string }
  | { kind: 'error'; error: unknown };

export interface MappingSource {
  file: string;
  source: string;
}

export interface ExpectContext {
  testFile: string;
  at(path: YamlPath): { line: number; column: number };
  /** Path of this expect block in the test file. */
  expectPath: YamlPath;
  /** `$input` of assertions. */
  input: unknown;
  /** The mapping, to point output problems at its lines. */
  mapping?: MappingSource | undefined;
  /** `--update`: rewrite golden files instead of comparing. */
  update: boolean;
  /** Golden files written by this check. */
  written: string[];
}

function shownPath(file: string): string {
  return path.relative(process.cwd(), file) || file;
}

/** `file:line:column: ` of a mapping position, or ''. */
function mappingPosition(mapping: MappingSource | undefined, elementPath: string): string {
  if (mapping === undefined) return '';
  const at = locateOutputElement(mapping.source, elementPath);
  return at === undefined ? '' : `${shownPath(mapping.file)}:${at.line}:${at.column}: `;
}

/** One readable paragraph for an error a mapping or destination threw. */
export function describeFailure(error: unknown, mapping?: MappingSource): string {
  if (error instanceof SwitchboardError) {
    if (error.code === 'MAPPING_OUTPUT_INVALID') {
      const issues = Array.isArray(error.details['issues']) ? (error.details['issues'] as unknown[]).map(String) : [];
      const lines = issues.map((issue) => `      ${mappingPosition(mapping, issue.split(':')[0] ?? '')}${issue}`);
      return `${error.code}: ${error.message}${lines.length > 0 ? `\n${lines.join('\n')}` : ''}\n      fix the mapping so its output is valid (the positions point at the keys that build those elements)`;
    }
    if (error.code === 'MAPPING_EVALUATE' || error.code === 'MAPPING_TIMEOUT') {
      const jsonataCode = typeof error.details['jsonata_code'] === 'string' ? error.details['jsonata_code'] : error.code === 'MAPPING_TIMEOUT' ? 'SB0001' : undefined;
      return `${error.code}: ${error.message}\n      what to do: ${evaluateHint(jsonataCode)}`;
    }
    return `${error.code}: ${error.message}`;
  }
  return `unexpected ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
}

function errorCodes(error: unknown): string[] {
  if (error instanceof SwitchboardError) {
    const jsonataCode = error.details['jsonata_code'];
    return [error.code, ...(typeof jsonataCode === 'string' ? [jsonataCode] : [])];
  }
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? [code] : [];
}

function goldenText(value: unknown, file: string): string {
  if (typeof value === 'string' && !/\.json$/i.test(file)) return `${normaliseText(value)}\n`;
  return `${JSON.stringify(value, null, 2)}\n`;
}

async function checkGolden(file: string, actual: unknown, ctx: ExpectContext): Promise<string[]> {
  const absolute = path.resolve(path.dirname(ctx.testFile), file);
  const shown = shownPath(absolute);
  let existing: string | undefined;
  try {
    existing = await readFile(absolute, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return [`equals_file: cannot read ${shown}: ${String(err)}`];
  }
  const wanted = goldenText(actual, absolute);
  if (ctx.update) {
    if (existing !== wanted) {
      await mkdir(path.dirname(absolute), { recursive: true });
      await writeFile(absolute, wanted);
      ctx.written.push(absolute);
    }
    return [];
  }
  if (existing === undefined) return [`equals_file: ${shown} does not exist; run \`switchboard test --update\` to write it from the current output`];
  let expected: unknown = existing;
  if (/\.json$/i.test(absolute)) {
    try {
      expected = JSON.parse(existing);
    } catch (err) {
      return [`equals_file: ${shown} is not valid JSON (${err instanceof Error ? err.message : String(err)}); rewrite it with --update`];
    }
  } else if (typeof actual !== 'string') {
    try {
      expected = JSON.parse(existing);
    } catch {
      expected = existing;
    }
  }
  const differences = diffEquals(expected, actual);
  if (differences.length === 0) return [];
  return [`equals_file: the output differs from ${shown} (run \`switchboard test --update\` if the change is intended)\n${formatDifferences(differences)}`];
}

const COMPARISONS = new Set(['=', '!=', '<', '<=', '>', '>=', 'in']);

/**
 * For a false comparison, what each side actually is: "; status is "done"". Each side is cut
 * from the predicate at the operator the parser found, and evaluated on the output alone.
 */
async function actualSides(predicate: string, output: unknown, ctx: ExpectContext): Promise<string> {
  let ast: { type?: unknown; value?: unknown; position?: unknown };
  try {
    ast = jsonata(predicate).ast() as typeof ast;
  } catch {
    return '';
  }
  if (ast.type !== 'binary' || typeof ast.value !== 'string' || !COMPARISONS.has(ast.value) || typeof ast.position !== 'number') return '';
  const operatorStart = ast.position - ast.value.length;
  const sides = [predicate.slice(0, operatorStart).trim(), predicate.slice(ast.position).trim()];
  const shown: string[] = [];
  for (const side of sides) {
    // Literals say themselves; only paths and calls are worth showing.
    if (side === '' || /^(['"]).*\1$|^-?\d+(\.\d+)?$|^(true|false|null)$/.test(side)) continue;
    try {
      const value = await compileMapping(`${ctx.testFile}#assert`, side).evaluate(output, { bindings: { input: ctx.input } });
      shown.push(`${side} is ${value === undefined ? 'missing (no such field in the output)' : show(value)}`);
    } catch {
      /* a side that does not evaluate alone: say nothing about it */
    }
  }
  return shown.length === 0 ? '' : `; ${shown.join(', ')}`;
}

async function checkAssertions(assertions: readonly string[], output: unknown, ctx: ExpectContext): Promise<string[]> {
  const reasons: string[] = [];
  for (const [index, predicate] of assertions.entries()) {
    const at = ctx.at([...ctx.expectPath, 'assert', index]);
    const label = `assert[${index}] (${shownPath(ctx.testFile)}:${at.line})`;
    let result: unknown;
    try {
      const compiled = compileMapping(`${ctx.testFile}#assert`, predicate);
      result = await compiled.evaluate(output, { bindings: { input: ctx.input } });
    } catch (err) {
      const message = err instanceof Error ? err.message.replace(/^.*#assert:(\d+:\d+: )?/, '') : String(err);
      reasons.push(`${label} ${predicate}: cannot be evaluated: ${message}`);
      continue;
    }
    if (result === true) continue;
    reasons.push(
      typeof result === 'boolean'
        ? `${label} is false: ${predicate}${await actualSides(predicate, output, ctx)}`
        : `${label} gave ${show(result)}, not true or false: ${predicate} (a predicate must be a comparison, e.g. status = 'completed')`,
    );
  }
  return reasons;
}

export async function checkExpectation(expect: Expectation, outcome: Outcome, ctx: ExpectContext): Promise<string[]> {
  const wantsError = Object.hasOwn(expect, 'error');
  if (outcome.kind === 'error') {
    if (!wantsError) return [describeFailure(outcome.error, ctx.mapping)];
    const reasons: string[] = [];
    const codes = errorCodes(outcome.error);
    const message = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
    if (expect.error?.code !== undefined && !codes.includes(expect.error.code)) {
      reasons.push(`error: expected code ${expect.error.code}, got ${codes.join(' / ') || 'no code'}: ${message}`);
    }
    if (expect.error?.message_contains !== undefined && !message.includes(expect.error.message_contains)) {
      reasons.push(`error: the message does not contain ${JSON.stringify(expect.error.message_contains)}: ${message}`);
    }
    return reasons;
  }
  if (wantsError) {
    return [`error: expected a failure, but ${outcome.kind === 'dropped' ? `nothing was sent (${outcome.reason})` : `the output was ${show(outcome.value)}`}`];
  }
  if (outcome.kind === 'dropped') {
    if (expect.dropped === true) return [];
    return [`expected output, but nothing is sent: ${outcome.reason}`];
  }
  if (expect.dropped === true) return [`dropped: expected nothing to be sent, but the output was ${show(outcome.value)}`];

  const output = outcome.value;
  const reasons: string[] = [];
  if (Object.hasOwn(expect, 'equals')) {
    const differences = diffEquals(expect.equals, output);
    if (differences.length > 0) reasons.push(`equals: ${differences.length} difference${differences.length === 1 ? '' : 's'}\n${formatDifferences(differences)}`);
  }
  if (expect.equals_file !== undefined) reasons.push(...(await checkGolden(expect.equals_file, output, ctx)));
  if (Object.hasOwn(expect, 'contains')) {
    const differences = diffContains(expect.contains, output);
    if (differences.length > 0) reasons.push(`contains: ${differences.length} difference${differences.length === 1 ? '' : 's'}\n${formatDifferences(differences)}`);
  }
  if (expect.assert !== undefined) reasons.push(...(await checkAssertions(expect.assert, output, ctx)));
  if (expect.fhir_valid !== undefined) {
    const verdict = validateFhirResource(output, expect.fhir_valid);
    if (!verdict.ok) {
      const lines = verdict.issues.map((issue) => `      ${mappingPosition(ctx.mapping, issue.split(':')[0] ?? '')}${issue}`);
      reasons.push(`fhir_valid: the output is not a valid ${expect.fhir_valid} (${verdict.issues.length} issue${verdict.issues.length === 1 ? '' : 's'})\n${lines.join('\n')}`);
    }
  }
  if (expect.hl7_valid !== undefined) {
    const issues = checkHl7Message(output, expect.hl7_valid);
    if (issues.length > 0) reasons.push(`hl7_valid: not a valid ${expect.hl7_valid} message\n${issues.map((i) => `      ${i}`).join('\n')}`);
  }
  if (expect.outbound_valid === true) {
    const parsed = outboundMessageSchema.safeParse(output);
    if (!parsed.success) {
      const lines = parsed.error.issues.map((i) => `      OutboundMessage${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}: ${i.message}`);
      reasons.push(`outbound_valid: the output is not a valid OutboundMessage (${lines.length} issue${lines.length === 1 ? '' : 's'})\n${lines.join('\n')}`);
    }
  }
  return reasons;
}
