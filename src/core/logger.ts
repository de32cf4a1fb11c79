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
  return options.destination ? pino(opts, options.destination) : pino(opts);
}
