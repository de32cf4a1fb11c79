/**
 * Rocket.Chat pull source: polls a server's REST API for new messages in configured rooms
 * (reference: chat-sources.md section 3.3). No webhook path; `poll()` runs in the worker role,
 * one loop per channel (src/pipeline/poll-runner.ts).
 *
 * Per room, forward polling with a durable cursor (ctx.cursor, key `room:<type>:<id>`):
 *  - channel / group / im: `<type>s.history?roomId&oldest=<cursor ts>&inclusive=true&count&offset`,
 *    every page until a short one (newest first), then oldest-first emission. `inclusive` plus the
 *    ids already emitted at the cursor's exact millisecond means two messages sharing a time are
 *    neither skipped nor repeated;
 *  - livechat: `chat.syncMessages?roomId&lastUpdate=<cursor>`, keyed on `_updatedAt` (so edits of
 *    earlier messages arrive too, as kind `edit`).
 * System messages (`t` present) are not emitted. Each emitted event is
 * `{ "rocketchat_poll": { "server", "room": {id, type, name}, "messages": [...] } }`, at most
 * `emit_batch` messages; the cursor moves only after `ctx.emit` resolved (the event is durable),
 * so a restart neither skips nor repeats a message.
 */
import { z } from 'zod';
import type { ParseResult } from '../../core/canonical-message.js';
import type { PollingContext, SourceConnector, SourceInstance, SourceParseContext } from '../types.js';
import { RocketChatApiError, RocketChatClient, abortableSleep } from './rocketchat-poll-client.js';
import { advance, newerThan, readTimeCursor as readCursor, type Sortable as PollItem, type TimeCursor } from './poll-cursor.js';

export { advance, newerThan };
import {
  isRecord,
  nonEmpty,
  rocketChatInstant,
  rocketChatMessage,
  roleOfUser,
  type AuthorRole,
  type RocketChatRoleOptions,
} from './rocketchat-webhook-parse.js';

export const ROCKETCHAT_POLL_KIND = 'rocketchat_poll';

const roomSchema = z.strictObject({
  id: z.string().min(1).describe('The room id (rid), e.g. from the room URL or rooms.info.'),
  kind: z
    .enum(['channel', 'group', 'im', 'livechat'])
    .describe('The room kind. channel: public (channels.history); group: private (groups.history); im: direct messages (im.history); livechat: an Omnichannel room (chat.syncMessages).'),
  name: z.string().optional().describe('A label for the room, used as endpoint_display.'),
});
export type RocketChatPollRoom = z.infer<typeof roomSchema>;

export const rocketChatPollConfigSchema = z
  .strictObject({
    kind: z.literal(ROCKETCHAT_POLL_KIND).describe('Source kind: polls Rocket.Chat rooms over the REST API.'),
    server_url: z.url({ protocol: /^https?$/ }).describe('The Rocket.Chat server, e.g. https://chat.clinic.example. Use ${ROCKETCHAT_URL}.'),
    auth_token: z.string().min(1).describe('X-Auth-Token: a Personal Access Token (or login token). Use ${ROCKETCHAT_AUTH_TOKEN}.'),
    user_id: z.string().min(1).describe('X-User-Id: the id of the user that owns the token. Use ${ROCKETCHAT_USER_ID}.'),
    rooms: z.array(roomSchema).min(1).describe('The rooms to poll; the user must be able to read each.'),
    interval_ms: z.number().int().min(10).default(30_000).describe('Pause between two polling rounds over all rooms.'),
    page_size: z.number().int().min(1).max(1000).default(100).describe('Messages per history page (count); the server caps it at API_Upper_Count_Limit (default 100).'),
    emit_batch: z.number().int().min(1).max(1000).default(50).describe('Messages per stored event; the cursor advances after each.'),
    start_at: z
      .union([z.enum(['beginning', 'now']), z.iso.datetime({ offset: true })])
      .default('now')
      .describe('Where a room without a cursor starts: "now" (only new messages), "beginning" (the whole history), or an ISO instant.'),
    rate_limit: z
      .strictObject({
        calls: z.number().int().min(1).default(10),
        per_ms: z.number().int().min(1).default(60_000),
      })
      .default({ calls: 10, per_ms: 60_000 })
      .describe('Call budget per REST endpoint; Rocket.Chat\'s default limiter allows 10 calls per 60 s per endpoint. 429 answers are honoured (X-RateLimit-Reset, Retry-After).'),
    request_timeout_ms: z.number().int().min(100).default(15_000).describe('Timeout of one REST call.'),
    staff_users: z
      .array(z.string().min(1))
      .default([])
      .describe('Usernames or user ids of clinic staff: their messages get author_role "staff". In livechat rooms visitors and agents are told apart by the message itself.'),
  })
  .describe('Polls Rocket.Chat rooms (public, private, direct, Omnichannel) over the REST API with a durable cursor.');

