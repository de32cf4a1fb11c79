/**
 * The ER7 ("pipe and hat") model of an HL7 v2 message, our lossless parser and the text layout.
 *
 * A message is a list of segments; a segment is a name and fields; a field is repetitions of
 * components of subcomponents. Every leaf is **escaped** ER7 text (`\F\`, `\S\`, ...), exactly as
 * on the wire: parsing never unescapes, so `serializeSegments(parseEr7(text).segments)` gives the
 * input back byte for byte (tested on every fixture). `unescapeText()` is separate.
 *
 * Header segments (MSH, FHS, BHS) are special: field 1 is the field separator itself and field 2
 * the encoding characters. In this model `fields[0]` of a header segment is field 2 (MSH-2), so
 * `fields[i]` is always "the field after the i-th separator" for every segment. Use
 * `fieldOf(segment, n)` to read field n by its HL7 number.
 *
 * Reference: HL7 v2.5.1 chapter 2 (message construction rules, delimiters and escape sequences).
 */

/** Subcomponents of one component (at least one, possibly empty strings). */
export type Er7Component = string[];
/** Components of one repetition. */
export type Er7Repetition = Er7Component[];
/** Repetitions of one field. */
export type Er7Field = Er7Repetition[];

export interface Er7Segment {
  /** Three characters, e.g. `PID`. */
  name: string;
  /** Fields in order, after the name. For MSH/FHS/BHS, `fields[0]` is field 2 (encoding characters). */
  fields: Er7Field[];
}

export interface Delimiters {
  field: string;
  component: string;
  repetition: string;
  escape: string;
  subcomponent: string;
}

/** The only delimiters Switchboard writes (MSH-1 `|`, MSH-2 `^~\&`). */
export const STANDARD_DELIMITERS: Readonly<Delimiters> = Object.freeze({
  field: '|',
  component: '^',
  repetition: '~',
  escape: '\\',
  subcomponent: '&',
});

export const ENCODING_CHARACTERS = '^~\\&';
export const SEGMENT_SEPARATOR = '\r';
const HEADER_SEGMENTS = new Set(['MSH', 'FHS', 'BHS']);

export function isHeaderSegment(name: string): boolean {
  return HEADER_SEGMENTS.has(name);
}

export interface ParsedEr7 {
  segments: Er7Segment[];
  delimiters: Delimiters;
  /** How segments were separated in the input (`\r` is the only standard one). */
  lineEnding: '\r' | '\n' | '\r\n';
  /** Whether the text ended with a segment separator. */
  trailingSeparator: boolean;
}

export class Er7ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Er7ParseError';
  }
}

/**
 * Parses ER7 text without unescaping. Segments are separated by `\r` (or, when the text has no
 * `\r` at all, by `\n`; `\r\n` is accepted as one separator), an optional final separator is
 * allowed. Delimiters are read from MSH-1/MSH-2 (or FHS/BHS for a batch). Throws Er7ParseError
 * on text that does not start with a header segment or has a malformed segment name.
 */
export function parseEr7(text: string): ParsedEr7 {
  const head = text.slice(0, 3);
  if (!isHeaderSegment(head)) throw new Er7ParseError('the text does not start with an MSH (or FHS/BHS) segment');
  const delimiters = readDelimiters(text);
  const lineEnding: ParsedEr7['lineEnding'] = text.includes('\r\n') ? '\r\n' : text.includes('\r') ? '\r' : '\n';
  let lines = text.split(lineEnding);
  const trailingSeparator = lines.length > 1 && lines[lines.length - 1] === '';
  if (trailingSeparator) lines = lines.slice(0, -1);
  const segments = lines.map((line, index) => parseSegment(line, delimiters, index));
  return { segments, delimiters, lineEnding, trailingSeparator };
}

function readDelimiters(text: string): Delimiters {
  const field = text.charAt(3);
  const encoding = text.slice(4, 8);
  if (field === '' || /[A-Za-z0-9\r\n]/.test(field)) throw new Er7ParseError('MSH-1 (field separator) is missing or invalid');
  const [component = '^', repetition = '~', escape = '\\', subcomponent = '&'] = [...encoding];
  // A header with fewer than four encoding characters keeps the defaults for the missing ones.
  const end = encoding.indexOf(field);
  const given = end === -1 ? encoding : encoding.slice(0, end);
  return {
    field,
    component: given.length > 0 ? component : '^',
    repetition: given.length > 1 ? repetition : '~',
    escape: given.length > 2 ? escape : '\\',
    subcomponent: given.length > 3 ? subcomponent : '&',
  };
}

function parseSegment(line: string, d: Delimiters, index: number): Er7Segment {
  const name = line.slice(0, 3);
  if (!/^[A-Z][A-Z0-9]{2}$/.test(name)) throw new Er7ParseError(`segment ${index + 1}: "${safeName(name)}" is not a segment name`);
  if (line.length > 3 && line.charAt(3) !== d.field) throw new Er7ParseError(`segment ${index + 1} (${name}): the name is not followed by the field separator`);
  if (line.length === 3) return { name, fields: [] };
  const rest = line.slice(4).split(d.field);
  if (isHeaderSegment(name)) {
    // Field 2 holds the encoding characters literally: never split it.
    const [encoding = '', ...others] = rest;
    return { name, fields: [[[[encoding]]], ...others.map((f) => parseField(f, d))] };
  }
  return { name, fields: rest.map((f) => parseField(f, d)) };
}

