/**
 * Synchronous evaluation of a JSONata expression, for `chat_webhook`'s `extract`.
 *
 * Why: `SourceInstance.parse()` is synchronous, and JSONata 2 only evaluates asynchronously. The
 * expression therefore runs in a worker thread while the caller blocks on `Atomics.wait` and
 * takes the answer with `receiveMessageOnPort` (the technique of the `synckit` package, in 60
 * lines). A side effect is a real time budget: a runaway expression is terminated with its worker,
 * which an in-thread evaluation cannot do. If `parse()` may one day return a Promise, this module
 * can be replaced by a plain `await expr.evaluate()`.
 *
 * One worker per evaluator (no module-level state), started on first use, unref'd, and stopped
 * after a minute without work.
 */
import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import jsonata from 'jsonata';

export type EvaluationResult =
  | { ok: true; value: unknown }
  | { ok: false; code: string; message: string; position?: number | undefined; token?: string | undefined };

export interface SyncJsonataEvaluator {
  /** Evaluates with `$received_at` and `$channel_id` bound; `$now()`/`$millis()` answer the received time. */
  evaluate(input: unknown, bindings: { received_at: string; channel_id: string }): EvaluationResult;
  close(): void;
}

export interface JsonataSyntaxError {
  code: string;
  message: string;
  /** 1-based line and column within the expression. */
  line: number;
  column: number;
}

function isJsonataError(err: unknown): err is { code: string; message?: string; position?: number; token?: string } {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string';
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: (lines[lines.length - 1]?.length ?? 0) + 1 };
}

/** Compiles the expression on this thread; returns the syntax error with its position, or null. */
export function jsonataSyntaxError(expression: string): JsonataSyntaxError | null {
  try {
    jsonata(expression);
    return null;
  } catch (err) {
    if (!isJsonataError(err)) return { code: 'unknown', message: String(err), line: 1, column: 1 };
    // JSONata reports the offset just past the offending token; point at the token itself.
    const tokenLength = typeof err.token === 'string' ? err.token.length : 0;
    return { code: err.code, message: err.message ?? 'syntax error', ...lineColumn(expression, (err.position ?? 0) - tokenLength) };
  }
}

/** Runs in the worker (CommonJS, evaluated from this string so it works from .ts, tests and builds alike). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const jsonata = require(workerData.jsonataPath);
const port = workerData.port;
const flag = new Int32Array(workerData.shared);
function answer(message) {
  port.postMessage(message);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}
let expr;
try {
  expr = jsonata(workerData.expression);
  answer({ ready: true });
} catch (e) {
  answer({ ready: false, code: String(e && e.code || 'compile'), message: String(e && e.message || e) });
}
parentPort.on('message', async ({ id, input, bindings }) => {
  try {
    const at = bindings.received_at;
    const value = await expr.evaluate(input, { ...bindings, now: () => at, millis: () => Date.parse(at) });
    answer({ id, ok: true, json: value === undefined ? undefined : JSON.stringify(value) });
  } catch (e) {
    answer({ id, ok: false, code: String(e && e.code || 'error'), message: String(e && e.message || e), position: typeof (e && e.position) === 'number' ? e.position : undefined, token: typeof (e && e.token) === 'string' ? e.token : undefined });
  }
});
`;

interface Running {
  worker: Worker;
  port: MessagePort;
  flag: Int32Array;
}

const STARTUP_BUDGET_MS = 10_000;
const IDLE_STOP_MS = 60_000;

export function createSyncJsonataEvaluator(expression: string, timeoutMs: number): SyncJsonataEvaluator {
  const jsonataPath = createRequire(import.meta.url).resolve('jsonata');
  let running: Running | undefined;
  let idle: NodeJS.Timeout | undefined;
  let seq = 0;

  function stop(): void {
    if (running === undefined) return;
    const r = running;
    running = undefined;
    r.port.close();
    void r.worker.terminate().catch(() => undefined);
  }

  function start(): Running | EvaluationResult {
    const shared = new SharedArrayBuffer(4);
    const flag = new Int32Array(shared);
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { jsonataPath, expression, port: port2, shared },
      transferList: [port2],
    });
    worker.unref();
    worker.on('error', () => undefined);
    const waited = Atomics.wait(flag, 0, 0, STARTUP_BUDGET_MS);
    const ready = receiveMessageOnPort(port1)?.message as { ready?: boolean; code?: string; message?: string } | undefined;
    if (waited === 'timed-out' || ready?.ready !== true) {
      port1.close();
      void worker.terminate().catch(() => undefined);
      return { ok: false, code: ready?.code ?? 'SB0002', message: ready?.message ?? 'the expression evaluator did not start' };
    }
    return { worker, port: port1, flag };
  }

  return {
    evaluate(input, bindings) {
      if (running === undefined) {
        const started = start();
        if ('ok' in started) return started;
        running = started;
      }
      const r = running;
      if (idle !== undefined) clearTimeout(idle);
      idle = setTimeout(stop, IDLE_STOP_MS);
      idle.unref();

      const id = ++seq;
      Atomics.store(r.flag, 0, 0);
      r.worker.postMessage({ id, input, bindings });
      const waited = Atomics.wait(r.flag, 0, 0, timeoutMs);
      const reply = receiveMessageOnPort(r.port)?.message as
        | { id: number; ok: true; json: string | undefined }
        | { id: number; ok: false; code: string; message: string; position?: number; token?: string }
        | undefined;
      if (waited === 'timed-out' || reply === undefined || reply.id !== id) {
        // A runaway (or lost) evaluation: the worker is stopped and the next call starts a new one.
        stop();
        return { ok: false, code: 'SB0001', message: `the extract expression ran past its ${timeoutMs} ms time budget` };
      }
      if (!reply.ok) return { ok: false, code: reply.code, message: reply.message, position: reply.position, token: reply.token };
      return { ok: true, value: reply.json === undefined ? undefined : (JSON.parse(reply.json) as unknown) };
    },
    close() {
      if (idle !== undefined) clearTimeout(idle);
      stop();
    },
  };
}
