/**
 * A small MLLP server (plain TCP or TLS): deframes each connection's bytes (split frames and
 * several frames per read both handled), hands every message to the handler in order, one at a
 * time per connection, and writes the handler's replies framed. Used by the sandbox peers and
 * tests; it logs connection counts and sizes only, never content.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../core/logger.js';
import { MllpDeframer, frame } from './mllp-frame.js';

export interface MllpInbound {
  /** The payload decoded with the server's encoding. */
  text: string;
  bytes: Buffer;
  /** 1-based id of the connection it arrived on. */
  connectionId: number;
}

/** Replies to write, in order (e.g. a commit ACK then an application ACK); none: no answer. */
export type MllpHandler = (message: MllpInbound) => Promise<readonly string[]> | readonly string[];

export interface MllpServerOptions {
  handler: MllpHandler;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: a free port. */
  port?: number;
  /** TLS server options (key, cert, ca, requestCert, rejectUnauthorized for mutual TLS). */
  tls?: tls.TlsOptions;
  /** Payload encoding, default utf8. */
  encoding?: BufferEncoding;
  logger?: Logger | undefined;
  maxFrameBytes?: number;
}

export interface MllpServer {
  host: string;
  port: number;
  /** Connections accepted so far. */
  readonly connectionsAccepted: number;
  /** Drops every open connection (a partner restart, for tests). */
  dropConnections(): void;
  close(): Promise<void>;
}

export async function startMllpServer(o: MllpServerOptions): Promise<MllpServer> {
  const host = o.host ?? '127.0.0.1';
  const encoding = o.encoding ?? 'utf8';
  const sockets = new Set<net.Socket>();
  let accepted = 0;

  const onSocket = (socket: net.Socket): void => {
    const connectionId = ++accepted;
    sockets.add(socket);
    socket.setNoDelay(true);
    const deframer = new MllpDeframer(o.maxFrameBytes);
    let queue: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = deframer.push(chunk);
      } catch {
        o.logger?.warn({ connection: connectionId }, 'mllp server: oversized frame; connection dropped');
        socket.destroy();
        return;
      }
      for (const bytes of frames) {
        queue = queue.then(async () => {
          try {
            const replies = await o.handler({ text: bytes.toString(encoding), bytes, connectionId });
            for (const reply of replies) if (!socket.destroyed) socket.write(frame(Buffer.from(reply, encoding)));
          } catch (err) {
            o.logger?.error({ connection: connectionId, err_name: err instanceof Error ? err.name : typeof err }, 'mllp server: handler failed; no reply');
          }
        });
      }
    });
    socket.on('error', (err) => o.logger?.debug({ connection: connectionId, code: (err as NodeJS.ErrnoException).code }, 'mllp server: connection error'));
    socket.on('close', () => sockets.delete(socket));
  };

  const server: net.Server = o.tls ? tls.createServer(o.tls, onSocket) : net.createServer(onSocket);
  if (o.tls) {
    server.on('tlsClientError', (err: Error & { code?: string }) => o.logger?.info({ code: err.code ?? err.name }, 'mllp server: TLS client refused'));
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  o.logger?.info({ port, tls: Boolean(o.tls) }, 'mllp server listening');
  return {
    host,
    port,
    get connectionsAccepted() {
      return accepted;
    },
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
