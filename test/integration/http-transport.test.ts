/**
 * The HTTP edge's transport: slow or stalled senders are answered 408 (or cut off) within the
 * configured limits, every answer carries the conventional security headers, and HTTPS from
 * certificate files picks up a renewed certificate without a restart.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import Router from '@koa/router';
import type Koa from 'koa';
import getRawBody from 'raw-body';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { createConsoleMiddleware } from '../../src/http/console-route.js';
import { startHttpServer, type RunningHttpServer } from '../../src/http/http-server.js';
import { identityOf, staticTokenAuthenticator, type AccessControl } from '../../src/http/access-control.js';
import { ListenerConfigError } from '../../src/http/listener.js';
import { parseEnv } from '../../src/config/env.js';
import { runGatewayToExit } from '../support/gateway-process.js';
import { createTestPki, opensslAvailable, type TestPki } from '../support/tls-certs.js';

const logger = createLogger({ level: 'silent' });

const adminToken = 'transport-test-admin-token';
const access: AccessControl = {
  authenticators: [staticTokenAuthenticator([{ token: adminToken, identity: identityOf({ kind: 'bootstrap', id: 'ADMIN_TOKEN', display: 'ADMIN_TOKEN', role: 'admin' }) }])],
  audit: { record: async () => undefined },
};

/** A declared admin route (GET /admin/whoami), guarded like the real one. */
function routes(): Router {
  const r = new Router();
  r.get('/admin/whoami', (ctx) => {
    ctx.body = { ok: true };
  });
  return r;
}

/** Webhook-like handlers (middleware, as the real webhook dispatcher is): read a body, or fail. */
const handlers: Koa.Middleware = async (ctx, next) => {
  if (ctx.path === '/webhook/echo') {
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      ctx.set('Allow', 'POST');
      return;
    }
    const raw = await getRawBody(ctx.req, { limit: '1mb' });
    ctx.body = { bytes: raw.length };
    return;
  }
  if (ctx.path === '/boom') throw new Error('handler failed');
  return next();
};

const servers: RunningHttpServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(extra: Partial<Parameters<typeof startHttpServer>[0]> = {}): Promise<RunningHttpServer> {
  const s = await startHttpServer({ port: 0, host: '127.0.0.1', logger, readiness: [], routers: [routes()], access, ...extra, middleware: [...(extra.middleware ?? []), handlers] });
  servers.push(s);
  return s;
}

/** Writes `chunks` on a raw socket (one every `everyMs`, the last repeated forever when `keepTrickling`) and resolves with what the server answered and when the connection ended. */
function rawExchange(port: number, chunks: string[], o: { everyMs?: number; keepTrickling?: string } = {}): Promise<{ answer: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    let timer: NodeJS.Timeout | undefined;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', () => undefined); // a reset after the 408 is a valid way to end
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ answer, ms: Date.now() - started });
    });
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c);
      if (o.keepTrickling) {
        timer = setInterval(() => {
          if (socket.writable) socket.write(o.keepTrickling!);
        }, o.everyMs ?? 100);
      }
    });
    setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after 15 s; answer so far: ${JSON.stringify(answer)}`));
    }, 15_000).unref();
  });
}

/** Node's own answers (timeouts, malformed requests) carry the headers every other answer does. */
function expectRawAnswerHeaders(answer: string): void {
  const head = answer.slice(0, answer.indexOf('\r\n\r\n')).toLowerCase();
  for (const h of ['x-content-type-options: nosniff', 'referrer-policy: no-referrer', 'x-frame-options: deny', "content-security-policy: default-src 'none'; frame-ancestors 'none'", 'connection: close']) {
    expect(head).toContain(h);
  }
}

describe('request timeouts', () => {
  const timeouts = { headersMs: 600, requestMs: 1500, keepAliveMs: 5000 };

  it('answers 408 and closes when a webhook sends half its body and stalls', async () => {
    const s = await start({ timeouts });
    const half = '{"entry":[{"changes":[' ;
    const { answer, ms } = await rawExchange(s.port, [`POST /webhook/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n${half}`]);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expectRawAnswerHeaders(answer);
    expect(answer).toContain('request timeout: the headers must arrive within 0.6 s and the whole request within 1.5 s');
    // Not before the request limit, and not minutes later (slack for a loaded machine).
    expect(ms).toBeGreaterThanOrEqual(timeouts.requestMs - 100);
    expect(ms).toBeLessThan(timeouts.requestMs + 5000);
  });

  it('answers 408 to a sender that trickles header lines forever (slowloris)', async () => {
    const s = await start({ timeouts });
    const { answer, ms } = await rawExchange(s.port, ['GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'], { keepTrickling: 'X-Slow: 1\r\n', everyMs: 100 });
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expectRawAnswerHeaders(answer);
    expect(ms).toBeGreaterThanOrEqual(timeouts.headersMs - 100);
    expect(ms).toBeLessThan(timeouts.headersMs + 5000);
  });

  it('answers a malformed request 400 with the same headers, and closes', async () => {
    const s = await start({ timeouts });
    const { answer } = await rawExchange(s.port, ['GET /healthz HTTP/1.1\r\nHost 127.0.0.1 no colon\r\n\r\n']);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expectRawAnswerHeaders(answer);
    expect(answer).toContain('malformed HTTP request');
  });

  it('still serves a body that arrives slowly but within the limit', async () => {
    const s = await start({ timeouts });
    const body = JSON.stringify({ ok: true, padding: 'x'.repeat(40) });
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(s.port, '127.0.0.1');
      let got = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (got += d));
      socket.on('error', reject);
      socket.on('close', () => resolve(got));
      socket.on('connect', () => {
        socket.write(`POST /webhook/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
        setTimeout(() => socket.write(body.slice(10)), timeouts.headersMs);
      });
    });
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toContain(`{"bytes":${body.length}}`);
  });

  it('defaults to 10 s for headers and 30 s for the whole request, configurable, headers not above request', () => {
    const d = parseEnv({});
    expect([d.HTTP_HEADERS_TIMEOUT_MS, d.HTTP_REQUEST_TIMEOUT_MS]).toEqual([10_000, 30_000]);
    expect(parseEnv({ HTTP_REQUEST_TIMEOUT_MS: '5000', HTTP_HEADERS_TIMEOUT_MS: '2000' }).HTTP_REQUEST_TIMEOUT_MS).toBe(5000);
    expect(() => parseEnv({ HTTP_REQUEST_TIMEOUT_MS: '5000', HTTP_HEADERS_TIMEOUT_MS: '8000' })).toThrow(/HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS/);
  });
});

