/**
 * hl7-standard 1.0.4 is used only behind src/hl7/hl7-standard-serializer.ts. These tests show
 * its defects are real in the raw library, and absent through the wrapper.
 */
import HL7 from 'hl7-standard';
import { describe, expect, it } from 'vitest';
import { parseEr7, type Er7Segment } from '../../src/hl7/er7.js';
import { escapeDelimiters } from '../../src/hl7/escape.js';
import { SerializerMismatchError, serializeWithHl7Standard } from '../../src/hl7/hl7-standard-serializer.js';

const msh: Er7Segment = {
  name: 'MSH',
  fields: [[[['^~\\&']]], [[['A']]], [[['']]], [[['B']]], [[['']]], [[['20250101120000+0000']]], [[['']]], [[['ORM'], ['O01'], ['ORM_O01']]], [[['C1']]], [[['P']]], [[['2.5.1']]]],
};

describe('hl7-standard 1.0.4, raw', () => {
  it('defects 1, 2 and 9: \\r\\n line endings, no escaping (segment injection), a trailing | on every segment', () => {
    const raw = new HL7('', {});
    const m = raw.createSegment('MSH');
    m.set('MSH', { 'MSH.2': '^~\\&', 'MSH.3': 'A' });
    const nte = raw.createSegment('NTE');
    nte.set('NTE', { 'NTE.1': '1', 'NTE.2': '', 'NTE.3': 'a|b\rZZZ|injected' });
    const text = raw.build();
    expect(text).toBe('MSH|^~\\&|A|\r\nNTE|1||a|b\rZZZ|injected|');
  });

  it('defect 3: a Date emits nothing, not even the field separator', () => {
    const raw = new HL7('', { lineEndings: '\r' });
    raw.createSegment('MSH').set('MSH', { 'MSH.2': '^~\\&', 'MSH.3': 'A', 'MSH.7': new Date() as unknown as string, 'MSH.9': 'ADT^A01' });
    expect(raw.build()).toBe('MSH|^~\\&|A|ADT^A01|');
  });
});

describe('through the wrapper', () => {
  it('writes \\r only, no trailing |, and escaped text stays inside its field', () => {
    const nte: Er7Segment = { name: 'NTE', fields: [[[['1']]], [[['']]], [[[escapeDelimiters('a|b ZZZ|injected')]]]] };
    const text = serializeWithHl7Standard([msh, nte]);
    expect(text).toBe('MSH|^~\\&|A||B||20250101120000+0000||ORM^O01^ORM_O01|C1|P|2.5.1\rNTE|1||a\\F\\b ZZZ\\F\\injected\r');
    expect(parseEr7(text).segments.map((s) => s.fields.length)).toEqual([11, 3]);
  });

  it('fills every gap in order, repetitions, components and subcomponents included', () => {
    const pid: Er7Segment = {
      name: 'PID',
      fields: [[[['1']]], [[['']]], [[['X1'], [''], [''], ['WA', 'https://x', 'URI']], [['X2']]], [[['']]], [[['DOE'], ['JANE']]]],
    };
    expect(serializeWithHl7Standard([msh, pid]).split('\r')[1]).toBe('PID|1||X1^^^WA&https://x&URI~X2||DOE^JANE');
  });

  it('throws instead of sending when hl7-standard writes something other than the intended layout', () => {
    // A value that is not a string (here: undefined smuggled past the types) is printed as "undefined" by hl7-standard (defect 6).
    const broken: Er7Segment = { name: 'NTE', fields: [[[[undefined as unknown as string]]]] };
    expect(() => serializeWithHl7Standard([msh, broken])).toThrow(SerializerMismatchError);
  });
});
