/**
 * The hl7v2_mllp destination against MLLP peers we did not write: @medplum/hl7 5.x's server
 * (plain, enhanced mode, and over node:tls with mutual TLS). A raw socket stands in for a partner
 * only where a real one cannot be made to misbehave on cue (wrong MSA-2, ACK split across writes).
 *
 * Each `deliver()` call is one attempt, as the pipeline makes them: a retryable failure means the
 * pipeline calls deliver() again later with the same delivery id, hence the same MSH-10.
 */
import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hl7v2MllpConfigSchema, hl7v2MllpDestination } from '../../src/connectors/destinations/hl7v2-mllp.js';
import type { DeliveryContext, DestinationInstance } from '../../src/connectors/types.js';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { SwitchboardError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { buildAck } from '../../src/hl7/ack.js';
import { controlIdFor } from '../../src/hl7/control-id.js';
import { ftToText, parseEr7, valueOf } from '../../src/hl7/er7.js';
import { loadMapping } from '../../src/mapping/jsonata-mapping.js';
import { MllpDeframer, frame } from '../../src/mllp/mllp-frame.js';
import { repoRoot } from '../support/gateway.js';
import { startMedplumPeer, type MedplumPeer } from '../support/medplum-hl7-peer.js';
import { createTestPki, opensslAvailable, type TestPki } from '../support/tls-certs.js';
import { canonicalTextMessage } from '../support/canonical-text-message.js';

const logger = createLogger({ level: 'silent' });
const TEXT = 'Are my blood test results back? | ^ ~ \\ &\nThanks, Zoë 😀';

function message(text = TEXT): CanonicalMessage {
  return canonicalTextMessage(text, 'Zoë Demo');
}

const opened: DestinationInstance[] = [];
async function destination(url: string, extra: Record<string, unknown> = {}): Promise<DestinationInstance> {
  const mapping = await loadMapping(path.join(repoRoot, 'mappings', 'lab-question-to-orm.jsonata'));
  const config = hl7v2MllpConfigSchema.parse({
    kind: 'hl7v2_mllp',
    name: 'lab',
    mapping: 'lab-question-to-orm.jsonata',
    url,
    ack_timeout_ms: 2000,
    connect_timeout_ms: 2000,
    reconnect: { initial_delay_ms: 20, max_delay_ms: 200 },
    receiving_application: 'LIS',
    ...extra,
  });
  const d = hl7v2MllpDestination.create(config, { channelId: 'test', logger, mapping });
  opened.push(d);
  return d;
}

function ctx(deliveryId: string, attempt = 1): DeliveryContext {
  return { deliveryId, messageId: 'm', attempt, signal: new AbortController().signal, logger, now: new Date('2025-03-04T09:15:02Z') };
}

async function failure(p: Promise<unknown>): Promise<SwitchboardError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SwitchboardError) return err;
    throw err;
  }
  throw new Error('expected the delivery to fail');
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
});

