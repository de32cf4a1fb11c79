/**
 * The HTTP(S) listener under the Koa app: request timeouts of seconds (not Node's minutes), and
 * optional TLS from TLS_CERT_FILE / TLS_KEY_FILE, re-read periodically and swapped in with
 * setSecureContext when the files change, so a renewed certificate needs no restart.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { Logger } from '../core/logger.js';
import { rawAnswer } from './security-headers.js';

export interface ListenerTimeouts {
  /** Time allowed to receive the request headers (HTTP_HEADERS_TIMEOUT_MS). */
  headersMs: number;
  /** Time allowed to receive the whole request, headers and body (HTTP_REQUEST_TIMEOUT_MS). */
  requestMs: number;
  /** An idle keep-alive connection is closed after this (HTTP_KEEP_ALIVE_TIMEOUT_MS). */
  keepAliveMs: number;
}

export const defaultTimeouts: ListenerTimeouts = { headersMs: 10_000, requestMs: 30_000, keepAliveMs: 65_000 };

export interface ListenerTls {
  certFile: string;
  keyFile: string;
  /** How often the files are checked for a new certificate (TLS_RELOAD_INTERVAL_MS). */
  reloadIntervalMs: number;
}

export class ListenerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenerConfigError';
  }
}

interface Pem {
  cert: Buffer;
  key: Buffer;
}

async function readPem(o: ListenerTls): Promise<Pem> {
  const read = async (file: string, variable: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new ListenerConfigError(`${variable} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const pem = { cert: await read(o.certFile, 'TLS_CERT_FILE'), key: await read(o.keyFile, 'TLS_KEY_FILE') };
  try {
    // Parses both and checks that the key belongs to the certificate; never echoes key material.
    tls.createSecureContext(pem);
  } catch (err) {
    throw new ListenerConfigError(`TLS_CERT_FILE ${o.certFile} / TLS_KEY_FILE ${o.keyFile}: not a usable certificate and key (${(err as Error).message.split('\n')[0]})`);
  }
  return pem;
}

/** Reads and checks the certificate files now (at the very start, before anything else is started). */
export async function checkTlsFiles(o: ListenerTls): Promise<void> {
  await readPem(o);
}

export interface Listener {
  server: http.Server;
  secure: boolean;
  /** Re-reads the certificate files now (the periodic check calls this). True when a new one was loaded. */
  reloadTls(): Promise<boolean>;
  /** Stops the certificate check. */
  dispose(): void;
}

/**
 * What Node would answer by itself to a request it gives up on (408 after a timeout, 400 for a
 * malformed request, 431 for oversized headers), with the security headers and a reason. Written
 * only when nothing of an answer has gone out yet; the connection is closed either way.
 */
function answerClientErrors(server: http.Server, secure: boolean, timeouts: ListenerTimeouts): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (err.code !== 'ECONNRESET' && socket.writable && !inFlight?.headersSent) {
      const [status, statusText, text] =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', `request timeout: the headers must arrive within ${timeouts.headersMs / 1000} s and the whole request within ${timeouts.requestMs / 1000} s\n`]
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? [431, 'Request Header Fields Too Large', 'the request headers are too large\n']
            : [400, 'Bad Request', 'malformed HTTP request\n'];
      socket.write(rawAnswer(status, statusText, text, secure));
    }
    socket.destroy();
  });
}

export async function createListener(handler: http.RequestListener, o: { timeouts: ListenerTimeouts; tls?: ListenerTls | undefined; logger: Logger }): Promise<Listener> {
  const { headersMs, requestMs, keepAliveMs } = o.timeouts;
  if (headersMs > requestMs) throw new ListenerConfigError(`HTTP_HEADERS_TIMEOUT_MS (${headersMs}) must not exceed HTTP_REQUEST_TIMEOUT_MS (${requestMs})`);
  const serverOptions: http.ServerOptions = {
    headersTimeout: headersMs,
    requestTimeout: requestMs,
    keepAliveTimeout: keepAliveMs,
    // Node checks the two timeouts above only this often (default 30 s): check at a fraction of the shorter.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersMs / 4))),
  };
  if (!o.tls) {
    const server = http.createServer(serverOptions, handler);
    answerClientErrors(server, false, o.timeouts);
    return { server, secure: false, reloadTls: async () => false, dispose: () => undefined };
  }
  const files = o.tls;
  let current = await readPem(files);
  const server = https.createServer({ ...serverOptions, ...current }, handler);
  answerClientErrors(server, true, o.timeouts);
  const reloadTls = async (): Promise<boolean> => {
    let next: Pem;
    try {
      next = await readPem(files);
    } catch (err) {
      // Mid-rotation (certificate written, key not yet) or a bad file: keep serving the old one.
      o.logger.warn({ err: { message: (err as Error).message } }, 'TLS certificate not reloaded; still serving the previous one');
      return false;
    }
    if (next.cert.equals(current.cert) && next.key.equals(current.key)) return false;
    server.setSecureContext(next);
    current = next;
    o.logger.info({ certFile: files.certFile }, 'TLS certificate reloaded');
    return true;
  };
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void reloadTls().finally(() => {
      checking = false;
    });
  }, files.reloadIntervalMs);
  timer.unref();
  return { server, secure: true, reloadTls, dispose: () => clearInterval(timer) };
}
