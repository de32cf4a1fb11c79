/**
 * JSONata mappings: compiled once per file content (the content hash is the mapping version),
 * evaluated with a time budget, errors reported with file:line:column.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import jsonata from 'jsonata';
import { ConfigError, SwitchboardError } from '../core/errors.js';

export interface EvaluateOptions {
  /** Extra `$name` bindings (e.g. `patient`). */
  bindings?: Record<string, unknown>;
  /** The mapping's clock: `$now()` and `$millis()` answer this instant. */
  now?: Date;
  /** Time budget in ms (default 1000). A runaway expression fails with MAPPING_TIMEOUT. */
  timeoutMs?: number;
}

export interface CompiledMapping {
  readonly file: string;
  /** First 12 hex digits of the SHA-256 of the file content. Recorded on every delivery. */
  readonly version: string;
  evaluate(input: unknown, options?: EvaluateOptions): Promise<unknown>;
}

interface JsonataErrorShape {
  code?: string;
  position?: number;
  token?: string;
  message?: string;
}

function isJsonataError(err: unknown): err is JsonataErrorShape {
  return typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'string';
}

/** 1-based line and column of a character offset. */
export function lineColumnAt(text: string, offset: number): { line: number; column: number } {
  const clamped = Math.max(0, Math.min(offset, text.length));
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < clamped; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: clamped - lineStart + 1 };
}

const DEADLINE = '__switchboard_deadline';

export function mappingVersion(source: string): string {
  return createHash('sha256').update(source).digest('hex').slice(0, 12);
}

/** Compiles a mapping; throws ConfigError with file:line:column on a syntax error. */
export function compileMapping(file: string, source: string): CompiledMapping {
  let expr: jsonata.Expression;
  try {
    expr = jsonata(source);
  } catch (err) {
    if (isJsonataError(err)) {
      // JSONata reports the offset just past the offending token; point at the token itself.
      const tokenLength = typeof err.token === 'string' ? err.token.length : 0;
      const at = lineColumnAt(source, Math.max(0, (err.position ?? 0) - tokenLength));
      throw new ConfigError(
        [{ file, ...at, message: `JSONata ${err.code}: ${err.message ?? 'syntax error'}` }],
        'MAPPING_COMPILE',
      );
    }
    throw err;
  }

  // Runaway guard: JSONata evaluation is async but yields only to microtasks, so a timer can
  // never interrupt it. The entry hook checks a per-evaluation deadline bound in the environment.
  expr.assign(Symbol.for('jsonata.__evaluate_entry') as unknown as string, (_e: unknown, _i: unknown, env: { lookup(n: string): unknown }) => {
    const deadline = env.lookup(DEADLINE);
    if (typeof deadline === 'number' && Date.now() > deadline) {
      throw { code: 'SB0001', message: 'the mapping ran past its time budget' };
    }
  });

  const version = mappingVersion(source);
  return {
    file,
    version,
    async evaluate(input, options = {}) {
      const now = options.now ?? new Date();
      const bindings: Record<string, unknown> = {
        ...options.bindings,
        [DEADLINE]: Date.now() + (options.timeoutMs ?? 1000),
        now: () => now.toISOString(),
        millis: () => now.getTime(),
      };
      try {
        return await expr.evaluate(input, bindings);
      } catch (err) {
        if (isJsonataError(err)) {
          const at = typeof err.position === 'number' ? lineColumnAt(source, err.position) : { line: 1, column: 1 };
          const where = `${file}:${at.line}:${at.column}`;
          if (err.code === 'SB0001') {
            throw new SwitchboardError('MAPPING_TIMEOUT', `${where}: ${err.message ?? 'runaway mapping'}`, {
              details: { file, line: at.line, column: at.column, mapping_version: version },
            });
          }
          throw new SwitchboardError('MAPPING_EVALUATE', `${where}: JSONata ${err.code}: ${err.message ?? 'evaluation failed'}`, {
            details: { file, line: at.line, column: at.column, jsonata_code: err.code, mapping_version: version },
          });
        }
        throw new SwitchboardError('MAPPING_EVALUATE', `${file}: ${err instanceof Error ? err.message : String(err)}`, {
          details: { file, mapping_version: version },
          cause: err,
        });
      }
    },
  };
}

/** Reads and compiles a mapping file. */
export async function loadMapping(file: string): Promise<CompiledMapping> {
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'mapping file not found' : `cannot read mapping: ${String(err)}`;
    throw new ConfigError([{ file, line: 1, column: 1, message: reason }], 'MAPPING_COMPILE');
  }
  return compileMapping(file, source);
}
