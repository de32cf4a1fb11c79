/**
 * pino JSON logs. PHI never reaches a log line: callers log ids, codes and counts only, and
 * the redaction list below is a second fence for fields that commonly carry message content.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Paths that could hold patient content if someone logged a payload by mistake. */
export const redactedPaths = [
  'body',
  'text',
  'raw',
  'payload',
  'canonical',
  'message.text',
  'message.sender',
  'sender',
  'phone',
  'headers.authorization',
  'headers["x-hub-signature-256"]',
  '*.body',
  '*.text',
  '*.raw',
  '*.payload',
  '*.phone',
  '*.sender',
  '*.contentString',
  '*.authorization',
  'err.response.data',
];

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream; name?: string } = {}): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? 'info',
    base: { svc: options.name ?? 'switchboard' },
    redact: { paths: redactedPaths, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  // Synchronous writes to stdout: pino's default stream writes asynchronously and its flush(cb)
  // returns at once when nothing is buffered by size (minLength 0), so the last lines before
  // process.exit ("stopped", a start-up refusal) could be lost on a busy pipe. A log line is a
  // few per message, far from what would make sync writes show in the bench.
  return pino(opts, options.destination ?? pino.destination({ dest: 1, sync: true }));
}
