/**
 * The fault-injecting HTTP proxy in front of a real server (the FHIR sandbox): the one place the
 * tests use a hand-written peer, on purpose, to make a real server look broken for a while (503,
 * 422, a hang, a slow answer). Its rule sees each request whole, body included, so one message (by
 * a marker in its text) can be refused while the rest pass. Loopback only. Used by the
 * integration tests and by the fault suite (test/faults).
 */
import http from 'node:http';

export interface ProxyRequest {
  method: string;
  /** Path and query, as received. */
  url: string;
  /** Path without the query string. */
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export type Fault =
  | { kind: 'pass'; delayMs?: number }
  | { kind: 'respond'; status: number; headers?: Record<string, string>; body?: string }
  /** Never answer (until the caller gives up or the proxy closes). */
  | { kind: 'hang' };

/** Decides per request. A rule that throws lets the request pass. */
export type FaultRule = (req: ProxyRequest) => Fault;

export interface SeenRequest {
  method: string;
  path: string;
  authorization: string | undefined;
}

export interface FaultProxy {
  /** Base URL: the proxy's origin with the target's path (e.g. /fhir/R4), a drop-in for the target. */
  url: string;
  setRule(rule: FaultRule): void;
  /** Every request received, in order (empty it with `seen.length = 0`). */
  readonly seen: SeenRequest[];
  /** Responses by status the proxy produced itself (injected faults). */
  readonly injected: Map<number, number>;
  /** Requests forwarded to the target. */
  passed(): number;
  /** Requests received and not yet answered (e.g. held by a delay rule). */
  inFlight(): number;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** Headers every injected response carries unless its fault sets them (e.g. a content type). */
  responseHeaders?: Record<string, string>;
  /**
   * Forward each request on a new connection to the target, and let the target's
   * `connection: close` reach the caller: for suites that kill callers mid-request.
   */
  freshConnections?: boolean;
}

export const passAll: FaultRule = () => ({ kind: 'pass' });

export function operationOutcome(code: string, diagnostics: string): string {
  return JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] });
}

export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const t = new URL(target);
  let rule: FaultRule = passAll;
  let passed = 0;
  let inFlight = 0;
  const seen: SeenRequest[] = [];
  const injected = new Map<number, number>();
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    inFlight++;
    res.once('close', () => {
      inFlight--;
      hanging.delete(res);
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const url = req.url ?? '/';
      const path = url.split('?')[0] ?? '/';
      const body = Buffer.concat(chunks);
      const method = req.method ?? 'GET';
      seen.push({ method, path, authorization: req.headers.authorization });
      let fault: Fault;
      try {
        fault = rule({ method, url, path, headers: req.headers, body });
      } catch {
        fault = { kind: 'pass' };
      }
      if (fault.kind === 'hang') {
        hanging.add(res);
        return;
      }
      if (fault.kind === 'respond') {
        injected.set(fault.status, (injected.get(fault.status) ?? 0) + 1);
        const text = fault.body ?? '';
        res.writeHead(fault.status, { ...options.responseHeaders, 'content-length': String(Buffer.byteLength(text)), ...fault.headers });
        res.end(text);
        return;
      }
      const forward = () => {
        // A caller that went away (killed process, timeout) never reaches the server.
        if (req.socket.destroyed) return;
        passed++;
        const headers = { ...req.headers, host: t.host, ...(options.freshConnections && { connection: 'close' }) };
        const upstream = http.request(
          { host: t.hostname, port: t.port, method, path: url, headers, ...(options.freshConnections && { agent: false }) },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        upstream.on('error', () => {
          if (!res.headersSent) res.writeHead(502);
          res.end();
        });
        upstream.end(body);
      };
      if (fault.delayMs) setTimeout(forward, fault.delayMs);
      else forward();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}${t.pathname.replace(/\/$/, '')}`,
    setRule(r) {
      rule = r;
    },
    seen,
    injected,
    passed: () => passed,
    inFlight: () => inFlight,
    close: () =>
      new Promise<void>((resolve) => {
        for (const h of hanging) h.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
