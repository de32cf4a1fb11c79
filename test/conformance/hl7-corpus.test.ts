/**
 * Conformance: every HL7 message of the corpus (written by others: nHapi, python-hl7,
 * simple-hl7, HL7-dotnetcore, ex_hl7, hl7-standard, HL7 spec examples) through the same checks
 * as the project's own fixtures. Runs only when the corpus is beside the checkout.
 */
import { describeConformance } from '../support/conformance-corpus.js';
import { checkHl7Fixtures } from '../support/hl7-fixture-checks.js';

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

describeConformance('conformance: the HL7 corpus through our parser and builder', 'hl7', (dir) => checkHl7Fixtures(dir, NOT_CANONICAL, 19));
