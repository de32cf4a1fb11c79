/**
 * The webhook edge for one channel. A POST is answered 2xx only after its raw bytes, and what they
 * parse into (messages, deliveries), are committed to the store and its delivery jobs are
 * enqueued; anything else gets a 4xx with a reason (the sender has a bug) or a 503 (we are in
 * trouble; the sender retries and nothing is lost).
 */
import getRawBody from 'raw-body';
import type Koa from 'koa';
import type { Context } from 'koa';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { InboundRequest, EdgeResponse } from '../connectors/types.js';
import type { RuntimeChannel } from '../pipeline/runtime-channel.js';
import { isStoreUnavailable } from '../pipeline/store-errors.js';
import { EnqueueFailed } from '../pipeline/pipeline.js';
import { classify } from '../core/errors.js';

export interface WebhookDeps {
  /**
   * Stores the event and what it parses into, then enqueues its work (Pipeline.acceptEvent):
   * resolves with the event id once committed and enqueued; rejects with `EnqueueFailed` when
   * stored but not enqueued, with the store's error otherwise.
   */
  acceptEvent(channel: RuntimeChannel, e: { receivedAt: Date; contentType: string | undefined; raw: Buffer }): Promise<string>;
  logger: Logger;
  /** The live channels (hot reload can swap them). */
  channels(): readonly RuntimeChannel[];
  metrics?: Metrics | undefined;
}

/** Upper bound of a source's `prepare` (reads at the EHR), so that the sender is answered in time. */
const PREPARE_TIMEOUT_MS = 20_000;

/** `<path>/<Type>/<id>`: where an R4 rest-hook with a payload PUTs the resource. */
function isResourcePath(base: string, path: string): boolean {
  return path.startsWith(`${base}/`) && /^[A-Z][A-Za-z]{1,63}\/[A-Za-z0-9\-.]{1,64}$/.test(path.slice(base.length + 1));
}

function send(ctx: Context, r: EdgeResponse): void {
  ctx.status = r.status;
  if (r.body !== undefined) {
    ctx.type = r.contentType ?? (r.body.startsWith('{') ? 'application/json' : 'text/plain');
    ctx.body = r.body;
  } else {
    ctx.body = null;
  }
}

export function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

function toInbound(ctx: Context, rawBody: Buffer): InboundRequest {
  const headers: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(ctx.headers)) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return { method: ctx.method, url: ctx.url, headers, query: new URLSearchParams(ctx.querystring), rawBody };
}

/** application/x-www-form-urlencoded → field → value (or values, when repeated). */
export function decodeForm(raw: Buffer): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/**
 * One middleware for every channel webhook, matched on the live channels at request time, so a
 * hot reload that adds, removes or moves a channel takes effect without restarting the server.
 */
export function createWebhookMiddleware(deps: WebhookDeps): Koa.Middleware {
  return async (ctx, next) => {
    const ch = deps.channels().find(
      (c) => c.source.path !== undefined && (c.source.path === ctx.path || (c.source.restHook === true && isResourcePath(c.source.path, ctx.path))),
    );
    if (!ch) return next();
    try {
      const resourcePath = ctx.path !== ch.source.path;
      if (resourcePath && ctx.method !== 'PUT') {
        ctx.set('Allow', 'PUT');
        send(ctx, { status: 405, body: errorBody('METHOD_NOT_ALLOWED', 'rest-hook notifications with a payload are a PUT of the resource') });
      } else if (resourcePath) {
        await handlePost(ctx, ch, deps);
      } else if (ctx.method === 'GET' || ctx.method === 'HEAD') {
        send(ctx, ch.source.handleGet(toInbound(ctx, Buffer.alloc(0))));
      } else if (ctx.method !== 'POST') {
        ctx.set('Allow', 'GET, HEAD, POST');
        send(ctx, { status: 405, body: errorBody('METHOD_NOT_ALLOWED', 'webhooks take GET (verification) and POST (events)') });
      } else {
        await handlePost(ctx, ch, deps);
      }
    } finally {
      deps.metrics?.webhookRequests.inc({ channel: ch.id, status: String(ctx.status) });
    }
  };
}

