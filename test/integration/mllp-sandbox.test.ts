/**
 * The sandbox lab and insurer peers (src/sandbox/mllp-sandbox.ts) as receivers: MLLP framing on
 * the receiving side (two frames in one TCP chunk, a frame split across chunks), the ACKs and
 * RPA they answer (checked with @medplum/core and the Redox v2.5 schema), their checks (version,
 * message type, structure), enhanced mode, TLS, and python-hl7's `mllp_send` (a client we did
 * not write) talking to them.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Hl7Message } from '@medplum/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hl7v2MllpConfigSchema, hl7v2MllpDestination } from '../../src/connectors/destinations/hl7v2-mllp.js';
import type { DeliveryContext, DestinationInstance } from '../../src/connectors/types.js';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { SwitchboardError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { readReply } from '../../src/hl7/ack.js';
import { controlIdFor } from '../../src/hl7/control-id.js';
import { parseEr7, valueOf } from '../../src/hl7/er7.js';
import { loadMapping } from '../../src/mapping/jsonata-mapping.js';
import { MllpDeframer, frame } from '../../src/mllp/mllp-frame.js';
import { startMllpSandbox, type MllpSandbox } from '../../src/sandbox/mllp-sandbox.js';
import { repoRoot } from '../support/gateway.js';
import { mllpSendAvailable } from '../support/python-hl7-peer.js';
import { createTestPki, opensslAvailable } from '../support/tls-certs.js';
import { canonicalTextMessage } from '../support/canonical-text-message.js';

const require = createRequire(import.meta.url);
const Redox = require('@redoxengine/redox-hl7-v2') as { Parser: new () => { parse(t: string): Record<string, unknown> } };
const logger = createLogger({ level: 'silent' });

const ORM = (id: string, version = '2.5.1', type = 'ORM^O01^ORM_O01', extra = ''): string =>
  `MSH|^~\\&|SWITCHBOARD|CLINIC|LIS|LAB|20250304091502+0000||${type}|${id}|P|${version}${extra}\rPID|1||X1^^^WHATSAPP^PT||DOE^JANE\rORC|NW|${id}\rOBR|1|${id}||Q^Question^L\rNTE|1|P|Is it ready? \\F\\ 😀\r`;

/** A raw MLLP client: writes the given chunks (with a pause between), collects reply frames. */
async function rawExchange(port: number, chunks: Buffer[], expectReplies: number, o: { tls?: tls.ConnectionOptions } = {}): Promise<string[]> {
  const socket = o.tls ? tls.connect({ port, host: '127.0.0.1', ...o.tls }) : net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once(o.tls ? 'secureConnect' : 'connect', () => resolve());
    socket.once('error', reject);
  });
  const deframer = new MllpDeframer();
  const replies: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${replies.length} of ${expectReplies} replies`)), 5000);
    socket.on('data', (c: Buffer) => {
      for (const f of deframer.push(c)) replies.push(f.toString('utf8'));
      if (replies.length >= expectReplies) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  for (const c of chunks) {
    socket.write(c);
    await new Promise((r) => setTimeout(r, 5));
  }
  await done;
  socket.destroy();
  return replies;
}

function msa(reply: string): { code: string; id: string } {
  const r = readReply(reply);
  if (r.kind !== 'ack') throw new Error(`not an ACK: ${r.kind}`);
  return { code: r.ack.code, id: r.ack.acknowledged_control_id };
}

function message(text: string): CanonicalMessage {
  return canonicalTextMessage(text);
}

const opened: DestinationInstance[] = [];
async function destination(url: string, mappingFile: string, extra: Record<string, unknown> = {}): Promise<DestinationInstance> {
  const mapping = await loadMapping(path.join(repoRoot, 'mappings', mappingFile));
  const config = hl7v2MllpConfigSchema.parse({ kind: 'hl7v2_mllp', name: 'partner', mapping: mappingFile, url, ack_timeout_ms: 3000, ...extra });
  const d = hl7v2MllpDestination.create(config, { channelId: 'test', logger, mapping });
  opened.push(d);
  return d;
}
const ctx = (deliveryId: string): DeliveryContext => ({ deliveryId, messageId: 'm', attempt: 1, signal: new AbortController().signal, logger, now: new Date('2025-03-04T09:15:02Z') });

afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
});

describe('sandbox lab', () => {
  let lab: MllpSandbox;
  const seen: string[] = [];
  beforeAll(async () => {
    lab = await startMllpSandbox({ role: 'lab', onMessage: (t) => seen.push(t) });
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('has the documented url and answers ACK^O01^ACK with swapped MSH, its own MSH-10 and MSA-2 = ours', async () => {
    expect(lab.url).toBe(`mllp://127.0.0.1:${lab.port}`);
    const [reply] = await rawExchange(lab.port, [frame(Buffer.from(ORM('CTRL-A1')))], 1);
    const ack = Hl7Message.parse(reply!);
    expect([3, 4, 5, 6].map((n) => ack.header.getField(n).toString())).toEqual(['LIS', 'LAB', 'SWITCHBOARD', 'CLINIC']);
    expect(ack.header.getField(9).toString()).toBe('ACK^O01^ACK');
    expect(ack.header.getField(10).toString()).not.toBe('CTRL-A1');
    expect(ack.header.getField(10).toString().length).toBeLessThanOrEqual(20);
    expect(ack.header.getField(12).toString()).toBe('2.5.1');
    expect(msa(reply!)).toEqual({ code: 'AA', id: 'CTRL-A1' });
    expect(new Redox.Parser().parse(reply!)).toMatchObject({ MSA: { 1: 'AA', 2: 'CTRL-A1' } });
  });

  it('acknowledges two frames that arrive in one TCP chunk, in order', async () => {
    const replies = await rawExchange(lab.port, [Buffer.concat([frame(Buffer.from(ORM('CTRL-B1'))), frame(Buffer.from(ORM('CTRL-B2')))])], 2);
    expect(replies.map(msa)).toEqual([
      { code: 'AA', id: 'CTRL-B1' },
      { code: 'AA', id: 'CTRL-B2' },
    ]);
  });

  it('acknowledges a frame split across chunks, byte by byte (UTF-8 sequences cut in half)', async () => {
    const bytes = frame(Buffer.from(ORM('CTRL-C1')));
    const [reply] = await rawExchange(lab.port, [...bytes].map((b) => Buffer.from([b])), 1);
    expect(msa(reply!)).toEqual({ code: 'AA', id: 'CTRL-C1' });
    expect(seen.find((t) => t.includes('CTRL-C1'))).toContain('😀');
  });

  it('answers AR 203 to another version, AR 200 to a type a lab does not take, AE to a broken structure', async () => {
    const replies = await rawExchange(
      lab.port,
      [frame(Buffer.from(ORM('CTRL-D1', '2.3'))), frame(Buffer.from(ORM('CTRL-D2', '2.5.1', 'RQA^I08^RQA_I08'))), frame(Buffer.from(ORM('CTRL-D3').replace(/\rORC\|[^\r]*/, '')))],
      3,
    );
    const read = replies.map((r) => readReply(r));
    expect(read.map((r) => (r.kind === 'ack' ? [r.ack.code, r.ack.acknowledged_control_id, r.ack.errors[0]?.code, r.ack.errors[0]?.location] : r.kind))).toEqual([
      ['AR', 'CTRL-D1', '203', 'MSH^1^12'],
      ['AR', 'CTRL-D2', '200', 'MSH^1^9'],
      ['AE', 'CTRL-D3', '100', ''],
    ]);
  });

  it('counts a repeated control id once (a receiver that de-duplicates on MSH-10) and still acknowledges it', async () => {
    const before = lab.duplicates;
    const replies = await rawExchange(lab.port, [frame(Buffer.from(ORM('CTRL-E1'))), frame(Buffer.from(ORM('CTRL-E1')))], 2);
    expect(replies.map(msa)).toEqual([
      { code: 'AA', id: 'CTRL-E1' },
      { code: 'AA', id: 'CTRL-E1' },
    ]);
    expect(lab.received.filter((r) => r.controlId === 'CTRL-E1')).toHaveLength(1);
    expect(lab.duplicates - before).toBe(1);
  });

  it('in enhanced mode answers CA then the application ACK', async () => {
    const replies = await rawExchange(lab.port, [frame(Buffer.from(ORM('CTRL-F1', '2.5.1', 'ORM^O01^ORM_O01', '|||AL|AL')))], 2);
    expect(replies.map(msa)).toEqual([
      { code: 'CA', id: 'CTRL-F1' },
      { code: 'AA', id: 'CTRL-F1' },
    ]);
    const d = await destination(lab.url, 'lab-question-to-orm.jsonata', { acknowledgment_mode: 'enhanced' });
    const out = await d.deliver(message('hello'), ctx(randomUUID()));
    expect(out.detail).toMatchObject({ commit_ack: 'CA', ack_code: 'AA', application_ack: 'received' });
  });

  it('takes what the destination sends (ORM and MDM) and records it by control id', async () => {
    const id = randomUUID();
    const orm = await destination(lab.url, 'lab-question-to-orm.jsonata');
    expect((await orm.deliver(message('Is my blood test back?'), ctx(id))).detail['ack_code']).toBe('AA');
    expect(lab.received.find((r) => r.controlId === controlIdFor(id))).toMatchObject({ messageType: 'ORM^O01^ORM_O01', ackCode: 'AA' });
    const mdm = await destination(lab.url, 'note-to-mdm.jsonata');
    expect((await mdm.deliver(message('line 1\nline 2'), ctx(randomUUID()))).detail).toMatchObject({ ack_code: 'AA', ack_message_type: 'ACK^T02^ACK' });
  });

  it('makes the destination pause when the partner refuses the type (AR 200)', async () => {
    const d = await destination(lab.url, 'authorization-to-rqa.jsonata');
    const err = await d.deliver(message('prior auth?'), ctx(randomUUID())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchboardError);
    expect(err).toMatchObject({ code: 'HL7_PARTNER_REJECTS_TYPE', pauseDestination: true });
  });
});

