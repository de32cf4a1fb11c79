/**
 * MLLP client: one persistent connection (plain TCP or TLS, optionally mutual), one message in
 * flight on it, replies matched strictly on MSA-2 = the MSH-10 sent. Replies for other control
 * ids (late ACKs of an earlier attempt, unsolicited messages) are logged by id and ignored.
 * Failed connections are retried with exponential backoff; a connection that timed out or saw
 * garbage is dropped, so the next attempt starts clean and resends with the same MSH-10.
 *
 * Framing: HL7's Minimal Lower Layer Protocol (MLLP); docs/destinations/hl7v2-mllp.md. Logs carry control ids, codes and sizes only.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readReply, type Ack } from '../hl7/ack.js';
import type { Logger } from '../core/logger.js';
import { MllpDeframer, frame } from './mllp-frame.js';

export interface MllpTlsOptions {
  /** PEM CA bundle(s) trusted for the server certificate; default: Node's CAs. */
  ca?: string | Buffer | (string | Buffer)[];
  /** PEM client certificate (mutual TLS). */
  cert?: string | Buffer;
  /** PEM client key (mutual TLS). */
  key?: string | Buffer;
  /** SNI and the name checked against the certificate; default: the host. */
  servername?: string;
  rejectUnauthorized?: boolean;
  /** Default TLSv1.2 (reference §4: TLS 1.2+). */
  minVersion?: tls.SecureVersion;
}

export interface MllpEndpoint {
  host: string;
  port: number;
  tls?: MllpTlsOptions | undefined;
}

export interface MllpClientOptions {
  endpoint: MllpEndpoint;
  connectTimeoutMs: number;
  /** How reply bytes are decoded (the partner's charset). */
  encoding: BufferEncoding;
  logger?: Logger | undefined;
  /** Backoff between failed connection attempts (doubling, capped). */
  reconnect?: { initialDelayMs: number; maxDelayMs: number };
  maxFrameBytes?: number;
}

export type MllpFailure = 'connect' | 'tls' | 'timeout' | 'closed' | 'aborted' | 'protocol';

export class MllpError extends Error {
  constructor(
    readonly failure: MllpFailure,
    message: string,
    /** errno / TLS code of the socket error, e.g. ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID. */
    readonly errorCode?: string,
  ) {
    super(message);
    this.name = 'MllpError';
  }
}

export interface SendOptions {
  /** MSH-10 of the payload: the only MSA-2 accepted as its answer. */
  controlId: string;
  ackTimeoutMs: number;
  signal?: AbortSignal | undefined;
  /**
   * Enhanced mode with MSH-16 = AL: after a CA, keep waiting (up to ackTimeoutMs more) on this
   * connection for the application ACK. Without it a CA is final.
   */
  awaitApplicationAck?: boolean;
}

export interface SendResult {
  /** The final acknowledgment: the application ACK, or the commit ACK when none followed. */
  ack: Ack;
  /** The commit ACK (CA/CE/CR) in enhanced mode, when one came before `ack`. */
  commit?: Ack | undefined;
  /** A CA arrived but no application ACK within the timeout. */
  applicationAckTimedOut: boolean;
  /** Replies ignored while waiting (other MSA-2, not an ACK). */
  ignored: number;
  /** Milliseconds from write to final ACK. */
  elapsedMs: number;
  /** True when this send opened a new connection. */
  connected: boolean;
}

interface Waiter {
  controlId: string;
  /** The connection the message went out on: only its replies and its closing concern this waiter. */
  socket: net.Socket;
  onReply(text: string): void;
  fail(err: MllpError): void;
}

