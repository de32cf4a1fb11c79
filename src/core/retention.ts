/**
 * Message retention: how long a channel's payloads (everything that can hold PHI: raw bytes,
 * canonical message, server answers, built messages, dead-letter details, media files) and its
 * metadata (the rows: ids, states, codes, times, blind indexes) are kept. The store turns these
 * into the day after which a row may go (`prune_after`) and the day its metadata expires
 * (`keep_until`); whole weekly partitions are dropped once their week is over.
 */
export interface Retention {
  payloadDays: number;
  metadataDays: number;
}

export const DEFAULT_RETENTION: Retention = { payloadDays: 30, metadataDays: 365 };

/** `30d`, `8w`, `1y` (365 days): a whole number of days, weeks or years. */
export const RETENTION_PATTERN = /^([1-9]\d{0,4})([dwy])$/;

export function retentionDays(text: string): number | undefined {
  const m = RETENTION_PATTERN.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'd' ? n : m[2] === 'w' ? n * 7 : n * 365;
}

const DAY_MS = 86_400_000;

/** The UTC calendar day of an instant, as YYYY-MM-DD. */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

export function addDays(day: string, days: number): string {
  return utcDay(new Date(Date.parse(`${day}T00:00:00Z`) + days * DAY_MS));
}

/**
 * The store's dates for a row that arrived at `receivedAt`: its payloads may go after
 * `pruneAfter`, its metadata after `keepUntil` (both whole UTC days, never earlier than the
 * retention says).
 */
export function retentionDates(receivedAt: Date, r: Retention): { pruneAfter: string; keepUntil: string } {
  const day = utcDay(receivedAt);
  return { pruneAfter: addDays(day, r.payloadDays + 1), keepUntil: addDays(day, r.metadataDays + 1) };
}

/** The Monday that starts the (UTC) week of a day: the partition a row of that day lives in. */
export function retentionWeek(day: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  return addDays(day, -((d.getUTCDay() + 6) % 7));
}