describe('sandbox insurer', () => {
  let insurer: MllpSandbox;
  beforeAll(async () => {
    insurer = await startMllpSandbox({ role: 'insurer' });
  });
  afterAll(async () => {
    await insurer?.close();
  });

  it('answers RQA^I08 with RPA^I08: MSA AA and the decision in RF1/AUT, valid RPA_I08 structure', async () => {
    const d = await destination(insurer.url, 'authorization-to-rqa.jsonata');
    const id = randomUUID();
    const out = await d.deliver(message('Do I need prior auth for the MRI?'), ctx(id));
    expect(out.detail).toMatchObject({ ack_code: 'AA', ack_message_type: 'RPA^I08^RPA_I08', msa_2: controlIdFor(id) });

    const request = `MSH|^~\\&|SWITCHBOARD|CLINIC|PAYER|INSURER|20250304091502+0000||RQA^I08^RQA_I08|CTRL-R1|P|2.5.1\rPRD|RP|CLINIC\rPRD|RT|INSURER\rPID|1||X1||DOE\rOBR|1|||SB-AUTH^Auth^L\rNTE|1|P|MRI?\r`;
    const [reply] = await rawExchange(insurer.port, [frame(Buffer.from(request))], 1);
    const segments = parseEr7(reply!).segments;
    expect(segments.map((s) => s.name)).toEqual(['MSH', 'MSA', 'RF1', 'AUT', 'PRD', 'PRD', 'PID', 'PR1']);
    expect(valueOf(segments[2], 1)).toBe('P'); // pending review
    expect(valueOf(segments[3], 6)).toMatch(/^AUTH/);
    expect(new Redox.Parser().parse(reply!)).toMatchObject({ MSA: { 1: 'AA', 2: 'CTRL-R1' }, AUTHORIZATION: { AUT: {} } });
  });

  it('answers AR 200 to a lab order', async () => {
    const [reply] = await rawExchange(insurer.port, [frame(Buffer.from(ORM('CTRL-R2')))], 1);
    expect(readReply(reply!)).toMatchObject({ kind: 'ack', ack: { code: 'AR', errors: [{ code: '200' }] } });
  });
});

