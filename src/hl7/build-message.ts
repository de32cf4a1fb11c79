/**
 * Builds ER7 from a mapping's message spec (message-spec.ts) and the partner's header settings:
 * MSH from the settings, every value escaped (escape.ts), line breaks per field type and
 * partner, long text split into repetitions, trailing empty delimiters trimmed, written by the
 * wrapped hl7-standard serializer, then checked by an independent re-parse (verify-message.ts).
 *
 * Nothing here logs or returns message content in errors: issues name segment and field
 * positions only.
 */
import {
  ENCODING_CHARACTERS,
  fieldText,
  trimSegment,
  type Er7Field,
  type Er7Segment,
} from './er7.js';
import {
  escapeText,
  escapeValue,
  type Charset,
  type FtLineBreak,
  type OtherLineBreak,
  type TextKind,
  type TxLineBreak,
} from './escape.js';
import { formatHl7Timestamp } from './hl7-time.js';
import { serializeWithHl7Standard } from './hl7-standard-serializer.js';
import { MESSAGE_TYPE_PATTERN, type Hl7Component, type Hl7FieldValue, type Hl7Repetition, type MessageSpec, type SegmentSpec } from './message-spec.js';
import { verifyBuiltMessage, type StructureCheck } from './verify-message.js';

export const HL7_VERSION = '2.5.1';

/** Table 0155 (accept / application acknowledgment conditions). */
export const ackConditions = ['AL', 'NE', 'ER', 'SU'] as const;
export type AckCondition = (typeof ackConditions)[number];

export interface HeaderSettings {
  /** HD text, components separated by `^` (e.g. `SWITCHBOARD` or `SB^1.2.3^ISO`). */
  sendingApplication: string;
  sendingFacility: string;
  receivingApplication: string;
  receivingFacility: string;
  /** MSH-11: P production, T training/test, D debugging. */
  processingId: 'P' | 'T' | 'D';
  /** Enhanced mode: MSH-15 and MSH-16. Undefined: original mode (both empty). */
  enhanced?: { accept: AckCondition; application: AckCondition } | undefined;
  charset: Charset;
}

export interface LineBreakSettings {
  ft: FtLineBreak;
  tx: TxLineBreak;
  other: OtherLineBreak;
}

export interface BuildOptions {
  header: HeaderSettings;
  /** MSH-10 (at most 20 characters). */
  controlId: string;
  /** MSH-7. */
  timestamp: Date;
  lineBreaks: LineBreakSettings;
  /** Longest repetition of any field, in escaped characters; free text longer than this is split. */
  maxFieldLength: number;
  structureCheck: StructureCheck;
}

export interface BuiltMessage {
  /** ER7 text: segments separated and terminated by `\r`, never framed. */
  text: string;
  segments: Er7Segment[];
  controlId: string;
  /** MSH-9 as written. */
  messageType: string;
  /** What the structure check did: `schema` (group-aware), or why it only checked delimiters. */
  structure: string;
}

/** A built message that is wrong: a mapping problem, never worth a retry. Issues are PHI-free. */
export class Hl7BuildError extends Error {
  constructor(readonly issues: string[]) {
    super(`the HL7 message could not be built correctly (${issues.length} issue${issues.length === 1 ? '' : 's'}): ${issues.slice(0, 3).join('; ')}`);
    this.name = 'Hl7BuildError';
  }
}

/** `SB^1.2.3^ISO` -> an HD field; components escaped (the settings schema refuses `|~\&`). */
function hdField(text: string, charset: Charset): Er7Field {
  return [text.split('^').map((c) => [escapeValue(c, charset)])];
}

export function buildMsh(spec: Pick<MessageSpec, 'message_type'>, o: Pick<BuildOptions, 'header' | 'controlId' | 'timestamp'>): Er7Segment {
  const h = o.header;
  const type = MESSAGE_TYPE_PATTERN.exec(spec.message_type);
  if (!type) throw new Hl7BuildError(['message_type: not code^event^structure']);
  const typeField: Er7Field = [[[type[1]!], [type[2]!], ...(type[3] ? [[type[3]]] : [])]];
  const v = (text: string): Er7Field => [[[text]]];
  return trimSegment({
    name: 'MSH',
    fields: [
      v(ENCODING_CHARACTERS), // MSH-2
      hdField(h.sendingApplication, h.charset), // MSH-3
      hdField(h.sendingFacility, h.charset), // MSH-4
      hdField(h.receivingApplication, h.charset), // MSH-5
      hdField(h.receivingFacility, h.charset), // MSH-6
      v(formatHl7Timestamp(o.timestamp)), // MSH-7
      v(''), // MSH-8 security
      typeField, // MSH-9
      v(o.controlId), // MSH-10
      v(h.processingId), // MSH-11
      v(HL7_VERSION), // MSH-12
      v(''), // MSH-13 sequence number
      v(''), // MSH-14 continuation pointer
      v(h.enhanced?.accept ?? ''), // MSH-15
      v(h.enhanced?.application ?? ''), // MSH-16
      v(''), // MSH-17 country
      v(h.charset), // MSH-18
    ],
  });
}

/** The text kind of a field: NTE-3 is FT, OBX-5 follows OBX-2, a segment may declare more. */
function textKind(segment: SegmentSpec, field: number): TextKind {
  const declared = segment.field_types?.[String(field)];
  if (declared) return declared === 'ST' ? 'other' : declared;
  if (segment.segment === 'NTE' && field === 3) return 'FT';
  if (segment.segment === 'OBX' && field === 5) {
    const valueType = segment.fields['2'];
    if (valueType === 'FT' || valueType === 'TX') return valueType;
  }
  return 'other';
}