describe('against @medplum/hl7 5.x (a well-behaved partner)', () => {
  let peer: MedplumPeer;
  beforeAll(async () => {
    peer = await startMedplumPeer();
  });
  afterAll(async () => {
    await peer?.close();
  });

  it('AA: delivered, the ACK recorded, MSA-2 = MSH-10, and the text intact at the partner', async () => {
    peer.reply = () => ({ code: 'AA' });
    const d = await destination(peer.url);
    const id = randomUUID();
    const out = await d.deliver(message(), ctx(id));
    const controlId = controlIdFor(id);
    expect(out.detail).toMatchObject({ control_id: controlId, ack_code: 'AA', msa_2: controlId, ack_message_type: 'ACK^O01^ACK', message_type: 'ORM^O01^ORM_O01', new_connection: true });
    expect(out.detail['ack_control_id']).not.toBe(controlId);
    const receipt = peer.receipts.find((r) => r.controlId === controlId)!;
    const segments = parseEr7(receipt.text).segments;
    expect(segments.map((s) => s.name)).toEqual(['MSH', 'PID', 'ORC', 'OBR', 'NTE']);
    expect(segments[4]!.fields).toHaveLength(3);
    expect(ftToText(valueOf(segments[4], 3))).toBe(TEXT);
  });

  it('keeps one persistent connection for many messages, one in flight at a time', async () => {
    peer.reply = () => ({ code: 'AA' });
    const d = await destination(peer.url);
    const before = peer.connections();
    const outs = await Promise.all(Array.from({ length: 5 }, () => d.deliver(message(), ctx(randomUUID()))));
    expect(outs.every((o) => o.detail['ack_code'] === 'AA')).toBe(true);
    expect(outs.filter((o) => o.detail['new_connection'] === true)).toHaveLength(1);
    expect(peer.connections() - before).toBe(1);
  });

  it('AE: a permanent HL7_ACK_AE with the ERR location, code and severity (dead-letter)', async () => {
    peer.reply = () => ({ code: 'AE', err: 'ERR||PID^1^3|101^Required field missing^HL70357|E||||Patient Jane Doe unknown' });
    const d = await destination(peer.url);
    const err = await failure(d.deliver(message(), ctx(randomUUID())));
    expect(err.code).toBe('HL7_ACK_AE');
    expect(err.disposition).toBe('permanent');
    expect(err.details['err']).toEqual([{ location: 'PID^1^3', code: '101', code_text: 'Required field missing', severity: 'E' }]);
    expect(JSON.stringify(err.details)).not.toContain('Jane'); // ERR-8 free text is not kept
  });

  it('AR: retried unchanged with the same MSH-10, then delivered', async () => {
    peer.reply = (r) => (r.seenBefore === 0 ? { code: 'AR' } : { code: 'AA' });
    const d = await destination(peer.url);
    const id = randomUUID();
    const err = await failure(d.deliver(message(), ctx(id, 1)));
    expect([err.code, err.disposition, err.pauseDestination]).toEqual(['HL7_ACK_AR', 'retryable', false]);
    const out = await d.deliver(message(), ctx(id, 2));
    expect(out.detail['ack_code']).toBe('AA');
    const got = peer.receipts.filter((r) => r.controlId === controlIdFor(id));
    expect(got).toHaveLength(2);
    expect(got[0]!.text).toBe(got[1]!.text); // the same bytes, MSH-7 included
  });

  it('AR with ERR-3 203 (unsupported version): pause the destination, the message stays pending', async () => {
    peer.reply = () => ({ code: 'AR', err: 'ERR||MSH^1^12|203^unsupported version id^^HL70357|E' });
    const d = await destination(peer.url);
    const err = await failure(d.deliver(message(), ctx(randomUUID())));
    expect([err.code, err.disposition, err.pauseDestination]).toEqual(['HL7_PARTNER_REJECTS_TYPE', 'retryable', true]);
    expect(err.details['err']).toEqual([{ location: 'MSH^1^12', code: '203', code_text: 'Unsupported version id', severity: 'E' }]);
  });

  it('no ACK: MLLP_TIMEOUT, then the retry carries the same MSH-10 and the partner records it once', async () => {
    peer.reply = (r) => (r.seenBefore === 0 ? 'none' : { code: 'AA' });
    const d = await destination(peer.url, { ack_timeout_ms: 300 });
    const id = randomUUID();
    const started = Date.now();
    const err = await failure(d.deliver(message(), ctx(id, 1)));
    expect(err.code).toBe('MLLP_TIMEOUT');
    expect(err.disposition).toBe('retryable');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    const out = await d.deliver(message(), ctx(id, 2));
    expect(out.detail).toMatchObject({ ack_code: 'AA', new_connection: true }); // the silent connection was dropped
    const got = peer.receipts.filter((r) => r.controlId === controlIdFor(id));
    expect(got.map((r) => r.controlId)).toEqual([controlIdFor(id), controlIdFor(id)]);
    expect(peer.distinct().filter((c) => c === controlIdFor(id))).toHaveLength(1);
  });

  it('connection refused, then the partner comes up: delivered exactly once', async () => {
    const port = await freePort();
    const d = await destination(`mllp://127.0.0.1:${port}`);
    const id = randomUUID();
    const err = await failure(d.deliver(message(), ctx(id, 1)));
    expect(err.code).toBe('MLLP_CONNECT');
    expect(err.details).toMatchObject({ socket_code: 'ECONNREFUSED', failure: 'connect' });
    const late = await startMedplumPeer({ port });
    try {
      await new Promise((r) => setTimeout(r, 50)); // past the reconnect backoff
      const out = await d.deliver(message(), ctx(id, 2));
      expect(out.detail['ack_code']).toBe('AA');
      expect(late.receipts.map((r) => r.controlId)).toEqual([controlIdFor(id)]);
    } finally {
      await d.close();
      await late.close();
    }
  });

  it('AR overridden to dead_letter and AE overridden to retry for a partner that uses the codes its own way', async () => {
    const d = await destination(peer.url, { ack_actions: { AE: 'retry', AR: 'dead_letter' } });
    peer.reply = () => ({ code: 'AE' });
    expect(await failure(d.deliver(message(), ctx(randomUUID())))).toMatchObject({ code: 'HL7_ACK_AE', disposition: 'retryable' });
    peer.reply = () => ({ code: 'AR' });
    expect(await failure(d.deliver(message(), ctx(randomUUID())))).toMatchObject({ code: 'HL7_ACK_AR', disposition: 'permanent' });
  });
});

