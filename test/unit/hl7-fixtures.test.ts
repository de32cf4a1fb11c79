/**
 * The project's own HL7 fixtures (test/fixtures/hl7, written for Switchboard, see its SOURCES.md)
 * through our parser and the wrapped hl7-standard serializer: lossless, canonical as documented,
 * and read the same by @medplum/core. The same checks over messages written by others are in
 * test/conformance/hl7-corpus.test.ts.
 */
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';
import { checkHl7Fixtures } from '../support/hl7-fixture-checks.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/hl7/', import.meta.url));

/** Why a fixture is not canonical (it has delimiters a canonical writer would not emit). */
const NOT_CANONICAL: Record<string, string> = {
  'ack_aa_v261_trailing.hl7': 'MSH and MSA end with an empty field (trailing |)',
  'ack_ae_err_v231.hl7': 'empty trailing components (^^) in MSH-3..6 and MSA-6, trailing | on every segment',
  'ack_ar_err_v251.hl7': 'MSH ends with three empty fields (|||)',
  'adt_a04_padded.hl7': 'names padded with empty components (EXAMPLE^JOHN^^^^), NK1/PV1 with dozens of trailing empty fields',
  'mdm_t02_trailing.hl7': 'MSH ends with eight empty fields, OBX with a trailing |',
  'orm_o01_v23_trailing.hl7': 'PID ends with empty fields, PV1 with a trailing |',
};

describe('HL7 fixtures of the project through our parser and builder', () => checkHl7Fixtures(FIXTURES, NOT_CANONICAL, 11));