export type RocketChatPollConfig = z.infer<typeof rocketChatPollConfigSchema>;

/** Where a room's polling stands: the newest time emitted and the ids emitted at exactly that time. */
export type RoomCursor = TimeCursor;

export function cursorKey(room: RocketChatPollRoom): string {
  return `room:${room.kind}:${room.id}`;
}

const historyEndpoint: Record<'channel' | 'group' | 'im', string> = { channel: 'channels.history', group: 'groups.history', im: 'im.history' };

type Sortable = PollItem;

function sortable(raw: unknown, timeField: 'ts' | '_updatedAt'): Sortable | undefined {
  if (!isRecord(raw)) return undefined;
  const id = nonEmpty(raw._id);
  const at = rocketChatInstant(raw[timeField]);
  if (id === undefined || at === undefined) return undefined;
  return { id, at, at_ms: Date.parse(at), raw };
}

/** Safety net against a server that never returns a short page. */
const MAX_PAGES_PER_ROUND = 10_000;

export function createRocketChatPollSource(config: RocketChatPollConfig, _ctx: { channelId: string }): SourceInstance {
  const roleOptions: RocketChatRoleOptions = { staffUsers: new Set(config.staff_users) };

  async function fetchRoom(client: RocketChatClient, room: RocketChatPollRoom, cursor: RoomCursor, signal: AbortSignal): Promise<Sortable[]> {
    if (room.kind === 'livechat') {
      const body = await client.get('chat.syncMessages', { roomId: room.id, lastUpdate: cursor.ts ?? new Date(0).toISOString() }, signal);
      const result = isRecord(body) && isRecord(body.result) ? body.result : {};
      const updated: unknown[] = Array.isArray(result.updated) ? result.updated : [];
      return updated.map((m) => sortable(m, '_updatedAt')).filter((m): m is Sortable => m !== undefined);
    }
    const all: Sortable[] = [];
    for (let page = 0, offset = 0; page < MAX_PAGES_PER_ROUND; page++, offset += config.page_size) {
      const params: Record<string, string> = { roomId: room.id, count: String(config.page_size), offset: String(offset) };
      if (cursor.ts !== null) {
        params['oldest'] = cursor.ts;
        params['inclusive'] = 'true';
      }
      const body = await client.get(historyEndpoint[room.kind], params, signal);
      const messages: unknown[] = isRecord(body) && Array.isArray(body.messages) ? body.messages : [];
      for (const m of messages) {
        const s = sortable(m, 'ts');
        if (s !== undefined) all.push(s);
      }
      if (messages.length < config.page_size) return all;
    }
    throw new RocketChatApiError(historyEndpoint[room.kind], undefined, `more than ${MAX_PAGES_PER_ROUND} pages in one round`);
  }

  async function pollRoom(client: RocketChatClient, room: RocketChatPollRoom, ctx: PollingContext): Promise<number> {
    const key = cursorKey(room);
    let cursor = readCursor(await ctx.cursor.get(key));
    if (cursor === null) {
      const start = config.start_at;
      cursor = { ts: start === 'beginning' ? null : start === 'now' ? new Date().toISOString() : new Date(start).toISOString(), ids: [] };
      // Remember where "now" was, so a restart does not move the start forward.
      await ctx.cursor.set(key, JSON.stringify(cursor));
    }
    const fresh = newerThan(cursor, await fetchRoom(client, room, cursor, ctx.signal));
    let emitted = 0;
    for (let i = 0; i < fresh.length; i += config.emit_batch) {
      const chunk = fresh.slice(i, i + config.emit_batch);
      const messages = chunk.filter((m) => m.raw.t === undefined).map((m) => m.raw);
      if (messages.length > 0) {
        const event = { rocketchat_poll: { server: config.server_url, room: { id: room.id, type: room.kind, name: room.name }, messages } };
        await ctx.emit(Buffer.from(JSON.stringify(event), 'utf8'), 'application/json');
        emitted += messages.length;
      }
      // Durable now: move the cursor. Stopping here (abort) loses and repeats nothing.
      cursor = advance(cursor, chunk);
      await ctx.cursor.set(key, JSON.stringify(cursor));
      if (ctx.signal.aborted) break;
    }
    return emitted;
  }

  return {
    path: undefined,
    maxBodyBytes: 0,
    handleGet: () => ({ status: 405, body: '' }),
    authenticate: () => ({ status: 405, body: '' }),
    checkEnvelope: () => 'rocketchat_poll has no webhook',
    acceptedResponse: { status: 405 },

    async poll(ctx: PollingContext): Promise<void> {
      const client = new RocketChatClient({
        baseUrl: config.server_url,
        authToken: config.auth_token,
        userId: config.user_id,
        budget: { calls: config.rate_limit.calls, perMs: config.rate_limit.per_ms },
        timeoutMs: config.request_timeout_ms,
      });
      while (!ctx.signal.aborted) {
        for (const room of config.rooms) {
          if (ctx.signal.aborted) break;
          try {
            await pollRoom(client, room, ctx);
          } catch (err) {
            if (ctx.signal.aborted) break;
            // Room ids, endpoints and statuses only: never a response body.
            const e = err instanceof RocketChatApiError ? { endpoint: err.endpoint, status: err.status ?? null } : {};
            ctx.logger.warn({ room: room.id, ...e, err: { message: err instanceof Error ? err.message : String(err) } }, 'rocketchat poll of a room failed; retried next round');
          }
        }
        await abortableSleep(config.interval_ms, ctx.signal);
      }
    },

    parse: (raw, parseCtx) => parseRocketChatPoll(raw, parseCtx, roleOptions),
  };
}

