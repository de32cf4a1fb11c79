/**
 * Acknowledgments: reading ACKs in the shapes partners send (test/fixtures/hl7, written for
 * Switchboard; ACKs written by others are read in test/conformance/hl7-ack-corpus.test.ts), the ACK
 * code -> action table (with per-partner overrides), the one failure classifier, and the ACKs
 * our sandbox writes (checked with @medplum/core and the Redox schema parser).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Hl7Message } from '@medplum/core';
import { describe, expect, it } from 'vitest';
import { ackActionFor, classifyHl7Failure, hl7v2MllpConfigSchema } from '../../src/connectors/destinations/hl7v2-mllp.js';
import { errorCatalogue } from '../../src/core/errors.js';
import { buildAck, readReply, type Ack } from '../../src/hl7/ack.js';
import { parseEr7 } from '../../src/hl7/er7.js';
import { MllpError } from '../../src/mllp/mllp-client.js';
import { checkReplyReadings } from '../support/hl7-fixture-checks.js';

const require = createRequire(import.meta.url);
const Redox = require('@redoxengine/redox-hl7-v2') as { Parser: new () => { parse(t: string): Record<string, unknown> } };
const fixture = (name: string): string => readFileSync(new URL(`../fixtures/hl7/${name}`, import.meta.url), 'latin1');

const defaults = hl7v2MllpConfigSchema.parse({ kind: 'hl7v2_mllp', name: 'lab', mapping: 'm.jsonata', url: 'mllp://127.0.0.1:2575' }).ack_actions;

function ack(code: Ack['code'], errs: string[] = []): Ack {
  return {
    code,
    acknowledged_control_id: 'CTRL1',
    control_id: 'THEIRS',
    message_type: 'ACK^O01^ACK',
    version: '2.5.1',
    errors: errs.map((c) => ({ location: 'MSH^1^12', code: c, severity: 'E' as const })),
  };
}

describe('reading replies', () => {
  checkReplyReadings(fixture, [
    {
      name: 'reads an AA (v2.6.1) without keeping MSA-3 text',
      file: 'ack_aa_v261_trailing.hl7',
      expected: { kind: 'ack', ack: { code: 'AA', acknowledged_control_id: 'SB000417', control_id: 'LAB000417', message_type: 'ACK', version: '2.6.1', errors: [] } },
      freeText: 'Received and filed',
    },
    {
      name: 'reads an AR with a v2.5.1 ERR: location, code 203 and severity, without ERR-8',
      file: 'ack_ar_err_v251.hl7',
      expected: { kind: 'ack', ack: { code: 'AR', acknowledged_control_id: 'SB000418', message_type: 'ACK^O21^ACK', errors: [{ location: 'MSH^1^12', code: '203', code_text: 'Unsupported version id', severity: 'E' }] } },
      freeText: 'message refused',
    },
    {
      name: 'reads an AE with a v2.3 ERR-1 location, without the MSA-3 text',
      file: 'ack_ae_err_v231.hl7',
      expected: { kind: 'ack', ack: { code: 'AE', acknowledged_control_id: 'SB000419', errors: [{ location: 'PID^1^3' }] } },
      freeText: 'identifier unknown',
    },
    {
      name: 'reads a v2.3 ACK^A01^ACK',
      file: 'ack_aa_a01_v23.hl7',
      expected: { kind: 'ack', ack: { code: 'AA', acknowledged_control_id: 'SBADT0007', message_type: 'ACK^A01^ACK' } },
    },
    {
      name: 'tells a message without MSA apart from an ACK',
      file: 'orm_o01_v23_trailing.hl7',
      expected: { kind: 'not_ack', messageType: 'ORM^O01', controlId: 'ORD20260214091501' },
    },
  ]);

  it('tells garbage apart from an ACK', () => {
    expect(readReply('HTTP/1.1 400 Bad Request\r\n')).toMatchObject({ kind: 'unparsable' });
    expect(readReply('MSH|^~\\&|A|B|C|D|20250101||ACK|1|P|2.5.1\rMSA|XX|1\r')).toMatchObject({ kind: 'unparsable', reason: expect.stringContaining('code') });
    expect(readReply('MSH|^~\\&|A|B|C|D|20250101||ACK|1|P|2.5.1\rMSA|AA\r')).toMatchObject({ kind: 'unparsable' });
  });
});

describe('ACK code -> action', () => {
  it('follows the reference table by default', () => {
    expect(ackActionFor(ack('AA'), defaults)).toBe('delivered');
    expect(ackActionFor(ack('CA'), defaults)).toBe('delivered');
    expect(ackActionFor(ack('AE', ['101']), defaults)).toBe('dead_letter');
    expect(ackActionFor(ack('CE'), defaults)).toBe('dead_letter');
    expect(ackActionFor(ack('AR'), defaults)).toBe('retry');
    expect(ackActionFor(ack('AR', ['207']), defaults)).toBe('retry');
    expect(ackActionFor(ack('AR', ['206']), defaults)).toBe('retry');
    for (const code of ['200', '201', '202', '203']) expect(ackActionFor(ack('AR', [code]), defaults)).toBe('pause');
    expect(ackActionFor(ack('CR', ['200']), defaults)).toBe('pause');
  });

  it('can be overridden per partner', () => {
    const actions = hl7v2MllpConfigSchema.parse({
      kind: 'hl7v2_mllp',
      name: 'lab',
      mapping: 'm.jsonata',
      url: 'mllp://127.0.0.1:2575',
      ack_actions: { AE: 'retry', AR: 'dead_letter', pause_on_error_codes: ['204'] },
    }).ack_actions;
    expect(ackActionFor(ack('AE'), actions)).toBe('retry');
    expect(ackActionFor(ack('AR', ['203']), actions)).toBe('dead_letter');
    expect(ackActionFor(ack('AR', ['204']), actions)).toBe('pause');
    expect(ackActionFor(ack('CE'), actions)).toBe('dead_letter');
  });
});

describe('the failure classifier', () => {
  const endpoint = 'mllp://127.0.0.1:2575';

  it('dead-letters AE with the ERR details and no free text', () => {
    const e = classifyHl7Failure({ kind: 'ack', ack: ack('AE', ['101']), action: 'dead_letter', controlId: 'CTRL1' }, endpoint);
    expect(e.code).toBe('HL7_ACK_AE');
    expect(e.disposition).toBe('permanent');
    expect(e.pauseDestination).toBe(false);
    expect(e.details).toMatchObject({ control_id: 'CTRL1', ack_code: 'AE', msa_2: 'CTRL1', err: [{ code: '101', location: 'MSH^1^12', severity: 'E' }] });
    expect(e.message).toContain('ERR-3 101');
  });

  it('retries AR, pauses on 200-203', () => {
    const retry = classifyHl7Failure({ kind: 'ack', ack: ack('AR'), action: 'retry', controlId: 'C' }, endpoint);
    expect([retry.code, retry.disposition, retry.pauseDestination]).toEqual(['HL7_ACK_AR', 'retryable', false]);
    const pause = classifyHl7Failure({ kind: 'ack', ack: ack('AR', ['203']), action: 'pause', controlId: 'C' }, endpoint);
    expect([pause.code, pause.disposition, pause.pauseDestination]).toEqual(['HL7_PARTNER_REJECTS_TYPE', 'retryable', true]);
  });

  it('maps transport failures to retryable MLLP codes', () => {
    const cases: [MllpError, string][] = [
      [new MllpError('connect', 'refused', 'ECONNREFUSED'), 'MLLP_CONNECT'],
      [new MllpError('tls', 'bad cert', 'ERR_TLS_CERT_ALTNAME_INVALID'), 'MLLP_CONNECT'],
      [new MllpError('timeout', 'no ACK'), 'MLLP_TIMEOUT'],
      [new MllpError('closed', 'closed'), 'MLLP_CONNECTION_CLOSED'],
      [new MllpError('protocol', 'garbage'), 'HL7_ACK_INVALID'],
    ];
    for (const [err, code] of cases) {
      const c = classifyHl7Failure({ kind: 'thrown', error: err }, endpoint);
      expect(c.code).toBe(code);
      expect(c.disposition).toBe('retryable');
    }
    expect(classifyHl7Failure({ kind: 'thrown', error: new TypeError('x') }, endpoint).code).toBe('INTERNAL');
  });

  it('uses codes from the error catalogue', () => {
    for (const code of ['HL7_BUILD_INVALID', 'HL7_ACK_AE', 'HL7_ACK_AR', 'HL7_PARTNER_REJECTS_TYPE', 'HL7_ACK_INVALID', 'MLLP_CONNECT', 'MLLP_TIMEOUT', 'MLLP_CONNECTION_CLOSED']) {
      expect(errorCatalogue).toHaveProperty(code);
    }
  });
});

describe('ACKs we write (sandbox peers)', () => {
  const original = parseEr7(
    'MSH|^~\\&|SWITCHBOARD|CLINIC|LIS|LAB|20250304091502+0000||ORM^O01^ORM_O01|ABCDEFGHIJKLMNOPQRST|T|2.5.1\rPID|1||X\rORC|NW\rOBR|1||||\r',
  ).segments;

  it('swaps MSH-3/4 with 5/6, echoes MSH-11/12, has its own MSH-10 and MSA-2 = our MSH-10', () => {
    const text = buildAck(original, { code: 'AA', controlId: 'LABACK0001', timestamp: new Date('2025-03-04T09:15:03Z') });
    expect(text).toBe('MSH|^~\\&|LIS|LAB|SWITCHBOARD|CLINIC|20250304091503+0000||ACK^O01^ACK|LABACK0001|T|2.5.1\rMSA|AA|ABCDEFGHIJKLMNOPQRST\r');
    expect(Hl7Message.parse(text).getSegment('MSA')!.getField(2).toString()).toBe('ABCDEFGHIJKLMNOPQRST');
    expect(new Redox.Parser().parse(text)).toMatchObject({ MSA: { 1: 'AA', 2: 'ABCDEFGHIJKLMNOPQRST' } });
  });

  it('writes ERR in the v2.5 layout, read back by our reader', () => {
    const text = buildAck(original, { code: 'AR', errors: [{ code: '203', location: 'MSH^1^12' }] });
    expect(text).toMatch(/\rERR\|\|MSH\^1\^12\|203\^Unsupported version id\^HL70357\|E\r$/);
    expect(readReply(text)).toMatchObject({ kind: 'ack', ack: { code: 'AR', errors: [{ code: '203', location: 'MSH^1^12', severity: 'E' }] } });
    expect(buildAck(original, { code: 'AA' }).split('\r')[0]!.split('|')[9]!.length).toBeLessThanOrEqual(20);
  });
});
