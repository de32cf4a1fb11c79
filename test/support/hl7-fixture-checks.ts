/**
 * The checks every HL7 fixture folder goes through, whoever wrote the messages (the project's own
 * test/fixtures/hl7, or the optional conformance corpus):
 *
 * - lossless: parse -> serialize gives the input back byte for byte (batches too);
 * - canonical: the builder trims trailing empty fields/components/repetitions, so only inputs
 *   without such stray delimiters survive trim -> serialize unchanged. The table says which
 *   fixtures are not canonical and why;
 * - @medplum/core, an independent parser, sees the same segments and fields.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Hl7Message } from '@medplum/core';
import { expect, it } from 'vitest';
import { readReply } from '../../src/hl7/ack.js';
import { fieldText, parseEr7, referenceEr7, trimSegment } from '../../src/hl7/er7.js';
import { serializeWithHl7Standard } from '../../src/hl7/hl7-standard-serializer.js';

/** Declares the tests for every `.hl7` file of `dir`; `notCanonical` names each non-canonical file and why. */
export function checkHl7Fixtures(dir: string, notCanonical: Record<string, string>, expectedFiles: number): void {
  const files = readdirSync(dir).filter((f) => f.endsWith('.hl7')).sort();
  const read = (file: string): string => readFileSync(path.join(dir, file), 'latin1');

  it('has the fixtures SOURCES.md lists, and the table names only existing files', () => {
    expect(files).toHaveLength(expectedFiles);
    for (const name of Object.keys(notCanonical)) expect(files).toContain(name);
  });

  it.each(files)('%s: parse -> serialize is byte for byte', (file) => {
    const text = read(file);
    const parsed = parseEr7(text);
    expect(parsed.lineEnding).toBe('\r');
    expect(parsed.trailingSeparator).toBe(true);
    expect(serializeWithHl7Standard(parsed.segments)).toBe(text);
  });

  it.each(files)('%s: canonical form as documented', (file) => {
    const text = read(file);
    const canonical = referenceEr7(parseEr7(text).segments.map(trimSegment));
    const why = notCanonical[file];
    if (why === undefined) {
      expect(serializeWithHl7Standard(parseEr7(text).segments.map(trimSegment))).toBe(text);
      return;
    }
    expect(canonical, why).not.toBe(text);
    if (isBatch(text)) return; // @medplum/core reads single messages only
    // Trimming removes only empty positions: the independent parser reads the same values.
    const a = Hl7Message.parse(text);
    const b = Hl7Message.parse(canonical);
    for (let s = 0; s < a.segments.length; s++) {
      const sa = a.segments[s]!;
      for (let f = 1; f < sa.fields.length; f++) {
        for (let c = 1; c <= 12; c++) expect(b.segments[s]!.getComponent(f, c)).toBe(sa.getComponent(f, c));
      }
    }
  });

  it.each(files.filter((f) => !isBatch(read(f))))('%s: @medplum/core sees the same segments and fields', (file) => {
    const text = read(file);
    const ours = parseEr7(text).segments;
    const theirs = Hl7Message.parse(text);
    expect(theirs.toString()).toBe(text);
    const segments = theirs.segments.filter((s) => s.name !== '');
    expect(segments.map((s) => s.name)).toEqual(ours.map((s) => s.name));
    segments.forEach((s, i) => {
      expect(s.fields.slice(1).map((f) => f.toString())).toEqual(ours[i]!.fields.map((f) => fieldText(f)));
    });
  });
}

function isBatch(text: string): boolean {
  return /^(FHS|BHS)\|/.test(text);
}

/** One reply file and what our reader must make of it. */
export interface ReplyReading {
  name: string;
  file: string;
  /** Matched against readReply()'s result. */
  expected: Record<string, unknown>;
  /** Free text of the reply (MSA-3, ERR-8) that must not be kept. */
  freeText?: string;
}

/** Declares one test per row: readReply() over the file gives `expected` and keeps no free text. */
export function checkReplyReadings(read: (file: string) => string, rows: ReplyReading[]): void {
  for (const row of rows) {
    it(row.name, () => {
      const text = read(row.file);
      const r = readReply(text);
      expect(r).toMatchObject(row.expected);
      if (row.freeText !== undefined) {
        expect(text).toContain(row.freeText);
        expect(JSON.stringify(r.kind === 'ack' ? r.ack : {})).not.toContain(row.freeText);
      }
    });
  }
}
