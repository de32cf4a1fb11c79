/**
 * The HL7 builder: mapping JSON shape -> checked ER7. Hostile chat text is checked with parsers
 * we did not write: @medplum/core (structure, field by field) and @redoxengine/redox-hl7-v2
 * (which unescapes delimiters): it must come back intact and never add a field or segment.
 */
import { createRequire } from 'node:module';
import { Hl7Message } from '@medplum/core';
import { describe, expect, it } from 'vitest';
import { buildMessage, Hl7BuildError, type BuildOptions } from '../../src/hl7/build-message.js';
import { controlIdFor, CONTROL_ID_LENGTH } from '../../src/hl7/control-id.js';
import { ftToText, parseEr7, textOf, valueOf } from '../../src/hl7/er7.js';
import { escapeDelimiters, sanitizeText } from '../../src/hl7/escape.js';
import { formatHl7Timestamp, HL7_TIMESTAMP_PATTERN } from '../../src/hl7/hl7-time.js';
import { formatSpecIssues, messageSpecSchema, type MessageSpec } from '../../src/hl7/message-spec.js';
import { verifyBuiltMessage } from '../../src/hl7/verify-message.js';

const require = createRequire(import.meta.url);
const Redox = require('@redoxengine/redox-hl7-v2') as { Parser: new () => { parse(t: string): Record<string, unknown> } };

const HOSTILE = 'Hi doc | is my A1c ^ ok? 5 < 7 & "fasting" ~ yes\\no\r\nSecond line 😀 café\nZZZ|injected\rOBX|1|TX\u000b\u001c\u0000end';

function options(over: Partial<BuildOptions> = {}, header: Partial<BuildOptions['header']> = {}): BuildOptions {
  return {
    header: {
      sendingApplication: 'SWITCHBOARD',
      sendingFacility: 'CLINIC',
      receivingApplication: 'LIS',
      receivingFacility: 'LAB',
      processingId: 'P',
      charset: 'UNICODE UTF-8',
      ...header,
    },
    controlId: controlIdFor('3b241101-e2bb-4255-8caf-4136c566a962'),
    timestamp: new Date('2025-03-04T09:15:02.345Z'),
    lineBreaks: { ft: 'br', tx: 'repetition', other: 'space' },
    maxFieldLength: 65_536,
    structureCheck: 'schema',
    ...over,
  };
}

function orm(text: string, extra: Partial<Record<string, unknown>> = {}): MessageSpec {
  return messageSpecSchema.parse({
    message_type: 'ORM^O01^ORM_O01',
    segments: [
      { segment: 'PID', fields: { 1: 1, 3: [{ 1: '15551234567', 4: { 1: 'WHATSAPP', 2: 'https://switchboard.example/sid/whatsapp-user', 3: 'URI' }, 5: 'PT' }], 5: { 1: 'Zoë | O^Brien', 7: 'D' } } },
      { segment: 'ORC', fields: { 1: 'NW', 2: { 1: 'PLACER1', 2: 'SWITCHBOARD' } } },
      { segment: 'OBR', fields: { 1: '1', 2: { 1: 'PLACER1', 2: 'SWITCHBOARD' }, 4: { 1: 'SB-QUESTION', 2: 'Patient question', 3: 'L' } } },
      { segment: 'NTE', fields: { 1: '1', 2: 'P', 3: text } },
      ...((extra['more'] as unknown[]) ?? []),
    ],
  });
}

function redoxNteTexts(er7: string): string[] {
  const json = new Redox.Parser().parse(er7) as { ORDER: { ORDER_DETAIL: { NTE: { 3: string[] }[] } }[] };
  return json.ORDER[0]!.ORDER_DETAIL.NTE.flatMap((n) => n[3]);
}

