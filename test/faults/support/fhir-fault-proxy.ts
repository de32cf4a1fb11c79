/**
 * A fault-injecting HTTP proxy in front of the real FHIR sandbox. Unlike test/support/fault-proxy
 * its rules see the request body, so one message (by a marker in its text) can be refused while
 * the rest pass. Loopback only.
 */
import http from 'node:http';

export type ProxyFault = { kind: 'pass'; delayMs?: number } | { kind: 'respond'; status: number; headers?: Record<string, string>; body?: string };

export interface ProxyRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  body: Buffer;
}

export type ProxyRule = (req: ProxyRequest) => ProxyFault;

export interface FhirFaultProxy {
  url: string;
  setRule(rule: ProxyRule): void;
  /** Responses by status the proxy produced itself (injected faults). */
  injected: Map<number, number>;
  passed(): number;
  /** Requests received and not yet answered (e.g. held by a delay rule). */
  inFlight(): number;
  close(): Promise<void>;
}

export const passAll: ProxyRule = () => ({ kind: 'pass' });

export function operationOutcome(code: string, diagnostics: string): string {
  return JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] });
}

export async function startFhirFaultProxy(target: string): Promise<FhirFaultProxy> {
  const t = new URL(target);
  let rule: ProxyRule = passAll;
  let passed = 0;
  let inFlight = 0;
  const injected = new Map<number, number>();
  const server = http.createServer((req, res) => {
    inFlight++;
    res.once('close', () => inFlight--);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const url = req.url ?? '/';
      const body = Buffer.concat(chunks);
      let fault: ProxyFault;
      try {
        fault = rule({ method: req.method ?? 'GET', path: url.split('?')[0] ?? '/', body });
      } catch {
        fault = { kind: 'pass' };
      }
      if (fault.kind === 'respond') {
        injected.set(fault.status, (injected.get(fault.status) ?? 0) + 1);
        res.writeHead(fault.status, { 'content-type': 'application/fhir+json', ...(fault.headers ?? {}) });
        res.end(fault.body ?? '');
        return;
      }
      const forward = () => {
        // A caller that went away (killed worker) never reaches the server.
        if (req.socket.destroyed) return;
        passed++;
        const upstream = http.request(
          { host: t.hostname, port: t.port, method: req.method, path: url, headers: { ...req.headers, host: t.host, connection: 'close' }, agent: false },
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
    injected,
    passed: () => passed,
    inFlight: () => inFlight,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