describe('security headers', () => {
  let consoleDir: string;
  beforeAll(async () => {
    consoleDir = path.join(os.tmpdir(), `switchboard-console-${process.pid}-${Date.now()}`);
    await mkdir(consoleDir, { recursive: true });
    await writeFile(path.join(consoleDir, 'index.html'), '<!doctype html><title>console</title>');
  });

  async function get(port: number, p: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`http://127.0.0.1:${port}${p}`, init);
  }

  it('are on every answer: success, 404, 405, 500, admin, console', async () => {
    const consoleMw = await createConsoleMiddleware({ dir: consoleDir, logger, sessionIdleMinutes: 30 });
    const s = await start({ middleware: [consoleMw.middleware] });
    const answers = {
      health: await get(s.port, '/healthz'),
      notFound: await get(s.port, '/no/such/route'),
      notAllowed: await get(s.port, '/webhook/echo', { method: 'PUT' }),
      error: await get(s.port, '/boom'),
      admin: await get(s.port, '/admin/whoami', { headers: { authorization: `Bearer ${adminToken}` } }),
      adminRefused: await get(s.port, '/admin/whoami'),
      console: await get(s.port, '/console/'),
    };
    expect(Object.fromEntries(Object.entries(answers).map(([k, r]) => [k, r.status]))).toEqual({ health: 200, notFound: 404, notAllowed: 405, error: 500, admin: 200, adminRefused: 401, console: 200 });
    for (const [name, r] of Object.entries(answers)) {
      expect.soft(r.headers.get('x-content-type-options'), name).toBe('nosniff');
      expect.soft(r.headers.get('referrer-policy'), name).toBe('no-referrer');
      expect.soft(r.headers.get('x-frame-options'), name).toBe('DENY');
      expect.soft(r.headers.get('content-security-policy'), name).toContain("frame-ancestors 'none'");
      // Plain HTTP: no HSTS (browsers ignore it there, and it must not claim TLS that is absent).
      expect.soft(r.headers.get('strict-transport-security'), name).toBeNull();
    }
    expect(answers.admin.headers.get('cache-control')).toBe('no-store');
    expect(answers.adminRefused.headers.get('cache-control')).toBe('no-store');
    expect(answers.notFound.headers.get('content-type')).toMatch(/application\/json/);
    // The console keeps its own policy (scripts and styles from itself), not the API's default-src 'none'.
    expect(answers.console.headers.get('content-security-policy')).not.toContain("default-src 'none'");
    expect(await answers.error.text()).not.toContain('handler failed');
  });

  it('HSTS behind a trusted TLS-terminating proxy (TRUST_PROXY) that says so, not on a client\'s word', async () => {
    const trusted = await start({ trustProxy: true });
    const r = await get(trusted.port, '/healthz', { headers: { 'X-Forwarded-Proto': 'https' } });
    expect(r.headers.get('strict-transport-security')).toMatch(/^max-age=\d{7,}/);
    const direct = await start();
    expect((await get(direct.port, '/healthz', { headers: { 'X-Forwarded-Proto': 'https' } })).headers.get('strict-transport-security')).toBeNull();
  });
});