describe.skipIf(!opensslAvailable())('sandbox over TLS', () => {
  it('serves mllps:// to a client that trusts its CA', async () => {
    const pki = await createTestPki();
    const lab = await startMllpSandbox({ role: 'lab', tls: { key: await pki.pem(pki.serverKeyFile), cert: await pki.pem(pki.serverCertFile) } });
    try {
      expect(lab.url).toBe(`mllps://127.0.0.1:${lab.port}`);
      const d = await destination(lab.url.replace('127.0.0.1', 'localhost'), 'lab-question-to-orm.jsonata', { tls: { ca_file: pki.caFile } });
      expect((await d.deliver(message('over TLS'), ctx(randomUUID()))).detail['ack_code']).toBe('AA');
    } finally {
      await lab.close();
      await pki.cleanup();
    }
  });
});

const requireMllpSend = process.env['CI'] === 'true';
describe.skipIf(!mllpSendAvailable() && !requireMllpSend)('python-hl7 `mllp_send` (a client we did not write) against the sandbox', () => {
  let lab: MllpSandbox;
  let insurer: MllpSandbox;
  let dir: string;
  beforeAll(async () => {
    lab = await startMllpSandbox({ role: 'lab' });
    insurer = await startMllpSandbox({ role: 'insurer' });
    dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-mllp-send-'));
  });
  afterAll(async () => {
    await lab?.close();
    await insurer?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** mllp_send --loose reads messages separated by \r\n from a file and prints each ACK. */
  async function mllpSend(port: number, er7: string): Promise<string[]> {
    const file = path.join(dir, `${randomUUID()}.hl7`);
    await writeFile(file, er7.replace(/\r$/, '').split('\r').join('\r\n') + '\r\n');
    // Asynchronous: the sandbox answers from this same event loop.
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('mllp_send', ['--loose', '-f', file, '-p', String(port), '127.0.0.1'], { encoding: 'utf8', timeout: 15_000 }, (err, out, stderr) =>
        err ? reject(new Error(`mllp_send failed: ${stderr}`)) : resolve(out),
      );
    });
    return stdout.split(/[\r\n]+/).filter((l) => l.startsWith('MSA|'));
  }

  it('gets AA for an OML^O21 lab order, with MSA-2 = its MSH-10', async () => {
    const oml = await readFile(new URL('../fixtures/hl7/oml_o21_v251.hl7', import.meta.url), 'latin1');
    const lines = await mllpSend(lab.port, oml);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/MSA\|AA\|SBOML0001/);
  });

  it('gets AA for the ORM^O01 our lab mapping builds', async () => {
    const d = await destination(lab.url, 'lab-question-to-orm.jsonata');
    const rendered = await d.render(message('Sent with mllp_send | ok?'), { now: new Date(), bindings: {}, deliveryId: 'mllp-send-1' });
    const lines = await mllpSend(lab.port, rendered.body as string);
    expect(lines[0]).toContain(`MSA|AA|${controlIdFor('mllp-send-1')}`);
  });

  it('gets AR 203 for a v2.4 RQA^I08 authorization request (the sandbox takes 2.5.x only)', async () => {
    const rqa = await readFile(new URL('../fixtures/hl7/rqa_i08_v24.hl7', import.meta.url), 'latin1');
    const lines = await mllpSend(insurer.port, rqa);
    expect(lines[0]).toMatch(/MSA\|AR\|SBRQA0002/);
  });
});