describe('MSH', () => {
  it('is filled from the destination settings, with a stable 20-character control id', () => {
    const built = buildMessage(orm('hello'), options());
    const msh = Hl7Message.parse(built.text).header;
    expect(msh.getField(2).toString()).toBe('^~\\&');
    expect([3, 4, 5, 6].map((n) => msh.getField(n).toString())).toEqual(['SWITCHBOARD', 'CLINIC', 'LIS', 'LAB']);
    expect(msh.getField(7).toString()).toBe('20250304091502+0000');
    expect(msh.getField(7).toString()).toMatch(HL7_TIMESTAMP_PATTERN);
    expect(msh.getField(9).toString()).toBe('ORM^O01^ORM_O01');
    expect(msh.getField(10).toString()).toBe(built.controlId);
    expect(built.controlId).toMatch(/^[A-Z2-7]{20}$/);
    expect(msh.getField(11).toString()).toBe('P');
    expect(msh.getField(12).toString()).toBe('2.5.1');
    expect(msh.getField(15).toString()).toBe('');
    expect(msh.getField(16).toString()).toBe('');
    expect(msh.getField(18).toString()).toBe('UNICODE UTF-8');
  });

  it('sets MSH-15/16 in enhanced mode and keeps HD components of the settings', () => {
    const built = buildMessage(orm('x'), options({}, { enhanced: { accept: 'AL', application: 'AL' }, sendingApplication: 'SB^1.2.840.1^ISO', processingId: 'T' }));
    const msh = parseEr7(built.text).segments[0]!;
    expect(valueOf(msh, 3, 1)).toBe('SB');
    expect(valueOf(msh, 3, 2)).toBe('1.2.840.1');
    expect(valueOf(msh, 3, 3)).toBe('ISO');
    expect(valueOf(msh, 11)).toBe('T');
    expect(valueOf(msh, 15)).toBe('AL');
    expect(valueOf(msh, 16)).toBe('AL');
  });

  it('derives MSH-10 from the delivery id: same delivery, same id; other delivery, other id', () => {
    const a = controlIdFor('delivery-1');
    expect(controlIdFor('delivery-1')).toBe(a);
    expect(controlIdFor('delivery-2')).not.toBe(a);
    expect(a).toHaveLength(CONTROL_ID_LENGTH);
    const ids = new Set(Array.from({ length: 5000 }, (_, i) => controlIdFor(`d-${i}`)));
    expect(ids.size).toBe(5000);
  });

  it('formats TS with seconds and offset, never a Date object', () => {
    expect(formatHl7Timestamp('2025-12-31T23:59:59.999Z')).toBe('20251231235959+0000');
    expect(() => formatHl7Timestamp('not a date')).toThrow(RangeError);
  });
});

describe('escaping and injection', () => {
  it('writes the reference example exactly (escape \\ first, then | ^ & ~; FT line break \\.br\\)', () => {
    const built = buildMessage(orm('Hi doc | is my A1c ^ ok? 5 < 7 & "fasting" ~ yes\\no\nSecond line 😀 café'), options());
    const nte = built.text.split('\r').find((l) => l.startsWith('NTE'));
    expect(nte).toBe('NTE|1|P|Hi doc \\F\\ is my A1c \\S\\ ok? 5 < 7 \\T\\ "fasting" \\R\\ yes\\E\\no\\.br\\Second line 😀 café');
  });

  it('hostile chat text never adds a field, component or segment, and comes back intact (Medplum + Redox)', () => {
    const built = buildMessage(orm(HOSTILE), options());
    // No control character but the segment separator; no MLLP frame byte.
    expect(built.text).not.toMatch(/[\u0000-\u000c\u000e-\u001f\u007f]/);
    const parsed = Hl7Message.parse(built.text);
    const names = parsed.segments.map((s) => s.name).filter((n) => n !== '');
    expect(names).toEqual(['MSH', 'PID', 'ORC', 'OBR', 'NTE']);
    const nte = parsed.getSegment('NTE')!;
    expect(nte.fields).toHaveLength(4); // name + NTE-1..3
    expect(nte.getField(3).components).toHaveLength(1); // one repetition
    expect(nte.getField(3).components[0]).toHaveLength(1); // one component
    // Redox unescapes \F\ \S\ \T\ \R\ \E\ (not \.br\, a formatting command).
    const [text] = redoxNteTexts(built.text);
    expect(text!.split('\\.br\\').join('\n')).toBe(sanitizeText(HOSTILE));
    expect(sanitizeText(HOSTILE)).toBe('Hi doc | is my A1c ^ ok? 5 < 7 & "fasting" ~ yes\\no\nSecond line 😀 café\nZZZ|injected\nOBX|1|TXend');
    // And our own reader agrees.
    expect(ftToText(valueOf(parseEr7(built.text).segments[4], 3))).toBe(sanitizeText(HOSTILE));
    // PID-5 with delimiters stays one component pair.
    expect(Hl7Message.parse(built.text).getSegment('PID')!.getComponent(5, 1)).toBe('Zoë \\F\\ O\\S\\Brien');
    expect(textOf(parseEr7(built.text).segments[1], 5, 1)).toBe('Zoë | O^Brien');
  });

  it('keeps text that looks like an escape sequence literal (\\F\\ -> \\E\\F\\E\\)', () => {
    // Redox's unescape is naive here (it finds \F\ inside \E\F\E\); our reader and python-hl7
    // (test/integration/mllp-python.test.ts) read it back right.
    const built = buildMessage(orm('typed \\F\\ and \\.br\\ literally'), options());
    expect(built.text).toContain('NTE|1|P|typed \\E\\F\\E\\ and \\E\\.br\\E\\ literally\r');
    expect(textOf(parseEr7(built.text).segments[4], 3)).toBe('typed \\F\\ and \\.br\\ literally');
  });

  it('strips C0 controls, DEL, C1 controls and the MLLP frame bytes; tabs become spaces; lone surrogates become U+FFFD', () => {
    expect(sanitizeText('a\u0000b\u0007c\u000bd\u001ce\u007ff\u0085g\th\ud800')).toBe('abcdef\ng h\ufffd');
    expect(escapeDelimiters('\\|^&~')).toBe('\\E\\\\F\\\\S\\\\T\\\\R\\');
  });

  it('turns line breaks in non-text fields into a space', () => {
    const built = buildMessage(orm('q', {}), options());
    expect(built.text).toContain('Zoë \\F\\ O\\S\\Brien');
    const spec = orm('q');
    (spec.segments[0]!.fields['5'] as Record<string, unknown>)['1'] = 'Line\nBreak';
    expect(buildMessage(spec, options()).text).toContain('PID|1||15551234567^^^WHATSAPP&https://switchboard.example/sid/whatsapp-user&URI^PT||Line Break^^^^^^D');
  });
});

