/**
 * JSONata mappings: compiled once per file content (the content hash is the mapping version),
 * evaluated with a time budget, errors reported with file:line:column.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import jsonata from 'jsonata';
import { ConfigError, SwitchboardError, type ConfigIssue, type SourcePosition } from '../core/errors.js';
import { shownFile } from './mapping-output-error.js';
import { lineColumnAt, locateOutputElement } from './output-position.js';
import { mappingFunctions } from './functions/library.js';
import { TableCache, TableError } from './functions/lookup-table.js';

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
  /**
   * First 12 hex digits of the SHA-256 of the file content (and of the code tables it reads
   * with `$lookupTable`, when it names any). Recorded on every delivery.
   */
  readonly version: string;
  /** Absolute paths of the other files this mapping read when compiled (its code tables); watch them too. */
  readonly dependencies?: readonly string[];
  evaluate(input: unknown, options?: EvaluateOptions): Promise<unknown>;
  /**
   * Where in the mapping file the key that builds an output element is (`Communication.status`
   * → the `'status':` key), when one fits; for problems with the output.
   */
  locate?(elementPath: string): SourcePosition | undefined;
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

const DEADLINE = '__switchboard_deadline';

export function mappingVersion(source: string): string {
  return createHash('sha256').update(source).digest('hex').slice(0, 12);
}

/** Literal table names of `$lookupTable('name', ...)` calls, with the offset of the name literal. */
function literalTableNames(ast: unknown): { name: string; start: number }[] {
  const found: { name: string; start: number }[] = [];
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
      return;
    }
    if (typeof node !== 'object' || node === null) return;
    const n = node as { type?: unknown; procedure?: { type?: unknown; value?: unknown }; arguments?: unknown[] };
    if (n.type === 'function' && n.procedure?.type === 'variable' && n.procedure.value === 'lookupTable') {
      const first = n.arguments?.[0] as { type?: unknown; value?: unknown; position?: unknown } | undefined;
      if (first?.type === 'string' && typeof first.value === 'string' && typeof first.position === 'number') {
        // JSONata positions point just past the token; a string token has its two quotes.
        found.push({ name: first.value, start: Math.max(0, first.position - first.value.length - 2) });
      }
    }
    for (const value of Object.values(node)) if (typeof value === 'object') visit(value);
  };
  visit(ast);
  return found;
}

/**
 * Compiles a mapping; throws ConfigError with file:line:column on a syntax error or on a code
 * table (named as a literal in `$lookupTable`) that is missing or invalid. The helper functions
 * of `./functions/library.ts` are registered in every compiled mapping.
 */
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

  // The helper-function library, and the code tables named as literals (read now, once).
  const tables = new TableCache(file);
  for (const fn of mappingFunctions) {
    expr.registerFunction(fn.name, fn.create({ file, tables }) as (...args: unknown[]) => unknown, fn.signature);
  }
  const tableIssues: ConfigIssue[] = [];
  for (const { name, start } of literalTableNames(expr.ast())) {
    try {
      tables.get(name);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      for (const issue of err.issues) {
        // Problems inside a table file point into it; "not found" points at the name in the mapping.
        tableIssues.push(issue.file === file ? { ...issue, ...lineColumnAt(source, start) } : issue);
      }
    }
  }
  if (tableIssues.length > 0) throw new ConfigError(tableIssues, 'MAPPING_COMPILE');
  const usedTables = tables.loaded();

  // Runaway guard: JSONata evaluation is async but yields only to microtasks, so a timer can
  // never interrupt it. The entry hook checks a per-evaluation deadline bound in the environment.
  expr.assign(Symbol.for('jsonata.__evaluate_entry') as unknown as string, (_e: unknown, _i: unknown, env: { lookup(n: string): unknown }) => {
    const deadline = env.lookup(DEADLINE);
    if (typeof deadline === 'number' && Date.now() > deadline) {
      throw { code: 'SB0001', message: 'the mapping ran past its time budget' };
    }
  });

  const version =
    usedTables.length === 0 ? mappingVersion(source) : mappingVersion([source, ...usedTables.map((t) => `${t.name}\0${t.content}`)].join('\0'));
  return {
    file,
    version,
    ...(usedTables.length === 0 ? {} : { dependencies: usedTables.map((t) => t.file) }),
    locate(elementPath) {
      const at = locateOutputElement(source, elementPath);
      return at === undefined ? undefined : { file, ...at };
    },
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
          const at = typeof err.position === 'number' ? lineColumnAt(source, runtimeOffset(source, err)) : { line: 1, column: 1 };
          const where = `${shownFile(file)}:${at.line}:${at.column}`;
          if (err.code === 'SB0001') {
            throw new SwitchboardError('MAPPING_TIMEOUT', `${where}: ${err.message ?? 'runaway mapping'}`, {
              details: { file, line: at.line, column: at.column, mapping_version: version },
            });
          }
          throw new SwitchboardError('MAPPING_EVALUATE', `${where}: JSONata ${err.code}: ${err.message ?? 'evaluation failed'}`, {
            details: { file, line: at.line, column: at.column, jsonata_code: err.code, mapping_version: version },
          });
        }
        throw new SwitchboardError('MAPPING_EVALUATE', `${shownFile(file)}: ${err instanceof Error ? err.message : String(err)}`, {
          details: { file, mapping_version: version },
          cause: err,
        });
      }
    },
  };
}

/**
 * JSONata reports the offset just past the token an evaluation error is about; point at the
 * token itself when the source there is that token (an operator, a name).
 */
function runtimeOffset(source: string, err: JsonataErrorShape): number {
  const position = err.position ?? 0;
  const token = typeof err.token === 'string' ? err.token : '';
  if (token === '') return position;
  if (source.slice(position - token.length, position) === token) return position - token.length;
  // A function call: the position is just past "$name(".
  if (source.slice(position - token.length - 1, position) === `${token}(`) {
    const start = position - token.length - 1;
    return source[start - 1] === '$' ? start - 1 : start;
  }
  return position;
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
