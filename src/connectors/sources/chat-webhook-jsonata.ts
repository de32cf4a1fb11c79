/**
 * `chat_webhook`'s `extract` expression: its syntax check with a position inside the expression
 * (for channel-load errors), and the shape of an evaluation result. Evaluation itself uses the
 * project's JSONata engine (src/mapping/jsonata-mapping.ts), with its time budget.
 */
import { ConfigError } from '../../core/errors.js';
import { compileMapping } from '../../mapping/jsonata-mapping.js';

export type EvaluationResult =
  | { ok: true; value: unknown }
  | { ok: false; code: string; message: string; position?: number | undefined; token?: string | undefined };

export interface JsonataSyntaxError {
  code: string;
  message: string;
  /** 1-based line and column within the expression. */
  line: number;
  column: number;
}

/** Compiles the expression; returns the syntax error with its position, or null. */
export function jsonataSyntaxError(expression: string): JsonataSyntaxError | null {
  try {
    compileMapping('extract', expression);
    return null;
  } catch (err) {
    const issue = err instanceof ConfigError ? err.issues[0] : undefined;
    if (!issue) return { code: 'unknown', message: err instanceof Error ? err.message : String(err), line: 1, column: 1 };
    const m = /^JSONata (\w+): (.*)$/s.exec(issue.message);
    return { code: m?.[1] ?? 'unknown', message: m?.[2] ?? issue.message, line: issue.line, column: issue.column };
  }
}