describe('line breaks per field type and partner', () => {
  const nteOf = (text: string): string => text.split('\r').filter((l) => l.startsWith('NTE')).join('\r');

  it('FT: \\.br\\ (default), hex, space', () => {
    expect(nteOf(buildMessage(orm('a\nb'), options()).text)).toBe('NTE|1|P|a\\.br\\b');
    expect(nteOf(buildMessage(orm('a\nb'), options({ lineBreaks: { ft: 'hex', tx: 'repetition', other: 'space' } })).text)).toBe('NTE|1|P|a\\X0D\\\\X0A\\b');
    expect(nteOf(buildMessage(orm('a\nb'), options({ lineBreaks: { ft: 'space', tx: 'repetition', other: 'space' } })).text)).toBe('NTE|1|P|a b');
  });

  it('FT split_segments: one NTE per line, set ids renumbered', () => {
    const built = buildMessage(orm('one\ntwo\nthree'), options({ lineBreaks: { ft: 'split_segments', tx: 'repetition', other: 'space' } }));
    expect(nteOf(built.text)).toBe('NTE|1|P|one\rNTE|2|P|two\rNTE|3|P|three');
  });

  it('TX (OBX-2 = TX): one repetition per line by default', () => {
    const spec = messageSpecSchema.parse({
      message_type: 'MDM^T02^MDM_T02',
      segments: [
        { segment: 'EVN', fields: { 1: 'T02', 2: '20250304091502+0000' } },
        { segment: 'PID', fields: { 1: '1', 3: 'X1', 5: 'DOE' } },
        { segment: 'PV1', fields: { 1: '1', 2: 'N' } },
        { segment: 'TXA', fields: { 1: '1', 2: 'PN', 3: 'TX', 12: 'DOC1', 17: 'DO' } },
        { segment: 'OBX', fields: { 1: '1', 2: 'TX', 3: 'NOTE', 5: 'first line\nsecond | line', 11: 'F' } },
      ],
    });
    const built = buildMessage(spec, options());
    expect(built.structure).toBe('schema (MDM_T02)');
    const obx = Hl7Message.parse(built.text).getSegment('OBX')!;
    expect(obx.getField(5).components.map((r) => r[0])).toEqual(['first line', 'second \\F\\ line']);
  });

  it('splits text longer than max_field_length into repetitions, never inside an escape or a surrogate pair', () => {
    const text = `${'é|😀'.repeat(30)}`;
    const spec = orm(text);
    spec.segments[0]!.fields = { 1: '1', 3: 'X1', 5: 'DOE' };
    const built = buildMessage(spec, options({ maxFieldLength: 16 }));
    const reps = Hl7Message.parse(built.text).getSegment('NTE')!.getField(3).components.map((r) => r[0]!);
    expect(reps.length).toBeGreaterThan(5);
    for (const r of reps) {
      expect([...r].length).toBeLessThanOrEqual(16);
      expect(r).not.toMatch(/\\$|^[FSTRE]\\/);
    }
    expect(reps.join('').split('\\F\\').join('|')).toBe(text);
  });

  it('refuses a non-text field longer than max_field_length (HL7_BUILD_INVALID), naming only the position', () => {
    const spec = orm('ok');
    spec.segments[0]!.fields = { 1: '1', 3: 'X1', 5: 'DOE' };
    (spec.segments[1]!.fields['2'] as Record<string, unknown>)['1'] = 'X'.repeat(40);
    const err = (() => {
      try {
        buildMessage(spec, options({ maxFieldLength: 20 }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(Hl7BuildError);
    expect((err as Hl7BuildError).issues).toEqual(['segments[1].fields.2.1: longer than max_field_length (20) after escaping']);
  });
});

describe('charsets', () => {
  it('ASCII folds accents and replaces what it cannot carry; 8859/1 keeps Latin-1', () => {
    const ascii = buildMessage(orm('café 😀 naïve'), options({}, { charset: 'ASCII' }));
    expect(ascii.text).toContain('NTE|1|P|cafe ? naive');
    expect(ascii.text).toMatch(/\|ASCII\r/);
    expect(/^[\x00-\x7f]*$/.test(ascii.text)).toBe(true);
    const latin1 = buildMessage(orm('café 😀'), options({}, { charset: '8859/1' }));
    expect(latin1.text).toContain('NTE|1|P|café ?');
    expect(latin1.text).toContain('|8859/1\r');
  });
});

describe('canonical output', () => {
  it('never ends a segment, field or component with a stray delimiter, and fills gaps in order', () => {
    const spec = messageSpecSchema.parse({
      message_type: 'ORM^O01^ORM_O01',
      segments: [
        { segment: 'PID', fields: { 5: { 1: 'DOE', 2: 'JANE', 3: '', 7: null }, 3: ['ID1', { 1: 'ID2', 5: '' }, ''], 13: null } },
        { segment: 'ORC', fields: { 1: 'NW' } },
        { segment: 'OBR', fields: { 4: 'X' } },
      ],
    });
    const built = buildMessage(spec, options());
    expect(built.text.split('\r').slice(1, -1)).toEqual(['PID|||ID1~ID2||DOE^JANE', 'ORC|NW', 'OBR||||X']);
    for (const line of built.text.split('\r')) expect(line).not.toMatch(/[|^~&]$/);
  });

  it('accepts numbers (written as is) and null (empty)', () => {
    const spec = orm('x');
    spec.segments[0]!.fields['1'] = 7;
    spec.segments[0]!.fields['2'] = null;
    expect(buildMessage(spec, options()).text).toContain('\rPID|7||15551234567');
  });
});

describe('the mapping shape is validated with path-precise errors', () => {
  it('points at the deepest wrong value and lists every problem', () => {
    const result = messageSpecSchema.safeParse({
      message_type: 'ORM^O01',
      segments: [
        { segment: 'MSH', fields: {} },
        { segment: 'pid', fields: { 3: [{ 1: 'a', 4: { 1: true } }], x: 'y', 5: { 1: [] } } },
        { segment: 'NTE', fields: { 3: [] }, extra: 1 },
      ],
    });
    expect(result.success).toBe(false);
    expect(formatSpecIssues(result.error!)).toEqual(
      expect.arrayContaining([
        'segments[0].segment: MSH is built by Switchboard from the destination settings; leave it out',
        'segments[1].segment: a segment name: three upper-case letters or digits, e.g. "PID"',
        'segments[1].fields.3[0].4.1: expected text, a number or null, got a boolean (write "Y"/"N" or the code the partner expects)',
        'segments[1].fields.x: "x" is not a field number: keys are "1" to "999"',
        'segments[1].fields.5.1: expected text, a number or null, got an array',
        'segments[2].fields.3: an empty array: write null for an empty field',
      ]),
    );
    expect(formatSpecIssues(result.error!).some((i) => i.startsWith('segments[2]') && i.includes('extra'))).toBe(true);
  });

  it('accepts message types with and without the structure', () => {
    expect(messageSpecSchema.safeParse({ message_type: 'ORM^O01', segments: [{ segment: 'PID', fields: {} }] }).success).toBe(true);
    expect(messageSpecSchema.safeParse({ message_type: 'ORM|O01', segments: [{ segment: 'PID', fields: {} }] }).success).toBe(false);
  });
});

describe('the structural check before sending', () => {
  it('refuses a message the v2.5 structure does not allow (missing ORC), naming the segment', () => {
    const spec = orm('x');
    spec.segments.splice(1, 1);
    expect(() => buildMessage(spec, options())).toThrow(/ORM_O01: Message is missing required segment ORC\./);
  });

  it('refuses a segment out of place or unknown in schema mode; delimiters mode takes it', () => {
    const spec = orm('x');
    spec.segments.push({ segment: 'ZSB', fields: { 1: 'custom' } });
    expect(() => buildMessage(spec, options())).toThrow(/not allowed where they are in ORM_O01/);
    const built = buildMessage(spec, options({ structureCheck: 'delimiters' }));
    expect(built.structure).toBe('delimiters');
    expect(built.text).toContain('\rZSB|custom\r');
  });

  it('refuses a root NTE right after PR1 in RQA^I08 (the reference case) and takes OBR + NTE', () => {
    const base = [
      { segment: 'PRD', fields: { 1: 'RP', 2: 'CLINIC' } },
      { segment: 'PID', fields: { 1: '1', 3: 'X', 5: 'DOE' } },
      { segment: 'PR1', fields: { 1: '1', 3: 'P1', 5: '20250101000000+0000' } },
    ];
    const rootNte = messageSpecSchema.parse({ message_type: 'RQA^I08^RQA_I08', segments: [...base, { segment: 'NTE', fields: { 1: '1', 3: 'text' } }] });
    expect(() => buildMessage(rootNte, options())).toThrow(/RQA_I08: Message is missing required segment OBR/);
    const ok = messageSpecSchema.parse({ message_type: 'RQA^I08^RQA_I08', segments: [...base, { segment: 'OBR', fields: { 1: '1', 4: 'A' } }, { segment: 'NTE', fields: { 1: '1', 3: 'text' } }] });
    expect(buildMessage(ok, options()).structure).toBe('schema (RQA_I08)');
  });

  it('asks for structure_check: delimiters when the schema does not know the message type', () => {
    const spec = messageSpecSchema.parse({ message_type: 'ZSB^Z01^ZSB_Z01', segments: [{ segment: 'PID', fields: { 1: '1' } }] });
    expect(() => buildMessage(spec, options())).toThrow(/set structure_check: delimiters/);
    expect(buildMessage(spec, options({ structureCheck: 'delimiters' })).text).toMatch(/\rPID\|1\r$/);
  });

  it('catches text that differs from what was meant (an injected field, a line feed, a stray delimiter)', () => {
    const built = buildMessage(orm('hello'), options());
    const segments = parseEr7(built.text).segments;
    expect(verifyBuiltMessage(built.text, segments, { structure: 'schema' }).issues).toEqual([]);
    expect(verifyBuiltMessage(built.text.replace('NTE|1|P|hello', 'NTE|1|P|hel|lo'), segments, { structure: 'delimiters' }).issues).toEqual([
      'segment 5 (NTE): re-parsed with 4 fields, built 3',
    ]);
    expect(verifyBuiltMessage(built.text.replace('hello', 'hel\nlo'), segments, { structure: 'delimiters' }).issues[0]).toMatch(/control character 0x0a/);
    expect(verifyBuiltMessage(built.text.replace('NTE|1|P|hello', 'NTE|1|P|hello|'), segments, { structure: 'delimiters' }).issues).toEqual([
      'segment 5 (NTE) ends with a stray field separator',
    ]);
    expect(verifyBuiltMessage(built.text.replace('hello', 'hel^lo'), segments, { structure: 'delimiters' }).issues).toEqual(['segment 5 (NTE-3): differs after re-parse']);
  });
});