const TLS_CODE = /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH|ERR_OSSL)/;

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export class MllpClient {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private waiter: Waiter | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private failures = 0;
  private nextAttemptAt = 0;
  private closed = false;
  /** Connections opened so far (for tests and outcome details). */
  connectionsOpened = 0;

  constructor(private readonly o: MllpClientOptions) {}

  get endpointLabel(): string {
    return `${this.o.endpoint.tls ? 'mllps' : 'mllp'}://${this.o.endpoint.host}:${this.o.endpoint.port}`;
  }

  isConnected(): boolean {
    return this.socket !== undefined && !this.socket.destroyed;
  }

  /** Sends one framed message and waits for its ACK. Calls are queued: one in flight at a time. */
  send(payload: Buffer, o: SendOptions): Promise<SendResult> {
    const run = this.chain.then(() => this.sendNow(payload, o));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Opens the connection if needed (healthcheck). */
  async connect(signal?: AbortSignal): Promise<void> {
    await this.ensureConnected(signal);
  }

  /** Closes the connection; queued sends fail with `closed`. */
  async close(): Promise<void> {
    this.closed = true;
    this.waiter?.fail(new MllpError('closed', 'the client was closed'));
    const socket = this.socket;
    this.socket = undefined;
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          socket.destroy();
          resolve();
        }, 1000);
        timer.unref();
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.end();
      });
    }
  }

  private async sendNow(payload: Buffer, o: SendOptions): Promise<SendResult> {
    if (this.closed) throw new MllpError('closed', 'the client was closed');
    if (o.signal?.aborted) throw new MllpError('aborted', 'the delivery was aborted');
    const opened = this.connectionsOpened;
    const socket = await this.ensureConnected(o.signal);
    const connected = this.connectionsOpened !== opened;
    const started = Date.now();
    const log = this.o.logger;

    return new Promise<SendResult>((resolve, reject) => {
      let commit: Ack | undefined;
      let ignored = 0;
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        if (timer) clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        if (this.waiter === waiter) this.waiter = undefined;
      };
      const finish = (ack: Ack, applicationAckTimedOut: boolean): void => {
        cleanup();
        resolve({ ack, commit: ack === commit ? undefined : commit, applicationAckTimedOut, ignored, elapsedMs: Date.now() - started, connected });
      };
      const fail = (err: MllpError, dropConnection: boolean): void => {
        cleanup();
        if (dropConnection) this.drop(socket);
        reject(err);
      };
      const arm = (): void => {
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => {
          if (commit) {
            // Committed (CA): the partner has it. No application ACK in time is not a failure.
            log?.warn({ control_id: o.controlId, ack_timeout_ms: o.ackTimeoutMs }, 'mllp: no application ACK after CA; recorded as committed');
            finish(commit, true);
            return;
          }
          fail(new MllpError('timeout', `no ACK within ${o.ackTimeoutMs} ms`), true);
        }, o.ackTimeoutMs);
      };
      const onAbort = (): void => fail(new MllpError('aborted', 'the delivery was aborted while waiting for the ACK'), true);
      const waiter: Waiter = {
        controlId: o.controlId,
        socket,
        fail: (err) => fail(err, false),
        onReply: (text) => {
          const reply = readReply(text);
          if (reply.kind === 'unparsable') {
            log?.warn({ control_id: o.controlId, reason: reply.reason.slice(0, 200) }, 'mllp: unparsable reply; dropping the connection');
            fail(new MllpError('protocol', `the partner answered with something that is not an HL7 acknowledgment (${reply.reason.slice(0, 120)})`), true);
            return;
          }
          if (reply.kind === 'not_ack') {
            ignored++;
            log?.warn({ control_id: o.controlId, reply_type: reply.messageType, reply_control_id: reply.controlId }, 'mllp: reply without MSA ignored');
            return;
          }
          const ack = reply.ack;
          if (ack.acknowledged_control_id !== o.controlId) {
            ignored++;
            log?.warn({ control_id: o.controlId, msa_2: ack.acknowledged_control_id.slice(0, 40), ack_code: ack.code }, 'mllp: ACK for another control id ignored (late or unsolicited)');
            return;
          }
          if (ack.code === 'CA' && o.awaitApplicationAck && !commit) {
            commit = ack;
            arm();
            return;
          }
          if (commit && ack.code.startsWith('C')) {
            ignored++;
            return; // a second commit ACK: keep waiting for the application ACK
          }
          finish(ack, false);
        },
      };
      if (o.signal) o.signal.addEventListener('abort', onAbort, { once: true });
      this.waiter = waiter;
      arm();
      socket.write(frame(payload), (err) => {
        if (err) fail(new MllpError('closed', `writing to the partner failed (${errorCode(err) ?? err.name})`, errorCode(err)), true);
      });
    });
  }

  private drop(socket: net.Socket): void {
    if (this.socket === socket) this.socket = undefined;
    socket.destroy();
  }

  private async ensureConnected(signal?: AbortSignal): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return this.socket;
    this.connecting ??= this.open(signal).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(signal?: AbortSignal): Promise<net.Socket> {
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) {
      if (wait > this.o.connectTimeoutMs) {
        throw new MllpError('connect', `reconnect backoff: next attempt in ${wait} ms after ${this.failures} failed connection(s)`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
    if (this.closed) throw new MllpError('closed', 'the client was closed');
    try {
      const socket = await this.dial(signal);
      this.failures = 0;
      this.nextAttemptAt = 0;
      this.connectionsOpened++;
      this.attach(socket);
      this.o.logger?.info({ endpoint: this.endpointLabel, tls: Boolean(this.o.endpoint.tls) }, 'mllp: connected');
      return socket;
    } catch (err) {
      this.failures++;
      const base = this.o.reconnect?.initialDelayMs ?? 250;
      const cap = this.o.reconnect?.maxDelayMs ?? 30_000;
      this.nextAttemptAt = Date.now() + Math.min(cap, base * 2 ** (this.failures - 1));
      throw err;
    }
  }

  private dial(signal?: AbortSignal): Promise<net.Socket> {
    const { host, port, tls: t } = this.o.endpoint;
    return new Promise<net.Socket>((resolve, reject) => {
      let settled = false;
      const socket: net.Socket = t
        ? tls.connect({
            host,
            port,
            ...(t.ca !== undefined ? { ca: t.ca } : {}),
            ...(t.cert !== undefined ? { cert: t.cert } : {}),
            ...(t.key !== undefined ? { key: t.key } : {}),
            servername: t.servername ?? (net.isIP(host) ? undefined : host),
            rejectUnauthorized: t.rejectUnauthorized ?? true,
            minVersion: t.minVersion ?? 'TLSv1.2',
          })
        : net.connect({ host, port });
      const done = (err?: MllpError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.off('error', onError);
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(socket);
      };
      const onAbort = (): void => done(new MllpError('aborted', 'connecting was aborted'));
      const onError = (err: Error): void => {
        const code = errorCode(err);
        const isTls = t !== undefined && (code === undefined ? /ssl|tls|certificate/i.test(err.message) : TLS_CODE.test(code));
        done(new MllpError(isTls ? 'tls' : 'connect', `${isTls ? 'TLS handshake' : 'connection'} to ${this.endpointLabel} failed (${code ?? err.name})`, code));
      };
      const timer = setTimeout(() => done(new MllpError('connect', `connecting to ${this.endpointLabel} timed out after ${this.o.connectTimeoutMs} ms`, 'ETIMEDOUT')), this.o.connectTimeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('error', onError);
      socket.once(t ? 'secureConnect' : 'connect', () => done());
    });
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    const deframer = new MllpDeframer(this.o.maxFrameBytes);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = deframer.push(chunk);
      } catch {
        if (this.waiter?.socket === socket) this.waiter.fail(new MllpError('protocol', 'the partner sent an oversized frame'));
        this.drop(socket);
        return;
      }
      for (const f of frames) {
        const text = f.toString(this.o.encoding);
        if (this.waiter?.socket === socket) this.waiter.onReply(text);
        else {
          const reply = readReply(text);
          this.o.logger?.warn(
            reply.kind === 'ack'
              ? { msa_2: reply.ack.acknowledged_control_id.slice(0, 40), ack_code: reply.ack.code }
              : { reply: reply.kind },
            'mllp: reply while nothing was in flight ignored',
          );
        }
      }
    });
    let lastError: string | undefined;
    socket.on('error', (err) => {
      lastError = errorCode(err) ?? err.name;
      this.o.logger?.warn({ endpoint: this.endpointLabel, code: lastError }, 'mllp: connection error');
    });
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      const tlsRefusal = lastError !== undefined && TLS_CODE.test(lastError);
      if (this.waiter?.socket !== socket) return;
      this.waiter.fail(
        new MllpError(
          tlsRefusal ? 'tls' : 'closed',
          `the partner closed the connection before answering${lastError ? ` (${lastError})` : ''}`,
          lastError,
        ),
      );
    });
  }
}
