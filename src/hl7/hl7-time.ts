/**
 * HL7 TS/DTM values. Switchboard always writes seconds and an explicit offset
 * (`YYYYMMDDHHMMSS+0000`, the HL7 v2 DTM type); it never hands a Date to a library.
 */

/** `2025-03-04T09:15:02.123Z` -> `20250304091502+0000` (UTC; fractions dropped). */
export function formatHl7Timestamp(at: Date | string): string {
  const date = typeof at === 'string' ? new Date(at) : at;
  if (Number.isNaN(date.getTime())) throw new RangeError('formatHl7Timestamp: not a valid instant');
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(date.getUTCFullYear(), 4)}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}+0000`;
}

/** TS with seconds and offset, as Switchboard writes it. */
export const HL7_TIMESTAMP_PATTERN = /^\d{14}[+-]\d{4}$/;