interface SegmentResult {
  segments: Er7Segment[];
  /** True when split_segments turned one segment into several. */
  expanded: boolean;
}

function leafText(value: string | number | null): string {
  if (value === null) return '';
  return typeof value === 'number' ? String(value) : value;
}

function buildSegment(spec: SegmentSpec, index: number, o: BuildOptions, issues: string[]): SegmentResult {
  const charset = o.header.charset;
  const max = o.maxFieldLength;
  const numbers = Object.keys(spec.fields).map(Number);
  const last = numbers.length === 0 ? 0 : Math.max(...numbers);
  const fields: Er7Field[] = [];
  let split: { field: number; segments: string[][] } | undefined;

  const checkLength = (where: string, text: string): string => {
    if ([...text].length > max) issues.push(`segments[${index}].fields.${where}: longer than max_field_length (${max}) after escaping`);
    return text;
  };
  const component = (where: string, c: Hl7Component): string[] => {
    if (c !== null && typeof c === 'object') {
      const keys = Object.keys(c).map(Number);
      const n = keys.length === 0 ? 1 : Math.max(...keys);
      return Array.from({ length: n }, (_, i) => checkLength(`${where}.${i + 1}`, escapeValue(leafText(c[String(i + 1)] ?? null), charset)));
    }
    return [checkLength(where, escapeValue(leafText(c), charset))];
  };
  const repetition = (where: string, r: Hl7Repetition): string[][] => {
    if (r !== null && typeof r === 'object') {
      const keys = Object.keys(r).map(Number);
      const n = keys.length === 0 ? 1 : Math.max(...keys);
      return Array.from({ length: n }, (_, i) => component(`${where}.${i + 1}`, r[String(i + 1)] ?? null));
    }
    return [component(where, r)];
  };

  for (let n = 1; n <= last; n++) {
    const value: Hl7FieldValue | undefined = spec.fields[String(n)];
    const kind = textKind(spec, n);
    const reps: Hl7Repetition[] = value === undefined ? [null] : Array.isArray(value) ? value : [value];
    const allText = reps.every((r) => typeof r === 'string');
    if (kind !== 'other' && allText) {
      const style = kind === 'FT' ? o.lineBreaks.ft : o.lineBreaks.tx;
      const out: string[] = [];
      const perSegment: string[][] = [];
      for (const r of reps as string[]) {
        const escaped = escapeText(r, kind, style, max, charset);
        out.push(...escaped.repetitions);
        if (escaped.segments) perSegment.push(...escaped.segments);
      }
      if (style === 'split_segments' && perSegment.length > 1) split = { field: n, segments: perSegment };
      fields.push(out.map((t) => [[t]]));
      continue;
    }
    fields.push(reps.map((r, i) => repetition(Array.isArray(value) ? `${n}[${i}]` : String(n), r)));
  }

  const segment = trimSegment({ name: spec.segment, fields });
  if (!split) return { segments: [segment], expanded: false };
  const field = split.field;
  return {
    expanded: true,
    segments: split.segments.map((reps) => {
      const copy = fields.map((f, i) => (i === field - 1 ? reps.map((t) => [[t]]) : f));
      return trimSegment({ name: spec.segment, fields: copy });
    }),
  };
}

/** Renumbers set ids (field 1) of runs of same-name segments that split_segments expanded. */
function renumberExpanded(results: SegmentResult[]): Er7Segment[] {
  const out: Er7Segment[] = [];
  const flags: boolean[] = [];
  for (const r of results) {
    for (const s of r.segments) {
      out.push(s);
      flags.push(r.expanded);
    }
  }
  let i = 0;
  while (i < out.length) {
    let j = i;
    while (j + 1 < out.length && out[j + 1]!.name === out[i]!.name) j++;
    const run = out.slice(i, j + 1);
    const anyExpanded = flags.slice(i, j + 1).some(Boolean);
    const setIds = run.map((s) => fieldText(s.fields[0] ?? [[['']]]));
    if (anyExpanded && run.length > 1 && setIds.every((id) => /^\d+$/.test(id))) {
      const start = Number(setIds[0]);
      run.forEach((s, k) => {
        s.fields[0] = [[[String(start + k)]]];
      });
    }
    i = j + 1;
  }
  return out;
}

/**
 * Builds and checks one message. Throws Hl7BuildError when the spec produces text that is too
 * long for the partner or when the built message fails the independent structural check.
 */
export function buildMessage(spec: MessageSpec, o: BuildOptions): BuiltMessage {
  const issues: string[] = [];
  const msh = buildMsh(spec, o);
  const body = renumberExpanded(spec.segments.map((s, i) => buildSegment(s, i, o, issues)));
  if (issues.length > 0) throw new Hl7BuildError(issues);
  const segments = [msh, ...body];
  let text: string;
  try {
    text = serializeWithHl7Standard(segments);
  } catch (err) {
    throw new Hl7BuildError([err instanceof Error ? err.message : 'the serializer failed']);
  }
  const verdict = verifyBuiltMessage(text, segments, { structure: o.structureCheck });
  if (verdict.issues.length > 0) throw new Hl7BuildError(verdict.issues);
  return { text, segments, controlId: o.controlId, messageType: spec.message_type, structure: verdict.structure };
}