async function handlePost(ctx: Context, ch: RuntimeChannel, deps: WebhookDeps): Promise<void> {
    const channelId = ch.id;
    const limit = ch.source.maxBodyBytes;
    const declared = Number(ctx.get('content-length') || NaN);
    if (Number.isFinite(declared) && declared > limit) {
      send(ctx, { status: 413, body: errorBody('BODY_TOO_LARGE', `body of ${declared} bytes exceeds the ${limit}-byte limit`) });
      return;
    }
    let raw: Buffer;
    try {
      raw = await getRawBody(ctx.req, { limit, length: Number.isFinite(declared) ? declared : undefined });
    } catch (err) {
      const e = err as { type?: string; status?: number };
      if (e.type === 'entity.too.large') {
        send(ctx, { status: 413, body: errorBody('BODY_TOO_LARGE', `body exceeds the ${limit}-byte limit`) });
      } else {
        send(ctx, { status: 400, body: errorBody('BODY_UNREADABLE', 'the request body could not be read completely') });
      }
      return;
    }
    const req = toInbound(ctx, raw);
    const rejected = ch.source.authenticate(req);
    if (rejected) {
      deps.logger.warn({ channel: channelId, status: rejected.status }, 'webhook rejected: authentication failed');
      send(ctx, rejected);
      return;
    }
    let body: unknown;
    if (raw.length === 0 && ch.source.restHook === true) {
      body = undefined;
    } else if (ch.source.bodyFormat === 'form') {
      body = decodeForm(raw);
    } else {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        send(ctx, { status: 400, body: errorBody('BODY_NOT_JSON', 'the body is not valid JSON') });
        return;
      }
    }
    const envelopeProblem = ch.source.checkEnvelope(body);
    if (envelopeProblem !== null) {
      send(ctx, { status: 400, body: errorBody('BODY_NOT_EVENT', envelopeProblem) });
      return;
    }
    let events: { raw: Buffer; contentType: string | undefined }[] = [{ raw, contentType: ctx.get('content-type') || undefined }];
    if (ch.source.prepare) {
      try {
        events = await ch.source.prepare(req, body, AbortSignal.timeout(PREPARE_TIMEOUT_MS));
      } catch (err) {
        // e.g. the EHR could not be read for an id-only notification: the sender retries.
        const c = classify(err);
        deps.logger.warn({ channel: channelId, code: c.code, err: { message: c.message } }, 'webhook event could not be prepared');
        ctx.set('Retry-After', '5');
        send(ctx, { status: 503, body: errorBody(c.code, 'the event could not be prepared; retry later') });
        return;
      }
    }
    let eventId: string | undefined;
    try {
      for (const event of events) eventId = await deps.acceptEvent(ch, { receivedAt: new Date(), ...event });
    } catch (err) {
      ctx.set('Retry-After', '5');
      if (err instanceof EnqueueFailed) {
        // Stored but not enqueued: the outbox sweeper will enqueue it. We still answer 503 so that
        // a sender that retries does so; the duplicate is deduplicated.
        deps.logger.error({ channel: channelId, eventId: err.eventId, err: { message: (err.cause as Error)?.message } }, 'could not enqueue inbound event; left in the outbox');
        send(ctx, { status: 503, body: errorBody('QUEUE_UNAVAILABLE', 'the queue is unavailable; retry later') });
      } else {
        deps.logger.error({ channel: channelId, storeDown: isStoreUnavailable(err), err: { message: (err as Error).message } }, 'could not store inbound event');
        send(ctx, { status: 503, body: errorBody('STORE_UNAVAILABLE', 'the message store is unavailable; retry later') });
      }
      return;
    }
    if (eventId !== undefined) ctx.set('X-Switchboard-Event-Id', eventId);
    send(ctx, ch.source.acceptedResponse);
}