describe('enhanced acknowledgment mode against @medplum/hl7 5.x', () => {
  let peer: MedplumPeer;
  beforeAll(async () => {
    peer = await startMedplumPeer({ enhanced: true });
  });
  afterAll(async () => {
    await peer?.close();
  });

  it('sends MSH-15/16 AL, takes the CA, then waits for the application ACK on the same connection', async () => {
    peer.reply = () => ({ code: 'AA' });
    const d = await destination(peer.url, { acknowledgment_mode: 'enhanced' });
    const id = randomUUID();
    const out = await d.deliver(message(), ctx(id));
    expect(out.detail).toMatchObject({ commit_ack: 'CA', ack_code: 'AA', application_ack: 'received', msa_2: controlIdFor(id) });
    const msh = parseEr7(peer.receipts.find((r) => r.controlId === controlIdFor(id))!.text).segments[0];
    expect([valueOf(msh, 15), valueOf(msh, 16)]).toEqual(['AL', 'AL']);
  });

  it('records a CA without an application ACK in time as delivered (committed), never resent', async () => {
    peer.reply = () => 'none';
    const d = await destination(peer.url, { acknowledgment_mode: 'enhanced', ack_timeout_ms: 300 });
    const out = await d.deliver(message(), ctx(randomUUID()));
    expect(out.detail).toMatchObject({ ack_code: 'CA', application_ack: 'not_received_committed' });
  });

  it('takes a CA as final when MSH-16 is NE', async () => {
    peer.reply = () => 'none';
    const d = await destination(peer.url, { acknowledgment_mode: 'enhanced', application_ack: 'NE' });
    const started = Date.now();
    const out = await d.deliver(message(), ctx(randomUUID()));
    expect(out.detail['ack_code']).toBe('CA');
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe.skipIf(!opensslAvailable())('mutual TLS against @medplum/hl7 connections over node:tls', () => {
  let pki: TestPki;
  let peer: MedplumPeer;
  beforeAll(async () => {
    pki = await createTestPki();
    peer = await startMedplumPeer({
      tls: {
        key: await pki.pem(pki.serverKeyFile),
        cert: await pki.pem(pki.serverCertFile),
        ca: await pki.pem(pki.caFile),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
      },
    });
  });
  afterAll(async () => {
    await peer?.close();
    await pki?.cleanup();
  });

  it('delivers with the client certificate, checking the partner certificate against our CA', async () => {
    const d = await destination(peer.url, { tls: { ca_file: pki.caFile, cert_file: pki.clientCertFile, key_file: pki.clientKeyFile } });
    const id = randomUUID();
    const out = await d.deliver(message(), ctx(id));
    expect(out.detail['ack_code']).toBe('AA');
    expect(peer.distinct()).toContain(controlIdFor(id));
    await expect(d.healthcheck(AbortSignal.timeout(2000))).resolves.toBe('reachable: MLLP connection opened (mutual TLS: server certificate verified, client certificate presented)');
  });

  it('is refused without a client certificate (retryable, nothing reaches the partner)', async () => {
    const before = peer.receipts.length;
    const d = await destination(peer.url, { tls: { ca_file: pki.caFile } });
    const err = await failure(d.deliver(message(), ctx(randomUUID())));
    expect(['MLLP_CONNECT', 'MLLP_CONNECTION_CLOSED']).toContain(err.code);
    expect(err.disposition).toBe('retryable');
    expect(peer.receipts.length).toBe(before);
  });

  it('refuses a partner whose certificate our CA did not sign', async () => {
    const d = await destination(peer.url, { tls: { ca_file: pki.otherCaFile, cert_file: pki.clientCertFile, key_file: pki.clientKeyFile } });
    const err = await failure(d.deliver(message(), ctx(randomUUID())));
    expect(err.code).toBe('MLLP_CONNECT');
    expect(err.details).toMatchObject({ failure: 'tls' });
    await expect(d.healthcheck(AbortSignal.timeout(2000))).rejects.toMatchObject({ code: 'MLLP_CONNECT' });
  });
});

describe('our client reading replies (raw socket partner, fault injection)', () => {
  /** A partner that answers each message with `script(controlId)`: raw bytes written in pieces. */
  async function rawPartner(script: (controlId: string, original: string) => Buffer[]): Promise<{ url: string; close(): Promise<void> }> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      const deframer = new MllpDeframer();
      socket.on('data', (chunk: Buffer) => {
        for (const f of deframer.push(chunk)) {
          const text = f.toString('utf8');
          const pieces = script(valueOf(parseEr7(text).segments[0], 10), text);
          pieces.forEach((p, i) => setTimeout(() => socket.write(p), i * 30));
        }
      });
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return {
      url: `mllp://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
    };
  }
  const ackFor = (original: string, code: 'AA' | 'AE', msa2?: string): Buffer => {
    const segments = parseEr7(original).segments;
    if (msa2) segments[0]!.fields[8] = [[[msa2]]];
    return frame(Buffer.from(buildAck(segments, { code })));
  };

  it('ignores an ACK for another control id and takes the right one, both in one TCP write', async () => {
    const partner = await rawPartner((_id, text) => [Buffer.concat([ackFor(text, 'AE', 'SOMEONEELSE00000001'), ackFor(text, 'AA')])]);
    try {
      const d = await destination(partner.url);
      const out = await d.deliver(message(), ctx(randomUUID()));
      expect(out.detail).toMatchObject({ ack_code: 'AA', ignored_replies: 1 });
    } finally {
      await partner.close();
    }
  });

  it('keeps waiting after a wrong MSA-2 and times out when the right ACK never comes', async () => {
    const partner = await rawPartner((_id, text) => [ackFor(text, 'AA', 'LATEACKOFANOTHERMSG')]);
    try {
      const d = await destination(partner.url, { ack_timeout_ms: 300 });
      expect((await failure(d.deliver(message(), ctx(randomUUID())))).code).toBe('MLLP_TIMEOUT');
    } finally {
      await partner.close();
    }
  });

  it('reassembles an ACK split across several writes (FS and CR apart)', async () => {
    const partner = await rawPartner((_id, text) => {
      const ack = ackFor(text, 'AA');
      return [ack.subarray(0, 5), ack.subarray(5, ack.length - 1), ack.subarray(ack.length - 1)];
    });
    try {
      const d = await destination(partner.url);
      expect((await d.deliver(message(), ctx(randomUUID()))).detail['ack_code']).toBe('AA');
    } finally {
      await partner.close();
    }
  });

  it('drops the connection and retries on a reply that is not HL7', async () => {
    const partner = await rawPartner(() => [frame(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))]);
    try {
      const d = await destination(partner.url);
      const err = await failure(d.deliver(message(), ctx(randomUUID())));
      expect([err.code, err.disposition]).toEqual(['HL7_ACK_INVALID', 'retryable']);
    } finally {
      await partner.close();
    }
  });

  it('fails a delivery whose partner closes the connection before answering (retryable)', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => {
      sockets.push(s);
      s.once('data', () => s.destroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const d = await destination(`mllp://127.0.0.1:${(server.address() as AddressInfo).port}`);
      expect((await failure(d.deliver(message(), ctx(randomUUID())))).code).toBe('MLLP_CONNECTION_CLOSED');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
