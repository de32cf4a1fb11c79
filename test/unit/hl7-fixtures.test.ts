/**
 * Every HL7 fixture of shared/fixtures/hl7 (messages written by others: nHapi, python-hl7,
 * simple-hl7, HL7-dotnetcore, ex_hl7, hl7-standard, HL7 spec examples) through our parser and
 * the wrapped hl7-standard serializer:
 *
 * - lossless: parse -> serialize gives the input back byte for byte, for all 19 (batches too);
 * - canonical: the builder trims trailing empty fields/components/repetitions, so only inputs
 *   without such stray delimiters survive trim -> serialize unchanged. The table below says
 *   which fixtures are canonical and, for the others, why not;
 * - @medplum/core, an independent parser, sees the same segments and fields.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Hl7Message } from '@medplum/core';
import { describe, expect, it } from 'vitest';
import { fieldText, parseEr7, referenceEr7, trimSegment } from '../../src/hl7/er7.js';
import { serializeWithHl7Standard } from '../../src/hl7/hl7-standard-serializer.js';

const FIXTURES = '/work/shared/fixtures/hl7';
const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.hl7')).sort();

/** Why a fixture is not canonical (it has delimiters a canonical writer would not emit). */
const NOT_CANONICAL: Record<string, string> = {
  'ack_aa__nhapi.hl7': 'MSH and MSA end with an empty field (trailing |)',
  'ack_ae_err__nhapi.hl7': 'empty trailing components (^^) in MSH-3..6 and MSA-6, trailing | on every segment',
  'ack_ar_err_v251__nhapi.hl7': 'MSH ends with three empty fields (|||)',
  'adt__hl7dotnetcore.hl7': 'names padded with empty components (DOE^JOHN^^^^), NK1/PV1 with dozens of trailing empty fields',
  'adt__simplehl7.hl7': 'trailing | on MSH/PID, padded names, NK1/PV1 trailing empty fields',
  'hl7standard_test_batch.hl7': 'written by hl7-standard itself: trailing | and padded components everywhere (its defect 9)',
  'hl7standard_test_message.hl7': 'written by hl7-standard itself: trailing | and padded components everywhere (its defect 9)',
  'mdm_t02_obx_tx_escapes__nhapi.hl7': 'MSH ends with eight empty fields',
  'orm_o01__simplehl7.hl7': 'PID ends with empty fields, PV1 with a trailing |',
  'oru_r01_imm__simplehl7.hl7': 'trailing | on most segments (a hand-typed VAERS sample)',
  'oru_r01_lipid__simplehl7.hl7': 'trailing | on most segments, empty components in OBX-18',
  'rpa_i08__exhl7.hl7': 'MSA-6 ends with an empty component (B006^), PR1-4 with one (NA^)',
};

describe('HL7 fixtures through our parser and builder', () => {
  it('has the fixtures SOURCES.md lists', () => {
    expect(files).toHaveLength(19);
  });

  it.each(files)('%s: parse -> serialize is byte for byte', (file) => {
    const text = readFileSync(path.join(FIXTURES, file), 'latin1');
    const parsed = parseEr7(text);
    expect(parsed.lineEnding).toBe('\r');
    expect(parsed.trailingSeparator).toBe(true);
    expect(serializeWithHl7Standard(parsed.segments)).toBe(text);
  });

  it.each(files)('%s: canonical form as documented', (file) => {
    const text = readFileSync(path.join(FIXTURES, file), 'latin1');
    const canonical = referenceEr7(parseEr7(text).segments.map(trimSegment));
    if (NOT_CANONICAL[file]) {
      expect(canonical, NOT_CANONICAL[file]).not.toBe(text);
      if (file.includes('batch')) return; // @medplum/core reads single messages only
      // Trimming removes only empty positions: the independent parser reads the same values.
      const a = Hl7Message.parse(text);
      const b = Hl7Message.parse(canonical);
      for (let s = 0; s < a.segments.length; s++) {
        const sa = a.segments[s]!;
        for (let f = 1; f < sa.fields.length; f++) {
          for (let c = 1; c <= 12; c++) expect(b.segments[s]!.getComponent(f, c)).toBe(sa.getComponent(f, c));
        }
      }
    } else {
      expect(serializeWithHl7Standard(parseEr7(text).segments.map(trimSegment))).toBe(text);
    }
  });

  it.each(files.filter((f) => !f.includes('batch')))('%s: @medplum/core sees the same segments and fields', (file) => {
    const text = readFileSync(path.join(FIXTURES, file), 'latin1');
    const ours = parseEr7(text).segments;
    const theirs = Hl7Message.parse(text);
    expect(theirs.toString()).toBe(text);
    const segments = theirs.segments.filter((s) => s.name !== '');
    expect(segments.map((s) => s.name)).toEqual(ours.map((s) => s.name));
    segments.forEach((s, i) => {
      expect(s.fields.slice(1).map((f) => f.toString())).toEqual(ours[i]!.fields.map((f) => fieldText(f)));
    });
  });
});