describe.skipIf(!opensslAvailable())('HTTPS from TLS_CERT_FILE / TLS_KEY_FILE', () => {
  let first: TestPki;
  let second: TestPki;
  beforeAll(async () => {
    [first, second] = await Promise.all([createTestPki(), createTestPki()]);
  });
  afterAll(async () => {
    await Promise.all([first?.cleanup(), second?.cleanup()]);
  });

  /** GET over HTTPS trusting only `ca`; resolves with the status and the served certificate's fingerprint. */
  function httpsGet(port: number, ca: Buffer, p = '/healthz'): Promise<{ status: number; fingerprint: string; hsts: string | undefined }> {
    return new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, path: p, ca, servername: 'localhost', agent: false }, (res) => {
        const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, fingerprint: cert.fingerprint256, hsts: res.headers['strict-transport-security'] }));
      });
      req.on('error', reject);
    });
  }

  it('serves HTTPS with HSTS and reloads a renewed certificate without a restart', async () => {
    const dir = path.join(first.dir, 'live');
    await mkdir(dir);
    const certFile = path.join(dir, 'tls.crt');
    const keyFile = path.join(dir, 'tls.key');
    await copyFile(first.serverCertFile, certFile);
    await copyFile(first.serverKeyFile, keyFile);
    const s = await start({ tls: { certFile, keyFile, reloadIntervalMs: 200 } });
    expect(s.secure).toBe(true);
    const before = await httpsGet(s.port, await first.pem(first.caFile));
    expect(before.status).toBe(200);
    expect(before.hsts).toMatch(/^max-age=/);
    expect(before.fingerprint).toBe(new X509Certificate(await first.pem(first.serverCertFile)).fingerprint256);
    // A client that trusts only the new CA refuses the old certificate.
    await expect(httpsGet(s.port, await second.pem(second.caFile))).rejects.toThrow();

    // Rotation as a certificate manager does it: the key lands first (a mismatch the server must
    // survive, keeping the old pair), then the certificate.
    await copyFile(second.serverKeyFile, keyFile);
    await new Promise((r) => setTimeout(r, 500));
    expect((await httpsGet(s.port, await first.pem(first.caFile))).status).toBe(200);
    await copyFile(second.serverCertFile, certFile);
    const want = new X509Certificate(await second.pem(second.serverCertFile)).fingerprint256;
    const deadline = Date.now() + 10_000;
    let after = await httpsGet(s.port, await second.pem(second.caFile)).catch(() => undefined);
    while (after?.fingerprint !== want && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      after = await httpsGet(s.port, await second.pem(second.caFile)).catch(() => undefined);
    }
    expect(after?.status).toBe(200);
    expect(after?.fingerprint).toBe(want);
  });

  it('refuses to start with a clear error naming the variable', async () => {
    expect(() => parseEnv({ TLS_CERT_FILE: first.serverCertFile })).toThrow(/TLS_KEY_FILE: must be set together with TLS_CERT_FILE/);
    expect(() => parseEnv({ TLS_KEY_FILE: first.serverKeyFile })).toThrow(/TLS_CERT_FILE: must be set together with TLS_KEY_FILE/);
    const missing = path.join(first.dir, 'nope.pem');
    await expect(start({ tls: { certFile: missing, keyFile: first.serverKeyFile, reloadIntervalMs: 1000 } })).rejects.toThrow(ListenerConfigError);
    await expect(start({ tls: { certFile: missing, keyFile: first.serverKeyFile, reloadIntervalMs: 1000 } })).rejects.toThrow(/^TLS_CERT_FILE .*nope\.pem: cannot read it \(ENOENT\)/);
    // The real entry point, as a user meets it.
    const halfConfigured = await runGatewayToExit({ TLS_CERT_FILE: first.serverCertFile, DATA_DIR: path.join(first.dir, 'data-a') });
    expect(halfConfigured.code).toBe(2);
    expect(halfConfigured.output).toContain('TLS_KEY_FILE: must be set together with TLS_CERT_FILE');
    const unreadable = await runGatewayToExit({ TLS_CERT_FILE: missing, TLS_KEY_FILE: first.serverKeyFile, DATA_DIR: path.join(first.dir, 'data-b') });
    expect(unreadable.code).toBe(1);
    expect(unreadable.output).toMatch(/refusing to start: TLS_CERT_FILE .*nope\.pem: cannot read it \(ENOENT\)/);
    // A key that does not belong to the certificate.
    await expect(start({ tls: { certFile: first.serverCertFile, keyFile: second.serverKeyFile, reloadIntervalMs: 1000 } })).rejects.toThrow(/not a usable certificate and key/);
  });
});
