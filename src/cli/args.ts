/** Argument parsing on node:util parseArgs, with usage errors that exit 2. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * The command was used correctly but could not do its work (no gateway at the address, no admin
 * token found, the gateway refused): one line on stderr, exit 1, no usage text.
 */
export class CommandFailure extends Error {
  override readonly name: string = 'CommandFailure';
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses `argv` for a command; unknown options and missing values become UsageErrors. */
export function parseCommandArgs<O extends Options>(argv: readonly string[], options: O) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new UsageError(message.replace(/\. To specify a positional argument.*$/s, '').replace(/^Unknown option/, 'unknown option'));
  }
}

/** `--binding k=json` values → bindings (a value that is not JSON is taken as a string). */
export function parseBindings(values: readonly string[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of values ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--binding ${item}: write name=value, e.g. --binding patient='{"reference":"Patient/1"}'`);
    const name = item.slice(0, eq);
    const text = item.slice(eq + 1);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--binding ${item}: "${name}" is not a variable name`);
    try {
      out[name] = JSON.parse(text) as unknown;
    } catch {
      out[name] = text;
    }
  }
  return out;
}

/** An ISO 8601 instant with a zone, for --now. */
export function parseNow(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value) || Number.isNaN(Date.parse(value))) {
    throw new UsageError(`--now ${value}: write an ISO 8601 date-time with a zone, e.g. 2025-03-04T09:15:02Z`);
  }
  return new Date(value);
}
