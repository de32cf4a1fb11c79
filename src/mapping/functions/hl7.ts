/** HL7 v2 helpers: `$hl7Escape(text, lineBreaks?)` and `$hl7Ts(dateTime)`. */
import { MappingFunctionError, functionErrorCodes } from './function-error.js';

export type LineBreakMode = 'br' | 'space' | 'hex';

/**
 * Escapes text for one HL7 v2 field or component with the default encoding characters
 * (`|^~\&`): `\` → `\E\`, `|` → `\F\`, `^` → `\S\`, `&` → `\T\`, `~` → `\R\`. Line breaks
 * (CRLF, CR or LF) become `\.br\` (mode `br`, the default; formatted text, FT fields), a space
 * (`space`, for ST/TX fields whose receiver does not read escapes) or `\X0D\` / `\X0A\` (`hex`).
 * Other control characters become `\Xhh\`. A CR is never left in the output: it ends a segment.
 */
export function hl7Escape(text: unknown, lineBreaks?: unknown): string | undefined {
  if (text === undefined || text === null) return undefined;
  const mode = lineBreaks === undefined || lineBreaks === null ? 'br' : lineBreaks;
  if (mode !== 'br' && mode !== 'space' && mode !== 'hex') {
    throw new MappingFunctionError(
      functionErrorCodes.badArgument,
      `$hl7Escape: lineBreaks must be 'br', 'space' or 'hex', not ${JSON.stringify(lineBreaks)}`,
    );
  }
  const source = typeof text === 'string' ? text : typeof text === 'number' || typeof text === 'boolean' ? String(text) : JSON.stringify(text);
  let out = '';
  for (let i = 0; i < source.length; i++) {
    const ch = source[i] as string;
    if (ch === '\r' || ch === '\n') {
      const pair = ch === '\r' && source[i + 1] === '\n';
      if (mode === 'br') out += '\\.br\\';
      else if (mode === 'space') out += ' ';
      else out += pair ? '\\X0D\\\\X0A\\' : ch === '\r' ? '\\X0D\\' : '\\X0A\\';
      if (pair) i++;
      continue;
    }
    switch (ch) {
      case '\\':
        out += '\\E\\';
        break;
      case '|':
        out += '\\F\\';
        break;
      case '^':
        out += '\\S\\';
        break;
      case '&':
        out += '\\T\\';
        break;
      case '~':
        out += '\\R\\';
        break;
      default: {
        const code = ch.charCodeAt(0);
        out += code < 0x20 || code === 0x7f ? `\\X${code.toString(16).toUpperCase().padStart(2, '0')}\\` : ch;
      }
    }
  }
  return out;
}

const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * An ISO 8601 date-time → HL7 v2 TS/DTM with seconds and offset: `2025-03-04T09:15:00Z` →
 * `20250304091500+0000`; `2025-03-04T10:15:00+01:00` → `20250304101500+0100` (the local time
 * as written, with its offset). A date alone → `YYYYMMDD`. Fractions of a second are dropped.
 * A date-time without a zone is refused: HL7 receivers would read it in their own zone.
 */
export function hl7Ts(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const text = typeof value === 'string' ? value.trim() : '';
  const m = ISO_DATE_TIME.exec(text);
  const fail = (why: string): never => {
    throw new MappingFunctionError(functionErrorCodes.badArgument, `$hl7Ts: ${why}, got ${JSON.stringify(value)}`);
  };
  if (m === null) return fail("expected an ISO 8601 date-time such as '2025-03-04T09:15:00Z' or a date such as '2025-03-04'");
  const [, year, month, day, hour, minute, second, zone] = m as unknown as (string | undefined)[];
  const checkDate = new Date(`${year}-${month}-${day}T00:00:00Z`);
  if (Number.isNaN(checkDate.getTime()) || checkDate.getUTCDate() !== Number(day)) fail('not a calendar date');
  if (hour === undefined) return `${year}${month}${day}`;
  if (Number(hour) > 23 || Number(minute) > 59 || Number(second ?? '0') > 59) fail('not a valid time of day');
  if (zone === undefined) return fail('a date-time needs a zone (Z or +hh:mm) so the receiver reads the right instant');
  const offset = zone === 'Z' ? '+0000' : zone.replace(':', '');
  return `${year}${month}${day}${hour}${minute}${second ?? '00'}${offset}`;
}
