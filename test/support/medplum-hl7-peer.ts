/**
 * A well-behaved HL7 partner we did not write: @medplum/hl7 5.x's MLLP server (its engines field
 * asks for Node 22, it works on Node 20), plain or over node:tls with
 * @medplum/hl7's Hl7Connection. Tests choose the answer per message; the peer records every
 * receipt by MSH-10 so tests can count what the partner got (exactly once, same MSH-10...).
 */
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { Hl7Segment } from '@medplum/core';
import { Hl7Connection, Hl7Server, type Hl7MessageEvent } from '@medplum/hl7';

export interface PeerReceipt {
  controlId: string;
  /** The message text as the peer decoded it. */
  text: string;
  /** 1-based connection number. */
  connection: number;
  /** How many times this control id had been received before (0 = first). */
  seenBefore: number;
}

/** What to answer: an ACK code (optionally with an ERR segment in v2.5 layout), or nothing. */
export type PeerReply = { code: 'AA' | 'AE' | 'AR'; err?: string } | 'none';

export interface MedplumPeer {
  port: number;
  url: string;
  receipts: PeerReceipt[];
  /** Distinct control ids received, in order. */
  distinct(): string[];
  connections(): number;
  reply: (r: PeerReceipt) => PeerReply;
  close(): Promise<void>;
}

export async function startMedplumPeer(o: { port?: number; enhanced?: boolean; tls?: tls.TlsOptions; reply?: (r: PeerReceipt) => PeerReply } = {}): Promise<MedplumPeer> {
  const receipts: PeerReceipt[] = [];
  let connections = 0;
  const peer = {
    reply: o.reply ?? ((): PeerReply => ({ code: 'AA' })),
  };
  const onConnection = (connection: Hl7Connection): void => {
    const n = ++connections;
    connection.addEventListener('message', (event: Hl7MessageEvent) => {
      const message = event.message;
      const controlId = message.getSegment('MSH')?.getField(10)?.toString() ?? '';
      const receipt = { controlId, text: message.toString(), connection: n, seenBefore: receipts.filter((r) => r.controlId === controlId).length };
      receipts.push(receipt);
      const answer = peer.reply(receipt);
      if (answer === 'none') return;
      // An ERR segment parsed by @medplum/core 4 (the project's) goes into @medplum/hl7's own
      // core 5 message: both only need toString() from it.
      const errSegment = answer.err ? (Hl7Segment.parse(answer.err) as never) : undefined;
      connection.send(message.buildAck({ ackCode: answer.code, ...(errSegment ? { errSegment } : {}) }));
    });
    connection.addEventListener('error', () => undefined);
  };

  let port: number;
  let close: () => Promise<void>;
  if (o.tls) {
    const server = tls.createServer(o.tls, (socket) => onConnection(new Hl7Connection(socket, 'utf-8', o.enhanced ?? false)));
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => server.listen(o.port ?? 0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
    const sockets = new Set<tls.TLSSocket>();
    server.on('secureConnection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    close = () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
  } else {
    const server = new Hl7Server(onConnection);
    await server.start(o.port ?? 0, 'utf-8', o.enhanced ?? false);
    port = (server.server!.address() as AddressInfo).port;
    close = () => server.stop({ forceDrainTimeoutMs: 0 });
  }
  return {
    port,
    url: `${o.tls ? 'mllps' : 'mllp'}://${o.tls ? 'localhost' : '127.0.0.1'}:${port}`,
    receipts,
    distinct: () => [...new Set(receipts.map((r) => r.controlId))],
    connections: () => connections,
    get reply() {
      return peer.reply;
    },
    set reply(fn) {
      peer.reply = fn;
    },
    close,
  };
}
