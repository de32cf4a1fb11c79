/**
 * A small admin API behind a bearer token: dead-letter list, inspect, replay, discard; message
 * lookup by source id. Answers carry ids, states, codes and server responses, never message text.
 */
import Router from '@koa/router';
import getRawBody from 'raw-body';
import type { Context } from 'koa';
import { z } from 'zod';
import type { MessageStore, PendingDelivery } from '../store/message-store.js';
import type { RuntimeChannel } from '../pipeline/runtime-channel.js';
import type { ReloadStatus } from '../channels/channel-runtime.js';
import { errorBody } from './webhook-route.js';
import type { AuditAction, AuditOutcome, AuditRecorder, AuditResource } from '../core/audit.js';
import { principalLabel, type Principal } from '../core/principal.js';
import { requestPrincipal } from './access-control.js';
import { rolePermissions } from './permissions.js';

export interface AdminDeps {
  store: MessageStore;
  channels(): readonly RuntimeChannel[];
  reloadStatus(): ReloadStatus;
  reload(): Promise<ReloadStatus>;
  enqueueDeliveries(channelId: string, pending: readonly PendingDelivery[]): Promise<void>;
  queueCounts(): Promise<Record<string, Record<string, number>>>;
  destinations(): Promise<{ channel: string; destination: string; paused: boolean; counts: Record<string, number> }[]>;
  /** `by`: the acting principal's label (principalLabel), for the log line every worker's operators read. */
  pauseDestination(channel: string, destination: string, reason: string, by: string): Promise<void>;
  resumeDestination(channel: string, destination: string, by: string): Promise<void>;
  /** Allows the next attempt of `generation` to resend an outbound message whose send is uncertain. */
  allowOutboundResend?(deliveryId: string, generation: number): Promise<boolean>;
  /** Every PHI access and action is recorded; a failed write fails the request. */
  audit: AuditRecorder;
}

/** The principal of the bootstrap admin token. */
export const bootstrapPrincipal: Principal = { kind: 'bootstrap', id: 'ADMIN_TOKEN', display: 'ADMIN_TOKEN', role: 'admin' };

/** The principal the access-control guard put on the request. */
export const principalOf = requestPrincipal;

export function bad(ctx: Context, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = errorBody(code, message);
}

const listQuery = z
  .object({
    channel: z.string().optional(),
    destination: z.string().optional(),
    code: z.string().optional(),
    since: z.iso.datetime({ offset: true }).optional(),
    until: z.iso.datetime({ offset: true }).optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    after_at: z.iso.datetime({ offset: true }).optional(),
    after_id: z.uuid().optional(),
  })
  .strict();

const bulkReplayBody = z
  .object({
    channel: z.string().optional(),
    destination: z.string().optional(),
    code: z.string().optional(),
    max: z.number().int().min(1).max(100_000).default(1000),
    reason: z.string().max(500).optional(),
  })
  .strict();

const searchQuery = z
  .object({
    q: z.string().min(1).max(200).optional(),
    phone: z.string().min(3).max(32).optional(),
    channel: z.string().optional(),
    destination: z.string().optional(),
    state: z.enum(['pending', 'delivered', 'dropped', 'dead_lettered', 'discarded']).optional(),
    code: z.string().optional(),
    since: z.iso.datetime({ offset: true }).optional(),
    until: z.iso.datetime({ offset: true }).optional(),
    limit: z.coerce.number().int().min(1).max(200).optional(),
    before_at: z.iso.datetime({ offset: true }).optional(),
    before_id: z.uuid().optional(),
  })
  .strict();

const discardBody = z.object({ reason: z.string().min(1).max(500) }).strict();
const replayBody = z
  .object({
    reason: z.string().max(500).optional(),
    /**
     * OUTBOUND_SEND_UNCERTAIN only: the operator checked the chat (or accepts the risk) and wants
     * the message sent again although an earlier request may have reached the patient. Audited.
     */
    resend_uncertain: z.boolean().optional(),
  })
  .strict();

