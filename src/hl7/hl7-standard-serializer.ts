/**
 * ER7 text from our segment model, written by hl7-standard 1.0.4 behind a wrapper that keeps
 * each of its known defects (shown in test/unit/hl7-standard-wrapper.test.ts) away from a partner:
 *
 * | defect | how this wrapper avoids it |
 * |---|---|
 * | 1 `\r\n` line endings by default | built with `{lineEndings: '\r'}` |
 * | 2 no escaping | every leaf arrives escaped (escape.ts); the result is re-parsed and compared |
 * | 3 a Date or `{}` emits nothing | only strings and non-empty objects/arrays ever reach it |
 * | 4 whole-segment set ignores gaps | every field from the first to the last is given, in order |
 * | 5 `set` of a component loses the field | fields are set whole, never component by component |
 * | 6 numbers throw / `undefined` printed | only strings reach it |
 * | 7 `createSegmentBefore` misplaces | only `createSegment` (append) is used |
 * | 8 `get` throws | never called |
 * | 9 trailing `\|` on every segment | exactly the one it appends is removed, checked |
 * | 10 custom delimiters ignored | only the standard delimiters are used |
 * | 11, 12 parse line-ending bugs | its parser is never used (parse-er7 is ours) |
 *
 * Finally the output must equal the reference layout (er7.ts `referenceEr7`) byte for byte, or
 * this throws: a future hl7-standard regression fails the build of the message, never the partner.
 * The independent re-parse (verify-message.ts) runs after this, on what is actually sent.
 */
import HL7, { type Hl7StandardField, type Hl7StandardRepetition } from 'hl7-standard';
import { isHeaderSegment, referenceEr7, SEGMENT_SEPARATOR, type Er7Field, type Er7Repetition, type Er7Segment } from './er7.js';

export class SerializerMismatchError extends Error {
  constructor(readonly segmentIndex: number) {
    super(`hl7-standard produced a segment that differs from the intended layout (segment ${segmentIndex + 1})`);
    this.name = 'SerializerMismatchError';
  }
}

function repetitionValue(key: string, rep: Er7Repetition): Hl7StandardRepetition {
  if (rep.length === 1 && rep[0]!.length === 1) return rep[0]![0]!;
  const out: Record<string, string | string[]> = {};
  rep.forEach((comp, i) => {
    out[`${key}.${i + 1}`] = comp.length === 1 ? comp[0]! : [...comp];
  });
  return out;
}

function fieldValue(key: string, field: Er7Field): Hl7StandardField {
  if (field.length === 1) return repetitionValue(key, field[0]!);
  return field.map((rep) => repetitionValue(key, rep));
}

/** Segments (escaped leaves) to ER7: segments separated and terminated by `\r`. */
export function serializeWithHl7Standard(segments: readonly Er7Segment[]): string {
  const message = new HL7('', { lineEndings: SEGMENT_SEPARATOR });
  for (const segment of segments) {
    const created = message.createSegment(segment.name);
    const first = isHeaderSegment(segment.name) ? 2 : 1;
    const data: Record<string, Hl7StandardField> = {};
    segment.fields.forEach((field, i) => {
      const key = `${segment.name}.${i + first}`;
      data[key] = fieldValue(key, field);
    });
    created.set(segment.name, data);
  }
  const built = segments.length === 0 ? '' : message.build();
  const lines = built === '' ? [] : built.split(SEGMENT_SEPARATOR);
  const expected = referenceEr7(segments).split(SEGMENT_SEPARATOR).slice(0, -1);
  const out: string[] = [];
  for (let i = 0; i < Math.max(lines.length, expected.length); i++) {
    const line = lines[i];
    // hl7-standard ends every segment with one `|` (defect 9); anything else is a mismatch.
    if (line === undefined || !line.endsWith('|') || line.slice(0, -1) !== expected[i]) throw new SerializerMismatchError(i);
    out.push(line.slice(0, -1));
  }
  return out.map((l) => l + SEGMENT_SEPARATOR).join('');
}
