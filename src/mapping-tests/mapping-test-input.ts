/**
 * Test inputs: where a body comes from (file, inline json or text, named fixture), and raw
 * webhook bodies turned into canonical messages by the registered source's own parser.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { canonicalMessageSchema, type ParseResult } from '../core/canonical-message.js';
import type { ConnectorRegistry, SourceConnector, SourceInstance } from '../connectors/types.js';

export interface BodyForm {
  file?: string | undefined;
  json?: unknown;
  text?: string | undefined;
  fixture?: string | undefined;
}

export interface ResolvedBody {
  /** The exact bytes (what a webhook would carry). */
  raw: Buffer;
  /** The decoded value: parsed JSON/YAML for .json/.yaml files and `json`, else the text. */
  value: unknown;
  /** Where it came from, for messages. */
  origin: string;
}

/** A problem with a test's input; reported as the case's failure reason. */
export class InputError extends Error {
  override readonly name = 'InputError';
}

export interface InputContext {
  /** The test file (paths are relative to its folder). */
  testFile: string;
  /** Folder that `fixture:` names are relative to. */
  fixturesDir: string;
}

export async function resolveBody(form: BodyForm, ctx: InputContext): Promise<ResolvedBody> {
  if (Object.hasOwn(form, 'json')) {
    const text = JSON.stringify(form.json) ?? 'null';
    return { raw: Buffer.from(text, 'utf8'), value: form.json, origin: 'inline json' };
  }
  if (form.text !== undefined) return { raw: Buffer.from(form.text, 'utf8'), value: form.text, origin: 'inline text' };
  const file =
    form.file !== undefined ? path.resolve(path.dirname(ctx.testFile), form.file) : path.resolve(ctx.fixturesDir, form.fixture ?? '');
  const shown = path.relative(process.cwd(), file) || file;
  let raw: Buffer;
  try {
    raw = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const where = form.file !== undefined ? '(file paths are relative to the test file)' : `(fixtures are looked up in ${path.relative(process.cwd(), ctx.fixturesDir) || '.'}; change it with --fixtures)`;
    throw new InputError(code === 'ENOENT' ? `input file not found: ${shown} ${where}` : `cannot read input ${shown}: ${String(err)}`);
  }
  const text = raw.toString('utf8');
  let value: unknown = text;
  if (/\.json$/i.test(file)) {
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new InputError(`input ${shown} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  } else if (/\.ya?ml$/i.test(file)) {
    try {
      value = parseYaml(text);
    } catch (err) {
      throw new InputError(`input ${shown} is not valid YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  return { raw, value, origin: shown };
}

function unwrapOptional(schema: z.ZodType): { inner: z.ZodType; optional: boolean } {
  let s = schema;
  let optional = false;
  for (let i = 0; i < 16; i++) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPrefault) {
      optional = true;
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodNullable) {
      s = s.unwrap() as z.ZodType;
    } else break;
  }
  return { inner: s, optional };
}

/**
 * A source instance for parsing only: its required settings get placeholder values (parsing
 * does not use secrets). Fails for a source that needs more; such inputs belong in a channel test.
 */
export function sourceForParsing(registry: ConnectorRegistry, kind: string, channelId = 'test'): SourceInstance {
  const connector = registry.sources.find((s) => s.kind === kind) as SourceConnector | undefined;
  if (connector === undefined) {
    throw new InputError(`unknown source kind "${kind}"; known: ${registry.sources.map((s) => s.kind).join(', ')}`);
  }
  // Required settings get placeholders; if the source still refuses (e.g. a token that is
  // required only together with another setting), its optional secrets get placeholders too.
  let parsed = connector.configSchema.safeParse(placeholderConfig(connector, false));
  if (!parsed.success) parsed = connector.configSchema.safeParse(placeholderConfig(connector, true));
  if (!parsed.success) {
    throw new InputError(`the ${kind} source needs settings to parse; test raw ${kind} bodies in a channel test (channels/<name>.test.yaml), or give map --channel`);
  }
  return connector.create(parsed.data, { channelId });
}

