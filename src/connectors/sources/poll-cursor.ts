/**
 * The durable cursor of the polling sources (rocketchat_poll, fhir_poll): the newest time
 * emitted and the ids emitted at exactly that time. Asking the server for items at or after
 * the cursor's time (never strictly after) and skipping the ids already emitted there means two
 * items sharing a timestamp are neither skipped (at a page boundary) nor repeated.
 */

/** Where polling stands: the newest time emitted and the ids emitted at exactly that time. */
export interface TimeCursor {
  ts: string | null;
  ids: string[];
}

/** One polled item: its id, its time (ISO) and that time in ms. */
export interface Sortable<Raw = Record<string, unknown>> {
  id: string;
  at: string;
  at_ms: number;
  raw: Raw;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The stored cursor text as a cursor; null when absent or unreadable. */
export function readTimeCursor(text: string | null): TimeCursor | null {
  if (text === null) return null;
  try {
    const v: unknown = JSON.parse(text);
    if (isRecord(v) && (v.ts === null || typeof v.ts === 'string') && Array.isArray(v.ids)) {
      return { ts: v.ts, ids: v.ids.filter((x): x is string => typeof x === 'string') };
    }
  } catch {
    // fall through
  }
  return null;
}

/** Items after the cursor, deduplicated on id, oldest first (ties by id). */
export function newerThan<Raw>(cursor: TimeCursor, items: Sortable<Raw>[]): Sortable<Raw>[] {
  const seen = new Set<string>();
  const cursorMs = cursor.ts === null ? -Infinity : Date.parse(cursor.ts);
  const done = new Set(cursor.ids);
  return items
    .filter((m) => {
      if (seen.has(m.id)) return false;
      seen.add(m.id);
      return m.at_ms > cursorMs || (m.at_ms === cursorMs && !done.has(m.id));
    })
    .sort((a, b) => a.at_ms - b.at_ms || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** The cursor after `chunk` (sorted, non-empty) has been emitted. */
export function advance<Raw>(cursor: TimeCursor, chunk: Sortable<Raw>[]): TimeCursor {
  const last = chunk[chunk.length - 1];
  if (last === undefined) return cursor;
  const atLast = chunk.filter((m) => m.at_ms === last.at_ms).map((m) => m.id);
  const sameAsBefore = cursor.ts !== null && Date.parse(cursor.ts) === last.at_ms;
  return { ts: last.at, ids: sameAsBefore ? [...new Set([...cursor.ids, ...atLast])] : atLast };
}

/** Sleeps `ms`, or less when `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
