/** The Koa application: health, readiness, channel webhooks and the admin API. */
import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from '../core/logger.js';
import { errorBody } from './webhook-route.js';
import { guardRouters, registeredRoutes, type AccessControl } from './access-control.js';
import { createListener, defaultTimeouts, type ListenerTimeouts, type ListenerTls } from './listener.js';
import { securityHeaders } from './security-headers.js';
import type { PublicJwk } from '../fhir/smart-backend.js';

export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

export interface HttpServerOptions {
  port: number;
  host: string;
  logger: Logger;
  readiness: readonly ReadinessCheck[];
  routers: readonly Router[];
  /** TRUST_PROXY: take the client address from X-Forwarded-For (set only behind a reverse proxy). */
  trustProxy?: boolean;
  /** Authenticates and authorises every route by the permission table. */
  access: AccessControl;
  /** Extra middleware mounted after the routers (e.g. the webhook dispatcher). */
  middleware?: readonly Koa.Middleware[];
  /** Public signing keys for GET /.well-known/jwks.json (SMART Backend Services registration). */
  jwks?: () => readonly PublicJwk[];
  /** Prometheus text for GET /metrics. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Header, request and keep-alive timeouts (defaults: 10 s, 30 s, 65 s). */
  timeouts?: ListenerTimeouts;
  /** HTTPS on the listener from certificate files, reloaded on change. */
  tls?: ListenerTls | undefined;
}

export interface RunningHttpServer {
  port: number;
  /** Every registered route as `METHOD path`, each guarded by its declared permission. */
  routes: readonly string[];
  /** True when the listener speaks HTTPS. */
  secure: boolean;
  /** Re-reads TLS_CERT_FILE / TLS_KEY_FILE now; true when a new certificate was loaded. */
  reloadTls(): Promise<boolean>;
  close(): Promise<void>;
}

export function createHttpApp(o: Omit<HttpServerOptions, 'port' | 'host'>): { app: Koa; routes: string[] } {
  const app = new Koa();
  // Behind a reverse proxy, the client address is the last X-Forwarded-For entry (the one the
  // proxy appended); without one that header is the client's to invent, so it is ignored.
  app.proxy = o.trustProxy === true;
  app.maxIpsCount = 1;
  // A connection that fails after its handler ran (a sender cut off by the request timeout) is logged here, not printed by Koa.
  app.on('error', (err: Error) => o.logger.warn({ err: { message: err.message } }, 'HTTP connection error'));
  app.use(securityHeaders({ tls: o.tls !== undefined }));
  // Errors by position: the first middleware catches everything; internals are never exposed.
  app.use(async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.type = 'application/json';
        ctx.body = errorBody('NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`);
      }
    } catch (err) {
      o.logger.error({ path: ctx.path, err: { message: (err as Error).message, stack: (err as Error).stack } }, 'unhandled error in HTTP handler');
      ctx.status = 500;
      ctx.type = 'application/json';
      ctx.body = errorBody('INTERNAL', 'internal error');
    }
  });
  const base = new Router();
  base.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  base.get('/readyz', async (ctx) => {
    const results = await Promise.all(
      o.readiness.map(async (r) => {
        try {
          await Promise.race([r.check(), new Promise((_, rej) => setTimeout(() => rej(new Error('timed out')), 2000).unref())]);
          return [r.name, 'ok'] as const;
        } catch (err) {
          return [r.name, (err as Error).message || 'failed'] as const;
        }
      }),
    );
    const ready = results.every(([, s]) => s === 'ok');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not ready', checks: Object.fromEntries(results) };
  });
  // Always registered (an empty set when no destination signs), so an EHR's registration
  // check and the permission table do not depend on the channels loaded.
  base.get('/.well-known/jwks.json', (ctx) => {
    const keys = new Map<string, PublicJwk>();
    for (const k of o.jwks?.() ?? []) if (!keys.has(k.kid)) keys.set(k.kid, k);
    ctx.set('cache-control', 'public, max-age=300');
    ctx.type = 'application/jwk-set+json';
    ctx.body = { keys: [...keys.values()] };
  });
  if (o.metrics) {
    const render = o.metrics;
    base.get('/metrics', async (ctx) => {
      const m = await render();
      ctx.type = m.contentType;
      ctx.body = m.body;
    });
  }
  guardRouters([base, ...o.routers], o.access);
  app.use(base.routes()).use(base.allowedMethods());
  for (const r of o.routers) app.use(r.routes()).use(r.allowedMethods());
  for (const m of o.middleware ?? []) app.use(m);
  return { app, routes: registeredRoutes([base, ...o.routers]).map((r) => r.key) };
}

export async function startHttpServer(o: HttpServerOptions): Promise<RunningHttpServer> {
  const { app, routes } = createHttpApp(o);
  const listener = await createListener(app.callback(), { timeouts: o.timeouts ?? defaultTimeouts, tls: o.tls, logger: o.logger });
  const server = listener.server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  return {
    port,
    routes,
    secure: listener.secure,
    reloadTls: listener.reloadTls,
    close: () =>
      new Promise<void>((resolve) => {
        listener.dispose();
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
