/** Conformance: ACKs written by others (nHapi, python-hl7) and a message without MSA, read by our reply reader. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { readReply } from '../../src/hl7/ack.js';
import { describeConformance } from '../support/conformance-corpus.js';

describeConformance('conformance: reading ACKs written by others', 'hl7', (dir) => {
  const fixture = (name: string): string => readFileSync(path.join(dir, name), 'latin1');

  it('reads an AA (nHapi, v2.6.1) without keeping MSA-3 text', () => {
    const r = readReply(fixture('ack_aa__nhapi.hl7'));
    expect(r).toMatchObject({ kind: 'ack', ack: { code: 'AA', acknowledged_control_id: '9B38584D', control_id: '9B38584D', message_type: 'ACK', version: '2.6.1', errors: [] } });
    expect(JSON.stringify(r.kind === 'ack' ? r.ack : {})).not.toContain('okay');
  });

  it('reads an AR with a v2.5.1 ERR: location, code 203 and severity', () => {
    const r = readReply(fixture('ack_ar_err_v251__nhapi.hl7'));
    expect(r).toMatchObject({
      kind: 'ack',
      ack: {
        code: 'AR',
        acknowledged_control_id: '9299381',
        message_type: 'ACK^V04^ACK',
        errors: [{ location: 'MSH^1^12', code: '203', code_text: 'Unsupported version id', severity: 'E' }],
      },
    });
    // ERR-8's user message (free text) is not kept.
    expect(JSON.stringify(r.kind === 'ack' ? r.ack : {})).not.toContain('Message rejected');
  });

  it('reads an AE with a v2.3 ERR-1 location, without the MSA-3 text', () => {
    const r = readReply(fixture('ack_ae_err__nhapi.hl7'));
    expect(r).toMatchObject({ kind: 'ack', ack: { code: 'AE', acknowledged_control_id: '00000001', errors: [{ location: 'PID^1^3' }] } });
    expect(JSON.stringify(r.kind === 'ack' ? r.ack : {})).not.toContain('Patient id');
  });

  it('reads python-hl7\'s ACK^A01^ACK', () => {
    expect(readReply(fixture('ack_aa_a01__pythonhl7.hl7'))).toMatchObject({ kind: 'ack', ack: { code: 'AA', acknowledged_control_id: 'HL7MSG00001', message_type: 'ACK^A01^ACK' } });
  });

  it('tells a message without MSA from an ACK', () => {
    expect(readReply(fixture('orm_o01__simplehl7.hl7'))).toMatchObject({ kind: 'not_ack', messageType: 'ORM^O01', controlId: 'MSGID20060307110114' });
  });
});