function roleOf(m: Record<string, unknown>, roomType: string, opts: RocketChatRoleOptions): AuthorRole | undefined {
  const u = isRecord(m.u) ? m.u : {};
  if (roomType === 'livechat') {
    // Omnichannel messages written by the visitor carry the visitor's token.
    if (nonEmpty(m.token) !== undefined) return 'patient';
    return roleOfUser({ id: nonEmpty(u._id), username: nonEmpty(u.username) }, m.bot, opts) ?? 'staff';
  }
  return roleOfUser({ id: nonEmpty(u._id), username: nonEmpty(u.username) }, m.bot, opts);
}

/** Parses an event emitted by the poller. Pure; never throws. */
export function parseRocketChatPoll(raw: Buffer, ctx: SourceParseContext, opts: RocketChatRoleOptions): ParseResult {
  const result: ParseResult = { messages: [], statuses: [], ignored: [], source_errors: [] };
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    result.ignored.push({ what: 'event', reason: 'the stored body is not valid JSON' });
    return result;
  }
  const poll = isRecord(body) && isRecord(body.rocketchat_poll) ? body.rocketchat_poll : undefined;
  if (poll === undefined || !Array.isArray(poll.messages)) {
    result.ignored.push({ what: 'event', reason: 'not an event emitted by the rocketchat_poll source' });
    return result;
  }
  const room = isRecord(poll.room) ? poll.room : {};
  const roomType = nonEmpty(room.type) ?? 'channel';
  const rctx = { sourceKind: ROCKETCHAT_POLL_KIND, siteUrl: nonEmpty(poll.server), receivedAt: ctx.receivedAt.toISOString(), editsAsNew: roomType !== 'livechat' };
  poll.messages.forEach((m: unknown, i: number) => {
    if (!isRecord(m)) {
      result.ignored.push({ what: `messages[${i}]`, reason: 'the entry is not an object' });
      return;
    }
    if (m.t !== undefined) {
      result.ignored.push({ what: `messages[${i}] (t ${JSON.stringify(m.t)})`, reason: 'a system message; not processed' });
      return;
    }
    try {
      const u = isRecord(m.u) ? m.u : {};
      result.messages.push(
        rocketChatMessage(
          {
            id: nonEmpty(m._id),
            roomId: nonEmpty(m.rid) ?? nonEmpty(room.id),
            roomName: nonEmpty(room.name),
            text: typeof m.msg === 'string' ? m.msg : undefined,
            ts: m.ts,
            editedAt: m.editedAt,
            threadId: nonEmpty(m.tmid),
            sender: Object.fromEntries(
              Object.entries({ platform_id: nonEmpty(u._id), username: nonEmpty(u.username), display_name: nonEmpty(m.alias) ?? nonEmpty(u.name) }).filter(([, v]) => v !== undefined),
            ),
            role: roleOf(m, roomType, opts),
            raw: m,
          },
          rctx,
        ),
      );
    } catch {
      result.ignored.push({ what: `messages[${i}]`, reason: 'the message could not be parsed (internal error)' });
    }
  });
  return result;
}

export const rocketChatPollSource: SourceConnector<typeof rocketChatPollConfigSchema> = {
  kind: ROCKETCHAT_POLL_KIND,
  summary: 'Polls Rocket.Chat rooms over the REST API (history, Omnichannel sync) with a durable cursor per room.',
  status: 'experimental',
  since: '0.2.0',
  configSchema: rocketChatPollConfigSchema,
  create: createRocketChatPollSource,
};
