/**
 * The hl7v2_mllp destination against Debian's python3-hl7 asyncio MLLP server (run as a python3
 * subprocess, test/support/hl7-python-peer.py): a non-JS partner whose parser and unescaping we
 * did not write. python-hl7 decodes ASCII by default: the UTF-8
 * configuration is tested explicitly, and so is what happens without it (no ACK, and how the
 * destination's `charset: ASCII` fallback gets through).
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hl7v2MllpConfigSchema, hl7v2MllpDestination } from '../../src/connectors/destinations/hl7v2-mllp.js';
import type { DeliveryContext, DestinationInstance } from '../../src/connectors/types.js';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { SwitchboardError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { controlIdFor } from '../../src/hl7/control-id.js';
import { loadMapping } from '../../src/mapping/jsonata-mapping.js';
import { repoRoot } from '../support/gateway.js';
import { pythonHl7Available, startPythonPeer, type PythonPeer } from '../support/python-hl7-peer.js';
import { canonicalTextMessage } from '../support/canonical-text-message.js';

const logger = createLogger({ level: 'silent' });
const available = pythonHl7Available();
if (!available && process.env['CI'] === 'true') {
  throw new Error('python3-hl7 is not installed and CI=true: install it (apt-get install -y python3-hl7)');
}

/** Chat text with every delimiter, the escape character, CR/LF, frame bytes, accents and emoji. */
const HOSTILE = 'Is it | ^ ~ \\ & ok?\r\nLine two: café, naïve, 😀\nZZZ|injected\rOBX|1|TX\u000b\u001c!';

function message(text: string): CanonicalMessage {
  return canonicalTextMessage(text, 'Zoë');
}

const opened: DestinationInstance[] = [];
async function destination(url: string, extra: Record<string, unknown> = {}): Promise<DestinationInstance> {
  const mapping = await loadMapping(path.join(repoRoot, 'mappings', 'lab-question-to-orm.jsonata'));
  const config = hl7v2MllpConfigSchema.parse({ kind: 'hl7v2_mllp', name: 'lab', mapping: 'lab-question-to-orm.jsonata', url, ack_timeout_ms: 3000, ...extra });
  const d = hl7v2MllpDestination.create(config, { channelId: 'test', logger, mapping });
  opened.push(d);
  return d;
}
const ctx = (deliveryId: string): DeliveryContext => ({ deliveryId, messageId: 'm', attempt: 1, signal: new AbortController().signal, logger, now: new Date('2025-03-04T09:15:02Z') });

afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
});

describe.skipIf(!available)('python3-hl7 MLLP server configured for UTF-8', () => {
  let peer: PythonPeer;
  beforeAll(async () => {
    peer = await startPythonPeer({ encoding: 'utf-8' });
  });
  afterAll(async () => {
    await peer?.close();
  });

  it('acknowledges AA with MSA-2 = our MSH-10, and reads the hostile text back intact (python-hl7 unescape)', async () => {
    const d = await destination(peer.url);
    const id = randomUUID();
    const out = await d.deliver(message(HOSTILE), ctx(id));
    expect(out.detail).toMatchObject({ ack_code: 'AA', msa_2: controlIdFor(id), ack_message_type: 'ACK^O01^ACK' });
    const got = await peer.waitFor((e) => e.event === 'message' && e.control_id === controlIdFor(id));
    expect(got.segments).toEqual(['MSH', 'PID', 'ORC', 'OBR', 'NTE']);
    expect(got.field_counts![4]).toBe(3); // NTE-1..3: nothing injected
    expect(got.charset).toBe('UNICODE UTF-8');
    // python-hl7 turns \.br\ into \r; the frame bytes were stripped before sending.
    expect(got.nte_3).toEqual(['Is it | ^ ~ \\ & ok?\rLine two: café, naïve, 😀\rZZZ|injected\rOBX|1|TX!']);
  });

  it('reads text that looks like an escape sequence literally (\\F\\ typed by a patient)', async () => {
    const d = await destination(peer.url);
    const id = randomUUID();
    await d.deliver(message('I typed \\F\\ and \\.br\\ on purpose'), ctx(id));
    const got = await peer.waitFor((e) => e.event === 'message' && e.control_id === controlIdFor(id));
    expect(got.nte_3).toEqual(['I typed \\F\\ and \\.br\\ on purpose']);
  });
});

describe.skipIf(!available)('python3-hl7 MLLP server left at its ASCII default', () => {
  let peer: PythonPeer;
  beforeAll(async () => {
    peer = await startPythonPeer();
  });
  afterAll(async () => {
    await peer?.close();
  });

  it('cannot decode UTF-8 and sends no ACK: the delivery times out (retryable), as the reference measured', async () => {
    const d = await destination(peer.url, { ack_timeout_ms: 500 });
    const err = await d.deliver(message('café 😀'), ctx(randomUUID())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchboardError);
    expect(err).toMatchObject({ code: 'MLLP_TIMEOUT', disposition: 'retryable' });
    await peer.waitFor((e) => e.event === 'decode_error');
  });

  it('gets through with the destination set to charset: ASCII (accents folded, emoji replaced)', async () => {
    const d = await destination(peer.url, { charset: 'ASCII' });
    const id = randomUUID();
    const out = await d.deliver(message('café 😀 | ok'), ctx(id));
    expect(out.detail['ack_code']).toBe('AA');
    const got = await peer.waitFor((e) => e.event === 'message' && e.control_id === controlIdFor(id));
    expect(got.nte_3).toEqual(['cafe ? | ok']);
    expect(got.charset).toBe('ASCII');
  });
});

describe.skipIf(!available)('python3-hl7 answering AE', () => {
  it('dead-letters (HL7_ACK_AE, permanent)', async () => {
    const peer = await startPythonPeer({ encoding: 'utf-8', ack: 'AE' });
    try {
      const d = await destination(peer.url);
      const err = await d.deliver(message('x'), ctx(randomUUID())).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'HL7_ACK_AE', disposition: 'permanent' });
    } finally {
      await peer.close();
    }
  });
});
