/**
 * A fault-injecting HTTP proxy in front of a real server: the one place tests use a hand-written
 * peer, on purpose, to make a real FHIR server look broken (503, 422, hangs) for a while.
 */
import http from 'node:http';

export type Fault =
  | { kind: 'pass'; delayMs?: number }
  | { kind: 'respond'; status: number; headers?: Record<string, string>; body?: string }
  | { kind: 'hang' };

export interface FaultProxy {
  url: string;
  /** Decides per request; default passes everything through. */
  setRule(rule: (req: { method: string; url: string; headers: http.IncomingHttpHeaders }) => Fault): void;
  /** Requests seen, by "METHOD path-without-query". */
  seen: string[];
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  let rule: Parameters<FaultProxy['setRule']>[0] = () => ({ kind: 'pass' });
  const seen: string[] = [];
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      seen.push(`${req.method} ${url.split('?')[0]}`);
      const fault = rule({ method: req.method ?? 'GET', url, headers: req.headers });
      if (fault.kind === 'hang') {
        hanging.add(res);
        return;
      }
      if (fault.kind === 'respond') {
        res.writeHead(fault.status, fault.headers ?? {});
        res.end(fault.body ?? '');
        return;
      }
      const forward = () => {
      // A caller that went away (killed process, timeout) never reaches the server.
      if (req.socket.destroyed) return;
      const upstream = http.request(
        { host: t.hostname, port: t.port, method: req.method, path: url, headers: { ...req.headers, host: t.host } },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      upstream.end(Buffer.concat(chunks));
      };
      if (fault.delayMs) setTimeout(forward, fault.delayMs);
      else forward();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  // Keep the target's path (e.g. /fhir/R4) so the proxy is a drop-in base URL.
  return {
    url: `http://127.0.0.1:${port}${t.pathname.replace(/\/$/, '')}`,
    setRule(r) {
      rule = r;
    },
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const h of hanging) h.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