function placeholderConfig(connector: SourceConnector, withOptionalSecrets: boolean): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(connector.configSchema.shape as Record<string, z.ZodType>)) {
    const { inner, optional } = unwrapOptional(field);
    if (optional && !(withOptionalSecrets && inner instanceof z.ZodString && /(secret|token|password|key)$/.test(key))) continue;
    if (inner instanceof z.ZodLiteral) config[key] = [...(inner.values as Set<unknown>)][0];
    else if (inner instanceof z.ZodString) config[key] = 'switchboard-test-placeholder';
    else if (inner instanceof z.ZodNumber) config[key] = 1;
    else if (inner instanceof z.ZodBoolean) config[key] = false;
    else if (inner instanceof z.ZodEnum) config[key] = (inner.options as unknown[])[0];
  }
  return config;
}

/** A raw body as the edge decodes it before a source's envelope check: JSON, or a form. */
export function decodeRawBody(source: Pick<SourceInstance, 'bodyFormat'>, raw: Buffer): { ok: true; value: unknown } | { ok: false; reason: string } {
  const text = raw.toString('utf8');
  if (source.bodyFormat === 'form') {
    const record: Record<string, string | string[]> = {};
    for (const [key, value] of new URLSearchParams(text)) {
      const existing = record[key];
      record[key] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
    }
    return { ok: true, value: record };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'the body is not JSON' };
  }
}

/**
 * The source kinds whose edge would accept this raw body (its envelope check passes), among the
 * sources that can parse without a channel. A canonical message matches none of them.
 */
export function detectSources(registry: ConnectorRegistry, raw: Buffer): { kind: string; source: SourceInstance }[] {
  const found: { kind: string; source: SourceInstance }[] = [];
  for (const connector of registry.sources) {
    let source: SourceInstance;
    try {
      source = sourceForParsing(registry, connector.kind);
    } catch {
      continue; // needs real settings (e.g. a JSONata extract): only a channel can tell
    }
    if (source.path === undefined) continue; // pull sources have no webhook bodies
    const decoded = decodeRawBody(source, raw);
    if (decoded.ok && source.checkEnvelope(decoded.value) === null) found.push({ kind: connector.kind, source });
  }
  return found;
}

/** "3 messages (order, sticker, interactive)", "no message (1 status)". */
export function describeParse(result: ParseResult): string {
  const parts: string[] = [];
  if (result.statuses.length > 0) parts.push(`${result.statuses.length} status${result.statuses.length === 1 ? '' : 'es'}`);
  if (result.ignored.length > 0) parts.push(`${result.ignored.length} ignored part${result.ignored.length === 1 ? '' : 's'}`);
  const n = result.messages.length;
  const head = n === 0 ? 'no message' : `${n} message${n === 1 ? '' : 's'} (${result.messages.map((m) => m.kind).join(', ')})`;
  return parts.length === 0 ? head : `${head}; ${parts.join(', ')}`;
}

export type MappingInputValue = { kind: 'value'; value: unknown; origin: string } | { kind: 'no_message'; origin: string; reason: string };

/** Picks message `index` (or the only one) of a parse result. */
export function pickMessage(result: ParseResult, index: number | undefined, origin: string): MappingInputValue {
  const n = result.messages.length;
  if (n === 0) return { kind: 'no_message', origin, reason: `the webhook holds ${describeParse(result)}` };
  if (index === undefined && n > 1) {
    throw new InputError(`the webhook holds ${describeParse(result)}: say which with input.message (0 to ${n - 1})`);
  }
  const message = result.messages[index ?? 0];
  if (message === undefined) throw new InputError(`input.message is ${index}, but the webhook holds ${describeParse(result)}`);
  return { kind: 'value', value: message, origin: `${origin}, message ${index ?? 0} (${message.kind})` };
}

/**
 * A canonical message written by hand (it has `schema_version`) is checked like a parsed one,
 * defaults filled in; any other value is passed as written.
 */
export function checkCanonical(value: unknown, origin: string): unknown {
  if (typeof value !== 'object' || value === null || !('schema_version' in value)) return value;
  const parsed = canonicalMessageSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length === 0 ? '(message)' : i.path.map(String).join('.')}: ${i.message}`)
    .join('; ');
  throw new InputError(`${origin} is not a valid canonical message: ${problems}`);
}