export async function jsonBody<T>(ctx: Context, schema: z.ZodType<T>): Promise<T | undefined> {
  let raw: string;
  try {
    raw = (await getRawBody(ctx.req, { limit: 64 * 1024, encoding: 'utf8' })) || '{}';
  } catch {
    bad(ctx, 413, 'BODY_TOO_LARGE', 'admin request bodies are limited to 64 KiB');
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    bad(ctx, 400, 'BODY_NOT_JSON', 'the body is not valid JSON');
    return undefined;
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    bad(ctx, 400, 'BODY_INVALID', z.prettifyError(parsed.error));
    return undefined;
  }
  return parsed.data;
}

/**
 * The reason a delivery failed, in one line, first in every view: the error message's first
 * line, which for a mapping problem starts with the mapping's file:line:column.
 */
export function failureReason(d: { lastErrorCode: string | null; lastErrorMessage: string | null }): string | null {
  const line = d.lastErrorMessage?.split('\n')[0]?.trim();
  if (line) return d.lastErrorCode === null ? line : `${d.lastErrorCode}: ${line}`;
  return d.lastErrorCode;
}

function withReason<T extends { lastErrorCode: string | null; lastErrorMessage: string | null }>(d: T): { reason: string | null } & T {
  return { reason: failureReason(d), ...d };
}

