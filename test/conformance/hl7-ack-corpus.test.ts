/** Conformance: ACKs written by others (nHapi, python-hl7) and a message without MSA, read by our reply reader. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describeConformance } from '../support/conformance-corpus.js';
import { checkReplyReadings } from '../support/hl7-fixture-checks.js';

describeConformance('conformance: reading ACKs written by others', 'hl7', (dir) =>
  checkReplyReadings((name) => readFileSync(path.join(dir, name), 'latin1'), [
    {
      name: 'reads an AA (nHapi, v2.6.1) without keeping MSA-3 text',
      file: 'ack_aa__nhapi.hl7',
      expected: { kind: 'ack', ack: { code: 'AA', acknowledged_control_id: '9B38584D', control_id: '9B38584D', message_type: 'ACK', version: '2.6.1', errors: [] } },
      freeText: 'okay',
    },
    {
      name: 'reads an AR with a v2.5.1 ERR: location, code 203 and severity, without ERR-8',
      file: 'ack_ar_err_v251__nhapi.hl7',
      expected: { kind: 'ack', ack: { code: 'AR', acknowledged_control_id: '9299381', message_type: 'ACK^V04^ACK', errors: [{ location: 'MSH^1^12', code: '203', code_text: 'Unsupported version id', severity: 'E' }] } },
      freeText: 'Message rejected',
    },
    {
      name: 'reads an AE with a v2.3 ERR-1 location, without the MSA-3 text',
      file: 'ack_ae_err__nhapi.hl7',
      expected: { kind: 'ack', ack: { code: 'AE', acknowledged_control_id: '00000001', errors: [{ location: 'PID^1^3' }] } },
      freeText: 'Patient id',
    },
    {
      name: "reads python-hl7's ACK^A01^ACK",
      file: 'ack_aa_a01__pythonhl7.hl7',
      expected: { kind: 'ack', ack: { code: 'AA', acknowledged_control_id: 'HL7MSG00001', message_type: 'ACK^A01^ACK' } },
    },
    {
      name: 'tells a message without MSA from an ACK',
      file: 'orm_o01__simplehl7.hl7',
      expected: { kind: 'not_ack', messageType: 'ORM^O01', controlId: 'MSGID20060307110114' },
    },
  ]),
);
