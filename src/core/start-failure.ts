/**
 * The one line printed when the gateway cannot start: `switchboard: failed to start: <reason>`.
 * Whatever was thrown (an Error, an error with a system code, a string, undefined, any value),
 * the line says why in one sentence and, where the cause is known, what to do; never a stack
 * trace (that goes to the debug log).
 */

const MAX_REASON = 600;

/** What to do for the system error codes a start-up meets. */
const hints: Record<string, string> = {
  EACCES: 'check that the user running Switchboard may read and write DATA_DIR and the files named above',
  EPERM: 'check that the user running Switchboard may read and write DATA_DIR and the files named above',
  EADDRINUSE: 'another process holds that port: stop it or set PORT (or the port named above) to a free one',
  ECONNREFUSED: 'nothing answers at that address: start that service or correct its URL',
  ENOTFOUND: 'that host name does not resolve: correct the URL',
  ENOENT: 'a file or program named above is missing: check the path, or run npm install again',
  ENOSPC: 'the disk is full: free space under DATA_DIR',
};

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_REASON ? `${flat.slice(0, MAX_REASON - 1)}…` : flat;
}

function codeOf(err: object): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code !== '' ? code : typeof code === 'number' ? String(code) : undefined;
}

function describe(err: unknown, depth: number): string | undefined {
  if (err === undefined || err === null) return undefined;
  if (typeof err === 'string') return oneLine(err) || undefined;
  if (typeof err !== 'object') return oneLine(String(err)) || undefined;
  const message = typeof (err as { message?: unknown }).message === 'string' ? oneLine((err as { message: string }).message) : '';
  const code = codeOf(err);
  let reason = message;
  if (reason === '') reason = code !== undefined ? `${err instanceof Error ? err.name : 'error'} ${code}` : err instanceof Error ? '' : oneLine(safeJson(err));
  else if (code !== undefined && !reason.includes(code)) reason = `${reason} (${code})`;
  const cause = depth < 3 ? describe((err as { cause?: unknown }).cause, depth + 1) : undefined;
  if (cause !== undefined && !reason.includes(cause)) reason = reason === '' ? cause : `${reason}: ${cause}`;
  if (reason === '') return undefined;
  const hint = code !== undefined ? hints[code] : undefined;
  return hint !== undefined ? `${reason}; ${hint}` : reason;
}

function safeJson(value: object): string {
  try {
    const json = JSON.stringify(value);
    return json === undefined || json === '{}' ? '' : json;
  } catch {
    return '';
  }
}

/** The reason part of `switchboard: failed to start: <reason>`, always non-empty and one line. */
export function startFailureReason(err: unknown): string {
  const reason = describe(err, 0);
  if (reason !== undefined) return oneLine(reason);
  const what = err === undefined ? 'undefined' : err === null ? 'null' : err instanceof Error ? `an ${err.name} without a message` : 'a value without a message';
  return `a start-up step failed without giving a reason (it rejected with ${what}); run again with LOG_LEVEL=debug to see which step`;
}

/** The whole line, newline included. */
export function formatStartFailure(err: unknown): string {
  return `switchboard: failed to start: ${startFailureReason(err)}\n`;
}