export function createAdminRouter(deps: AdminDeps): Router {
  const router = new Router({ prefix: '/admin' });
  const audit = (
    ctx: Context,
    action: AuditAction,
    outcome: AuditOutcome,
    resources: readonly AuditResource[] = [],
    detail: Record<string, string | number | boolean | null> = {},
  ) => deps.audit.record({ action, principal: principalOf(ctx), outcome, resources, detail, sourceAddress: ctx.ip });
  const deliveryResource = (id: string): AuditResource => ({ type: 'delivery', id });

  router.post('/channels/reload', async (ctx) => {
    const status = await deps.reload();
    await audit(ctx, 'channels.reloaded', status.ok ? 'success' : 'failure');
    ctx.status = status.ok ? 200 : 422;
    ctx.body = { reload: status };
  });

  router.get('/channels', (ctx) => {
    ctx.body = {
      reload: deps.reloadStatus(),
      channels: deps.channels().map((c) => ({
        id: c.id,
        file: c.file,
        source: { path: c.source.path },
        destinations: c.destinations.map((d) => ({
          name: d.name,
          mapping: d.mapping.file,
          mapping_version: d.mapping.version,
          retry: d.retry,
          ordering: d.ordering,
          circuit_breaker: d.circuitBreaker,
        })),
      })),
    };
  });

  router.get('/queues', async (ctx) => {
    ctx.body = { queues: await deps.queueCounts() };
  });

  router.get('/destinations', async (ctx) => {
    ctx.body = { destinations: await deps.destinations() };
  });

  const knownDestination = (channel: string | undefined, destination: string | undefined) =>
    deps.channels().some((c) => c.id === channel && c.destinations.some((d) => d.name === destination));

  router.post('/destinations/:channel/:destination/pause', async (ctx) => {
    const { channel, destination } = ctx.params;
    if (!knownDestination(channel, destination)) return bad(ctx, 404, 'NOT_FOUND', 'no such channel destination');
    const body = await jsonBody(ctx, z.object({ reason: z.string().min(1).max(500) }).strict());
    if (!body) return;
    await deps.pauseDestination(channel!, destination!, body.reason, principalLabel(principalOf(ctx)));
    await audit(ctx, 'destination.paused', 'success', [{ type: 'destination', id: `${channel}/${destination}` }], { reason: body.reason });
    ctx.body = { paused: true };
  });

  router.post('/destinations/:channel/:destination/resume', async (ctx) => {
    const { channel, destination } = ctx.params;
    if (!knownDestination(channel, destination)) return bad(ctx, 404, 'NOT_FOUND', 'no such channel destination');
    await deps.resumeDestination(channel!, destination!, principalLabel(principalOf(ctx)));
    await audit(ctx, 'destination.resumed', 'success', [{ type: 'destination', id: `${channel}/${destination}` }]);
    ctx.body = { paused: false };
  });

  router.get('/dead-letters', async (ctx) => {
    const q = listQuery.safeParse(ctx.query);
    if (!q.success) return bad(ctx, 400, 'QUERY_INVALID', z.prettifyError(q.error));
    const f = q.data;
    if ((f.after_at === undefined) !== (f.after_id === undefined)) return bad(ctx, 400, 'QUERY_INVALID', 'after_at and after_id go together');
    const items = await deps.store.listDeadLetters({
      ...(f.channel !== undefined && { channelId: f.channel }),
      ...(f.destination !== undefined && { destination: f.destination }),
      ...(f.code !== undefined && { errorCode: f.code }),
      ...(f.since !== undefined && { since: new Date(f.since) }),
      ...(f.until !== undefined && { until: new Date(f.until) }),
      ...(f.limit !== undefined && { limit: f.limit }),
      ...(f.after_at !== undefined && f.after_id !== undefined && { after: { at: new Date(f.after_at), id: f.after_id } }),
    });
    await audit(ctx, 'message.searched', 'success', items.map((d) => deliveryResource(d.id)), {
      listed: items.length,
      channel: f.channel ?? null,
      destination: f.destination ?? null,
      code: f.code ?? null,
    });
    const last = items.at(-1);
    ctx.body = {
      items: items.map(withReason),
      next: last && items.length === (f.limit ?? 100) ? { after_at: last.deadLetteredAt?.toISOString(), after_id: last.id } : null,
    };
  });

  router.get('/dead-letters/count', async (ctx) => {
    const q = listQuery.safeParse(ctx.query);
    if (!q.success) return bad(ctx, 400, 'QUERY_INVALID', z.prettifyError(q.error));
    const f = q.data;
    ctx.body = {
      count: await deps.store.countDeadLetters({
        ...(f.channel !== undefined && { channelId: f.channel }),
        ...(f.destination !== undefined && { destination: f.destination }),
        ...(f.code !== undefined && { errorCode: f.code }),
        ...(f.since !== undefined && { since: new Date(f.since) }),
        ...(f.until !== undefined && { until: new Date(f.until) }),
      }),
    };
  });

  router.get('/deliveries/:id', async (ctx) => {
    const id = z.uuid().safeParse(ctx.params['id']);
    if (!id.success) return bad(ctx, 400, 'ID_INVALID', 'delivery ids are UUIDs');
    const d = await deps.store.getDelivery(id.data);
    if (!d) {
      await audit(ctx, 'delivery.viewed', 'failure', [deliveryResource(id.data)], { reason: 'not_found' });
      return bad(ctx, 404, 'NOT_FOUND', 'no such delivery');
    }
    await audit(ctx, 'delivery.viewed', 'success', [deliveryResource(d.id), { type: 'message', id: d.messageId }]);
    ctx.body = withReason(d);
  });

  // The content view of a dead letter: the output its destination refused to send (an invalid
  // mapping output) or that a server refused. Message content: behind the admin token today, and
  // behind the permission to see content once roles are in place.
  router.get('/deliveries/:id/rejected-output', async (ctx) => {
    const id = z.uuid().safeParse(ctx.params['id']);
    if (!id.success) return bad(ctx, 400, 'ID_INVALID', 'delivery ids are UUIDs');
    const r = await deps.store.getRejectedOutput(id.data);
    if (!r) {
      await audit(ctx, 'delivery.viewed', 'failure', [deliveryResource(id.data)], { view: 'rejected_output', reason: 'not_found' });
      return bad(ctx, 404, 'NOT_FOUND', 'no rejected output is kept for this delivery (it was not refused for its content)');
    }
    await audit(ctx, 'delivery.viewed', 'success', [deliveryResource(id.data)], { view: 'rejected_output' });
    ctx.body = { delivery_id: id.data, generation: r.generation, attempt: r.attempt, at: r.at, error_code: r.errorCode, output: r.output };
  });

  router.post('/dead-letters/:id/replay', async (ctx) => {
    const id = z.uuid().safeParse(ctx.params['id']);
    if (!id.success) return bad(ctx, 400, 'ID_INVALID', 'delivery ids are UUIDs');
    const body = await jsonBody(ctx, replayBody);
    if (!body) return;
    const resend = body.resend_uncertain === true;
    if (resend) {
      const current = await deps.store.getDelivery(id.data);
      if (current?.state !== 'dead_lettered' || current.lastErrorCode !== 'OUTBOUND_SEND_UNCERTAIN' || !deps.allowOutboundResend) {
        await audit(ctx, 'delivery.replayed', 'failure', [deliveryResource(id.data)], { reason: 'not_uncertain', resend_uncertain: true });
        return bad(ctx, 409, 'NOT_UNCERTAIN', 'resend_uncertain applies only to a dead letter with OUTBOUND_SEND_UNCERTAIN');
      }
    }
    const pending = await deps.store.requeue(id.data, principalLabel(principalOf(ctx)), body.reason);
    if (!pending) {
      await audit(ctx, 'delivery.replayed', 'failure', [deliveryResource(id.data)], { reason: 'not_dead_lettered' });
      return bad(ctx, 409, 'NOT_DEAD_LETTERED', 'the delivery is not in the dead-letter queue');
    }
    // Before the job is enqueued, so its attempt sees the operator's choice.
    if (resend) await deps.allowOutboundResend?.(pending.deliveryId, pending.generation);
    await deps.enqueueDeliveries(pending.channelId, [pending]);
    await audit(ctx, 'delivery.replayed', 'success', [deliveryResource(pending.deliveryId)], { generation: pending.generation, reason: body.reason ?? null, ...(resend && { resend_uncertain: true }) });
    ctx.status = 202;
    ctx.body = { replayed: 1, delivery_id: pending.deliveryId, generation: pending.generation };
  });

  router.post('/dead-letters/replay', async (ctx) => {
    const body = await jsonBody(ctx, bulkReplayBody);
    if (!body) return;
    let replayed = 0;
    const ids: string[] = [];
    while (replayed < body.max) {
      // Requeued rows leave the dead-letter state, so each page starts from the top again.
      const page = await deps.store.listDeadLetters({
        ...(body.channel !== undefined && { channelId: body.channel }),
        ...(body.destination !== undefined && { destination: body.destination }),
        ...(body.code !== undefined && { errorCode: body.code }),
        limit: Math.min(500, body.max - replayed),
      });
      if (page.length === 0) break;
      for (const d of page) {
        const pending = await deps.store.requeue(d.id, principalLabel(principalOf(ctx)), body.reason);
        if (pending) {
          await deps.enqueueDeliveries(pending.channelId, [pending]);
          ids.push(pending.deliveryId);
          replayed++;
        }
      }
    }
    await audit(ctx, 'delivery.bulk_replayed', 'success', ids.map(deliveryResource), {
      replayed,
      max: body.max,
      channel: body.channel ?? null,
      destination: body.destination ?? null,
      code: body.code ?? null,
      reason: body.reason ?? null,
    });
    ctx.status = 202;
    ctx.body = { replayed };
  });

  router.post('/dead-letters/:id/discard', async (ctx) => {
    const id = z.uuid().safeParse(ctx.params['id']);
    if (!id.success) return bad(ctx, 400, 'ID_INVALID', 'delivery ids are UUIDs');
    const body = await jsonBody(ctx, discardBody);
    if (!body) return;
    const ok = await deps.store.discard(id.data, principalLabel(principalOf(ctx)), body.reason);
    await audit(ctx, 'delivery.discarded', ok ? 'success' : 'failure', [deliveryResource(id.data)], { reason: body.reason });
    if (!ok) return bad(ctx, 409, 'NOT_DEAD_LETTERED', 'the delivery is not in the dead-letter queue');
    ctx.body = { discarded: 1 };
  });

  router.get('/messages', async (ctx) => {
    const q = z.object({ channel: z.string().min(1), source_id: z.string().min(1) }).strict().safeParse(ctx.query);
    if (!q.success) return bad(ctx, 400, 'QUERY_INVALID', 'give channel and source_id');
    const m = await deps.store.findMessage(q.data.channel, q.data.source_id);
    if (!m) {
      await audit(ctx, 'message.viewed', 'failure', [], { channel: q.data.channel, reason: 'not_found' });
      return bad(ctx, 404, 'NOT_FOUND', 'no message with that source id in that channel');
    }
    await audit(ctx, 'message.viewed', 'success', [...(m.id ? [{ type: 'message', id: m.id }] : []), ...m.deliveries.map((d) => deliveryResource(d.id))], { channel: q.data.channel });
    ctx.body = m;
  });

  // Who the caller is, for the console: what a role may not do is not offered.
  router.get('/whoami', (ctx) => {
    const p = principalOf(ctx);
    ctx.body = { principal: { kind: p.kind, display: p.display, role: p.role }, permissions: p.role ? [...rolePermissions[p.role]] : [] };
  });

  router.get('/stats', async (ctx) => {
    const q = z.object({ window_minutes: z.coerce.number().int().min(1).max(24 * 60).default(60) }).strict().safeParse(ctx.query);
    if (!q.success) return bad(ctx, 400, 'QUERY_INVALID', z.prettifyError(q.error));
    const since = new Date(Date.now() - q.data.window_minutes * 60_000);
    const [stats, dead] = await Promise.all([deps.store.deliveryStats(since), deps.store.deadLetterCounts()]);
    ctx.body = { since: since.toISOString(), window_minutes: q.data.window_minutes, destinations: stats, dead_letters: dead };
  });

  // The search itself: the filter from a query string (GET) or a JSON body (POST).
  const search = async (ctx: Context, f: z.infer<typeof searchQuery>) => {
    if ((f.before_at === undefined) !== (f.before_id === undefined)) return bad(ctx, 400, 'QUERY_INVALID', 'before_at and before_id go together');
    const phoneDigits = f.phone?.replace(/[^0-9]/g, '');
    if (f.phone !== undefined && !phoneDigits) return bad(ctx, 400, 'QUERY_INVALID', 'phone: give the number with its country code, e.g. +15551234567');
    const limit = f.limit ?? 25;
    const items = await deps.store.searchMessages({
      ...(f.q !== undefined && { sourceId: f.q.trim() }),
      // One-to-one WhatsApp threads are keyed by the sender's number (digits, no plus), through the blind index.
      ...(phoneDigits && { conversationId: `whatsapp:${phoneDigits}` }),
      ...(f.channel !== undefined && { channelId: f.channel }),
      ...(f.destination !== undefined && { destination: f.destination }),
      ...(f.state !== undefined && { state: f.state }),
      ...(f.code !== undefined && { errorCode: f.code }),
      ...(f.since !== undefined && { since: new Date(f.since) }),
      ...(f.until !== undefined && { until: new Date(f.until) }),
      ...(f.before_at !== undefined && f.before_id !== undefined && { before: { at: new Date(f.before_at), id: f.before_id } }),
      limit,
    });
    await audit(ctx, 'message.searched', 'success', items.map((m) => ({ type: 'message', id: m.id })), {
      listed: items.length,
      by_source_id: f.q !== undefined,
      by_phone: f.phone !== undefined,
      channel: f.channel ?? null,
      state: f.state ?? null,
    });
    const last = items.at(-1);
    ctx.body = { items, next: last && items.length === limit ? { before_at: last.receivedAt.toISOString(), before_id: last.id } : null };
  };

  router.get('/messages/search', async (ctx) => {
    // A phone number is PHI: in a URL it lands in proxies' and servers' access logs.
    if ('phone' in ctx.query) return bad(ctx, 400, 'QUERY_INVALID', 'phone: send it in the JSON body of POST /admin/messages/search, never in a URL (URLs end up in access logs)');
    const q = searchQuery.safeParse(ctx.query);
    if (!q.success) return bad(ctx, 400, 'QUERY_INVALID', z.prettifyError(q.error));
    await search(ctx, q.data);
  });

  router.post('/messages/search', async (ctx) => {
    const body = await jsonBody(ctx, searchQuery);
    if (body) await search(ctx, body);
  });

  router.get('/messages/:id/trace', async (ctx) => {
    const id = z.uuid().safeParse(ctx.params['id']);
    if (!id.success) return bad(ctx, 400, 'ID_INVALID', 'message ids are UUIDs');
    const t = await deps.store.messageTrace(id.data);
    if (!t) {
      await audit(ctx, 'message.viewed', 'failure', [{ type: 'message', id: id.data }], { view: 'trace', reason: 'not_found' });
      return bad(ctx, 404, 'NOT_FOUND', 'no such message');
    }
    // Servers' answers may echo message content: only for principals that may read content.
    const p = principalOf(ctx);
    const content = p.role !== null && rolePermissions[p.role].has('content.read');
    await audit(ctx, 'message.viewed', 'success', [{ type: 'message', id: t.id }, ...t.deliveries.map((d) => deliveryResource(d.id))], { view: 'trace', content });
    const deliveries = t.deliveries.map((d) => withReason(content ? d : { ...d, history: d.history.map((a) => ({ ...a, response: null })) }));
    ctx.body = { ...t, deliveries, contentWithheld: !content };
  });

  // The message's content (text, sender, media, location...): PHI, only with content.read, and every view audited.
  router.get('/messages/:id/content', async (ctx) => {
    const id = z.uuid().safeParse(ctx.params['id']);
    if (!id.success) return bad(ctx, 400, 'ID_INVALID', 'message ids are UUIDs');
    const m = await deps.store.messageContent(id.data);
    const found = m !== null && m !== 'pruned';
    await audit(ctx, 'message.viewed', found ? 'success' : 'failure', [{ type: 'message', id: id.data }], { view: 'content', ...(!found && { reason: m === 'pruned' ? 'pruned' : 'not_found' }) });
    if (m === 'pruned') return bad(ctx, 410, 'CONTENT_PRUNED', "this message's content is past its channel's payload retention; its trace is kept");
    if (m === null) return bad(ctx, 404, 'NOT_FOUND', 'no such message');
    ctx.body = { message_id: id.data, message: m };
  });

  // One patient's thread across messages and channels, in order, with each delivery's state.
  router.get('/messages/:id/conversation', async (ctx) => {
    const id = z.uuid().safeParse(ctx.params['id']);
    if (!id.success) return bad(ctx, 400, 'ID_INVALID', 'message ids are UUIDs');
    const items = await deps.store.searchMessages({ conversationOf: id.data, oldestFirst: true, limit: 200 });
    if (items.length === 0) {
      await audit(ctx, 'conversation.viewed', 'failure', [{ type: 'message', id: id.data }], { reason: 'not_found' });
      return bad(ctx, 404, 'NOT_FOUND', 'no such message');
    }
    await audit(ctx, 'conversation.viewed', 'success', items.map((m) => ({ type: 'message', id: m.id })), { listed: items.length });
    ctx.body = { items, truncated: items.length === 200 };
  });

  return router;
}