/** Splits one field's text into repetitions, components and subcomponents (no unescaping). */
export function parseField(text: string, d: Delimiters = STANDARD_DELIMITERS): Er7Field {
  return text.split(d.repetition).map((rep) => rep.split(d.component).map((comp) => comp.split(d.subcomponent)));
}

/** Segment names only, for error messages: never echo message content. */
function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9]/g, '?');
}

/** One field's ER7 text (escaped leaves joined with the standard delimiters). */
export function fieldText(field: Er7Field, d: Delimiters = STANDARD_DELIMITERS): string {
  return field.map((rep) => rep.map((comp) => comp.join(d.subcomponent)).join(d.component)).join(d.repetition);
}

/** One segment's ER7 text. Header segments put the field separator back as MSH-1. */
export function segmentText(segment: Er7Segment, d: Delimiters = STANDARD_DELIMITERS): string {
  if (segment.fields.length === 0) return segment.name;
  return `${segment.name}${d.field}${segment.fields.map((f) => fieldText(f, d)).join(d.field)}`;
}

/**
 * The reference layout: segments joined by `\r`, with a final `\r`. Used to check what the
 * hl7-standard based serializer produced (see hl7-standard-serializer.ts), never to send.
 */
export function referenceEr7(segments: readonly Er7Segment[], d: Delimiters = STANDARD_DELIMITERS): string {
  return segments.map((s) => segmentText(s, d) + SEGMENT_SEPARATOR).join('');
}

/** Field n (1-based, as HL7 numbers it) of a segment, or undefined when absent. */
export function fieldOf(segment: Er7Segment, n: number): Er7Field | undefined {
  if (isHeaderSegment(segment.name)) {
    if (n === 1) return [[[STANDARD_DELIMITERS.field]]];
    return segment.fields[n - 2];
  }
  return segment.fields[n - 1];
}

/** The escaped text of field n, component c (1-based), subcomponent s, repetition r (0-based). */
export function valueOf(segment: Er7Segment | undefined, n: number, c = 1, s = 1, r = 0): string {
  if (!segment) return '';
  return fieldOf(segment, n)?.[r]?.[c - 1]?.[s - 1] ?? '';
}

/** Like valueOf, unescaped. */
export function textOf(segment: Er7Segment | undefined, n: number, c = 1, s = 1, r = 0): string {
  return unescapeText(valueOf(segment, n, c, s, r));
}

/** Drops trailing empty subcomponents, components, repetitions and fields: no stray delimiters. */
export function trimSegment(segment: Er7Segment): Er7Segment {
  const header = isHeaderSegment(segment.name);
  const fields = segment.fields.map((field, i) => (header && i === 0 ? field : trimField(field)));
  while (fields.length > (header ? 1 : 0) && isEmptyField(fields[fields.length - 1]!)) fields.pop();
  return { name: segment.name, fields };
}

export function trimField(field: Er7Field): Er7Field {
  const reps = field.map((rep) => {
    const comps = rep.map((comp) => {
      const subs = [...comp];
      while (subs.length > 1 && subs[subs.length - 1] === '') subs.pop();
      return subs;
    });
    while (comps.length > 1 && isEmptyComponent(comps[comps.length - 1]!)) comps.pop();
    return comps;
  });
  while (reps.length > 1 && isEmptyRepetition(reps[reps.length - 1]!)) reps.pop();
  return reps;
}

function isEmptyComponent(c: Er7Component): boolean {
  return c.every((s) => s === '');
}
function isEmptyRepetition(r: Er7Repetition): boolean {
  return r.every(isEmptyComponent);
}
export function isEmptyField(f: Er7Field): boolean {
  return f.every(isEmptyRepetition);
}

/** `\.br\`-style formatting commands and hex/highlight sequences are kept as text by unescapeText. */
const ESCAPES: Record<string, string> = { F: '|', S: '^', T: '&', R: '~', E: '\\' };

/**
 * Unescapes the delimiter escapes (`\F\ \S\ \T\ \R\ \E\`) and `\Xhh..\` hex of one leaf. Other
 * sequences (`\.br\`, `\H\`, `\N\`, `\Z..\`) are formatting, kept literally; callers that render
 * FT text turn `\.br\` into a line break themselves (see `ftToText`).
 */
export function unescapeText(text: string, escape = '\\'): string {
  if (!text.includes(escape)) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text.charAt(i);
    if (ch !== escape) {
      out += ch;
      i++;
      continue;
    }
    const end = text.indexOf(escape, i + 1);
    if (end === -1) {
      out += text.slice(i);
      break;
    }
    const body = text.slice(i + 1, end);
    const simple = ESCAPES[body];
    if (simple !== undefined) out += simple;
    else if (/^X([0-9A-Fa-f]{2})+$/.test(body)) out += decodeHex(body.slice(1));
    else out += text.slice(i, end + 1);
    i = end + 1;
  }
  return out;
}

/** `\Xhh…\` bytes: UTF-8 when they are valid UTF-8, else ISO 8859-1. */
function decodeHex(hex: string): string {
  const bytes = Buffer.from(hex, 'hex');
  const utf8 = bytes.toString('utf8');
  return utf8.includes('\uFFFD') ? bytes.toString('latin1') : utf8;
}

/** FT text to plain text: unescapes and turns `\.br\` into `\n`. */
export function ftToText(text: string): string {
  return unescapeText(text.split('\\.br\\').join('\u0000')).split('\u0000').join('\n');
}
