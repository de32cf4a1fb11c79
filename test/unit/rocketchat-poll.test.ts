/**
 * rocketchat_poll against a local HTTP server (port 0) that serves Rocket.Chat REST answers: the
 * channels.history response of test/fixtures/rocketchat/history as it is, and pages derived
 * from it (same message shape, more messages) served with the documented query semantics
 * (roomId, oldest, inclusive, count, offset; newest first). Faults: 429 with X-RateLimit-Reset or
 * Retry-After, a failing emit, and a stop mid-way followed by a restart on the same cursor store.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { PollingContext, SourceCursorStore, SourceInstance } from '../../src/connectors/types.js';
import { canonicalMessageSchema } from '../../src/core/canonical-message.js';
import { createLogger } from '../../src/core/logger.js';
import { advance, newerThan, rocketChatPollConfigSchema, rocketChatPollSource } from '../../src/connectors/sources/rocketchat-poll.js';
import { rateLimitWaitMs } from '../../src/connectors/sources/rocketchat-poll-client.js';
import { syncResult } from '../support/sync-parse.js';

const historyPage = readFileSync(new URL('../fixtures/rocketchat/history/channels_history.json', import.meta.url), 'utf8');
const historyMessages = (JSON.parse(historyPage) as { messages: Record<string, unknown>[] }).messages;
const AUTH = { token: 'pat-token-for-tests', user: 'pollerUser0000001' };
const ctx = { channelId: 'rc-poll', receivedAt: new Date('2026-03-01T12:00:00.000Z') };

type Msg = Record<string, unknown> & { _id: string; ts: string };

/** Room content derived from the history page: the first (user) message's shape, more of them, and its system messages. */
function derivedRoom(rid: string, count: number, startMs = Date.parse('2026-02-26T09:30:15.250Z')): Msg[] {
  const [user, ...system] = historyMessages as Msg[];
  const out: Msg[] = [];
  for (let i = 0; i < count; i++) {
    // Messages 4 and 5 share one millisecond: a page boundary between them must not skip either.
    const ms = startMs + (i >= 5 ? i - 1 : i) * 1000;
    out.push({ ...user!, _id: `${rid}-m${String(i).padStart(2, '0')}`, rid, msg: `message ${i}`, ts: new Date(ms).toISOString(), _updatedAt: new Date(ms + 7).toISOString() });
    if (i % 4 === 1) out.push({ ...system[i % system.length]!, _id: `${rid}-sys${i}`, rid, ts: new Date(ms + 500).toISOString() });
  }
  return out;
}

interface Call {
  path: string;
  params: URLSearchParams;
  at: number;
}

interface Peer {
  url: string;
  calls: Call[];
  rooms: Map<string, Msg[]>;
  /** Return a response to inject a fault for this call, or undefined to answer normally. */
  fault: ((c: Call) => { status: number; headers?: Record<string, string> } | undefined) | undefined;
  /** Serve this body verbatim for the next history call. */
  verbatim: string[];
  close(): Promise<void>;
}

async function startPeer(): Promise<Peer> {
  const peer = { calls: [] as Call[], rooms: new Map<string, Msg[]>(), fault: undefined, verbatim: [] as string[] } as unknown as Peer;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://peer');
    const call: Call = { path: u.pathname, params: u.searchParams, at: Date.now() };
    peer.calls.push(call);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (req.headers['x-auth-token'] !== AUTH.token || req.headers['x-user-id'] !== AUTH.user) return json(401, { status: 'error', message: 'You must be logged in to do this.' });
    const fault = peer.fault?.(call);
    if (fault) return json(fault.status, { success: false, error: 'Error, too many requests. Please slow down.' }, fault.headers);
    const roomId = u.searchParams.get('roomId') ?? '';
    const room = peer.rooms.get(roomId) ?? [];
    if (/^\/api\/v1\/(channels|groups|im)\.history$/.test(u.pathname)) {
      const v = peer.verbatim.shift();
      if (v !== undefined) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(v);
      }
      const oldest = u.searchParams.get('oldest');
      const inclusive = u.searchParams.get('inclusive') === 'true';
      const count = Number(u.searchParams.get('count') ?? 20);
      const offset = Number(u.searchParams.get('offset') ?? 0);
      const o = oldest === null ? -Infinity : Date.parse(oldest);
      const list = room
        .filter((m) => (inclusive ? Date.parse(m.ts) >= o : Date.parse(m.ts) > o))
        .sort((a, b) => Date.parse(b.ts) - Date.parse(a.ts));
      return json(200, { messages: list.slice(offset, offset + count), count: Math.min(count, Math.max(0, list.length - offset)), offset, total: list.length, success: true });
    }
    if (u.pathname === '/api/v1/chat.syncMessages') {
      const since = Date.parse(u.searchParams.get('lastUpdate') ?? '1970-01-01T00:00:00Z');
      return json(200, { result: { updated: room.filter((m) => Date.parse(String(m._updatedAt)) > since), deleted: [] }, success: true });
    }
    json(404, { success: false, error: 'not found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  peer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  peer.close = () => new Promise<void>((r) => server.close(() => r()));
  return peer;
}

function memoryCursor(): SourceCursorStore & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return { data, get: async (k) => data.get(k) ?? null, set: async (k, v) => void data.set(k, v) };
}

function makeSource(peer: Peer, over: Record<string, unknown> = {}): SourceInstance {
  const config = rocketChatPollConfigSchema.parse({
    kind: 'rocketchat_poll',
    server_url: peer.url,
    auth_token: AUTH.token,
    user_id: AUTH.user,
    rooms: [{ id: 'RCroomPatientDesk', kind: 'channel', name: 'general' }],
    interval_ms: 20,
    start_at: 'beginning',
    rate_limit: { calls: 1000, per_ms: 60_000 },
    ...over,
  });
  return rocketChatPollSource.create(config, { channelId: 'rocketchat-poll' });
}

interface Run {
  events: { room: { id: string; type: string }; messages: Msg[] }[];
  ids: string[];
}

/** Runs poll() until `until(run)` is true (or a timeout), then aborts and waits for it to return. */
async function runPoll(
  source: SourceInstance,
  cursor: SourceCursorStore,
  until: (run: Run) => boolean,
  opts: { emit?: (raw: Buffer, run: Run, abort: () => void) => Promise<void>; timeoutMs?: number } = {},
): Promise<Run> {
  const run: Run = { events: [], ids: [] };
  const controller = new AbortController();
  const ctx: PollingContext = {
    signal: controller.signal,
    logger: createLogger({ level: 'silent' }),
    cursor,
    emit: async (raw, contentType) => {
      expect(contentType).toBe('application/json');
      if (opts.emit) await opts.emit(raw, run, () => controller.abort());
      const ev = (JSON.parse(raw.toString('utf8')) as { rocketchat_poll: Run['events'][number] }).rocketchat_poll;
      run.events.push(ev);
      run.ids.push(...ev.messages.map((m) => m._id));
      if (until(run)) controller.abort();
    },
  };
  const timer = setTimeout(() => controller.abort(), opts.timeoutMs ?? 10_000);
  const check = setInterval(() => {
    if (until(run)) controller.abort();
  }, 10);
  try {
    await source.poll!(ctx);
  } finally {
    clearTimeout(timer);
    clearInterval(check);
  }
  return run;
}

const userIds = (room: Msg[]): string[] => room.filter((m) => m.t === undefined).map((m) => m._id);

let peer: Peer;
afterEach(async () => {
  await peer?.close();
});

describe('rocketchat_poll against Rocket.Chat REST answers', () => {
  it('the channels.history response as it is: one user message, three system messages filtered', async () => {
    peer = await startPeer();
    peer.verbatim.push(historyPage);
    const cursor = memoryCursor();
    const source = makeSource(peer);
    const run = await runPoll(source, cursor, (r) => r.events.length >= 1 && peer.calls.length >= 2);
    expect(run.ids).toEqual(['RChist00000000001']);
    expect(JSON.parse(cursor.data.get('room:channel:RCroomPatientDesk')!)).toEqual({ ts: '2026-02-26T09:30:15.250Z', ids: ['RChist00000000001'] });
    const first = peer.calls[0]!;
    expect(first.path).toBe('/api/v1/channels.history');
    expect(first.params.get('oldest')).toBeNull();
    // The next round polls forward from the cursor.
    expect(peer.calls[1]!.params.get('oldest')).toBe('2026-02-26T09:30:15.250Z');
    expect(peer.calls[1]!.params.get('inclusive')).toBe('true');
    // The emitted event parses into one canonical message.
    const parsed = await source.parse(Buffer.from(JSON.stringify({ rocketchat_poll: { server: peer.url, room: { id: 'RCroomPatientDesk', type: 'channel', name: 'general' }, messages: [historyMessages[0]] } })), ctx);
    expect(parsed.messages).toHaveLength(1);
    expect(parsed.messages[0]).toMatchObject({ kind: 'text', id: 'RChist00000000001', text: 'Is the clinic open on Saturday?', sent_at: '2026-02-26T09:30:15.250Z', sender: { platform_id: 'usr00000000000031', username: 'pat.rivera' }, conversation_id: 'rocketchat:RCroomPatientDesk', source: { kind: 'rocketchat_poll', endpoint_display: 'general' } });
    expect(canonicalMessageSchema.safeParse(parsed.messages[0]).success).toBe(true);
    // System messages handed to parse() directly are ignored with a reason.
    const sys = await source.parse(Buffer.from(JSON.stringify({ rocketchat_poll: { room: { id: 'r', type: 'channel' }, messages: historyMessages.slice(1) } })), ctx);
    expect(sys.messages).toEqual([]);
    expect(sys.ignored).toHaveLength(3);
  });

  it('pages through history (count/offset), emits oldest first, exactly once, then polls forward', async () => {
    peer = await startPeer();
    const room = derivedRoom('RCroomPatientDesk', 12);
    peer.rooms.set('RCroomPatientDesk', room);
    const cursor = memoryCursor();
    const source = makeSource(peer, { page_size: 3, emit_batch: 2 });
    const expected = userIds(room);
    let run = await runPoll(source, cursor, (r) => r.ids.length >= expected.length);
    expect(run.ids).toEqual(expected);
    const offsets = peer.calls.filter((c) => c.params.get('oldest') === null).map((c) => c.params.get('offset'));
    expect(offsets).toEqual(['0', '3', '6', '9', '12', '15']);
    expect(peer.calls.every((c) => c.params.get('count') === '3')).toBe(true);
    // Every event holds at most emit_batch messages.
    expect(Math.max(...run.events.map((e) => e.messages.length))).toBeLessThanOrEqual(2);

    // New messages arrive (one in the same millisecond as the newest emitted one): only they follow.
    const last = room[room.length - 1]!;
    const more: Msg[] = [
      { ...last, _id: 'late-same-ms', ts: last.ts, msg: 'same millisecond' },
      { ...last, _id: 'later', ts: new Date(Date.parse(last.ts) + 60_000).toISOString(), msg: 'later' },
    ];
    room.push(...more);
    run = await runPoll(source, cursor, (r) => r.ids.length >= 2);
    expect(run.ids).toEqual(['late-same-ms', 'later']);
  });

  it('honours a 429 with X-RateLimit-Reset, and with Retry-After', async () => {
    peer = await startPeer();
    peer.rooms.set('RCroomPatientDesk', derivedRoom('RCroomPatientDesk', 2));
    let refused = 0;
    peer.fault = (): { status: number; headers?: Record<string, string> } | undefined => {
      if (refused === 0) {
        refused++;
        return { status: 429, headers: { 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(Date.now() + 400) } };
      }
      if (refused === 1) {
        refused++;
        return { status: 429, headers: { 'retry-after': '1' } };
      }
      return undefined;
    };
    const run = await runPoll(makeSource(peer), memoryCursor(), (r) => r.ids.length >= 2);
    expect(run.ids).toHaveLength(2);
    const [a, b, c] = peer.calls;
    expect(b!.at - a!.at).toBeGreaterThanOrEqual(300);
    expect(c!.at - b!.at).toBeGreaterThanOrEqual(900);
  });

  it('keeps to the call budget per endpoint (default 10 per 60 s; here 2 per 600 ms)', async () => {
    peer = await startPeer();
    peer.rooms.set('RCroomPatientDesk', derivedRoom('RCroomPatientDesk', 3));
    const run = await runPoll(makeSource(peer, { page_size: 1, rate_limit: { calls: 2, per_ms: 600 } }), memoryCursor(), (r) => r.ids.length >= 3);
    expect(run.ids).toHaveLength(3);
    const times = peer.calls.map((c) => c.at);
    for (let i = 2; i < times.length; i++) expect(times[i]! - times[i - 2]!).toBeGreaterThanOrEqual(500);
    expect(rocketChatPollConfigSchema.parse({ kind: 'rocketchat_poll', server_url: 'https://x.example', auth_token: 't', user_id: 'u', rooms: [{ id: 'r', kind: 'im' }] }).rate_limit).toEqual({ calls: 10, per_ms: 60_000 });
  });

  it('a stop mid-way and a restart on the same cursor store skip and repeat nothing', async () => {
    peer = await startPeer();
    const room = derivedRoom('RCroomPatientDesk', 10);
    peer.rooms.set('RCroomPatientDesk', room);
    const cursor = memoryCursor();
    const source = makeSource(peer, { page_size: 4, emit_batch: 1 });
    const first = await runPoll(source, cursor, () => false, {
      // Stop after the third durable emit (the poll loop sees the abort right after it).
      emit: async (_raw, run, abort) => {
        if (run.events.length === 2) abort();
      },
    });
    expect(first.ids).toHaveLength(3);
    // Messages keep arriving while the poller is down.
    room.push({ ...room[0]!, _id: 'while-down', ts: new Date(Date.parse(room[room.length - 1]!.ts) + 5000).toISOString() });
    const expected = userIds(room);
    const second = await runPoll(makeSource(peer, { page_size: 4, emit_batch: 1 }), cursor, (r) => first.ids.length + r.ids.length >= expected.length);
    const all = [...first.ids, ...second.ids];
    expect(all).toEqual(expected);
    expect(new Set(all).size).toBe(all.length);
  });

  it('a failing emit does not move the cursor: the messages come again next round', async () => {
    peer = await startPeer();
    const room = derivedRoom('RCroomPatientDesk', 4);
    peer.rooms.set('RCroomPatientDesk', room);
    let failures = 0;
    const run = await runPoll(makeSource(peer, { emit_batch: 2 }), memoryCursor(), (r) => r.ids.length >= 4, {
      emit: async (_raw, r) => {
        if (r.events.length === 1 && failures === 0) {
          failures++;
          throw new Error('store unavailable');
        }
      },
    });
    expect(run.ids).toEqual(userIds(room));
  });

  it('several rooms per channel, each with its own cursor; a livechat room through chat.syncMessages', async () => {
    peer = await startPeer();
    peer.rooms.set('pub', derivedRoom('pub', 2));
    peer.rooms.set('priv', derivedRoom('priv', 2));
    peer.rooms.set('dm', derivedRoom('dm', 1));
    const visitor = { ...(derivedRoom('lc', 1)[0] as Msg), _id: 'lc-visitor', token: 'visitor-token', u: { _id: 'v1', username: 'guest-1', name: 'Jon' } };
    const agent = { ...(derivedRoom('lc', 2)[1] as Msg), _id: 'lc-agent', u: { _id: 'a1', username: 'dr.lee' } };
    peer.rooms.set('lc', [visitor, agent]);
    const cursor = memoryCursor();
    const source = makeSource(peer, {
      rooms: [
        { id: 'pub', kind: 'channel' },
        { id: 'priv', kind: 'group' },
        { id: 'dm', kind: 'im' },
        { id: 'lc', kind: 'livechat', name: 'Jon' },
      ],
      staff_users: ['pat.rivera'],
    });
    const run = await runPoll(source, cursor, (r) => r.ids.length >= 7);
    expect(run.ids.sort()).toEqual(['dm-m00', 'lc-agent', 'lc-visitor', 'priv-m00', 'priv-m01', 'pub-m00', 'pub-m01']);
    expect([...cursor.data.keys()].sort()).toEqual(['room:channel:pub', 'room:group:priv', 'room:im:dm', 'room:livechat:lc']);
    expect(new Set(peer.calls.map((c) => c.path))).toEqual(new Set(['/api/v1/channels.history', '/api/v1/groups.history', '/api/v1/im.history', '/api/v1/chat.syncMessages']));
    const lcEvent = run.events.find((e) => e.room.id === 'lc')!;
    const parsed = await source.parse(Buffer.from(JSON.stringify({ rocketchat_poll: { server: peer.url, ...lcEvent } })), ctx);
    expect(parsed.messages.map((m) => [m.id, m.author_role])).toEqual([
      ['lc-visitor', 'patient'],
      ['lc-agent', 'staff'],
    ]);
    const pubEvent = run.events.find((e) => e.room.id === 'pub')!;
    const pub = syncResult(source.parse(Buffer.from(JSON.stringify({ rocketchat_poll: pubEvent })), ctx));
    expect(pub.messages.map((m) => m.author_role)).toEqual(['staff', 'staff']);
  });

  it('start_at "now" remembers where now was', async () => {
    peer = await startPeer();
    peer.rooms.set('RCroomPatientDesk', derivedRoom('RCroomPatientDesk', 3));
    const cursor = memoryCursor();
    const run = await runPoll(makeSource(peer, { start_at: 'now' }), cursor, () => peer.calls.length >= 2);
    expect(run.ids).toEqual([]);
    const saved = JSON.parse(cursor.data.get('room:channel:RCroomPatientDesk')!) as { ts: string };
    expect(Date.now() - Date.parse(saved.ts)).toBeLessThan(10_000);
  });

  it('a wrong token is logged per room and retried, never crashing the loop', async () => {
    peer = await startPeer();
    peer.rooms.set('RCroomPatientDesk', derivedRoom('RCroomPatientDesk', 1));
    const run = await runPoll(makeSource(peer, { auth_token: 'wrong' }), memoryCursor(), () => peer.calls.length >= 3);
    expect(run.ids).toEqual([]);
  });
});

describe('cursor arithmetic', () => {
  const s = (id: string, at: string) => ({ id, at, at_ms: Date.parse(at), raw: {} });
  it('keeps ids at the cursor millisecond, drops older and repeated ones', () => {
    const c = { ts: '2026-01-01T00:00:01.000Z', ids: ['a'] };
    const items = [s('a', '2026-01-01T00:00:01.000Z'), s('b', '2026-01-01T00:00:01.000Z'), s('z', '2026-01-01T00:00:00.999Z'), s('c', '2026-01-01T00:00:02.000Z'), s('c', '2026-01-01T00:00:02.000Z')];
    const fresh = newerThan(c, items);
    expect(fresh.map((m) => m.id)).toEqual(['b', 'c']);
    expect(advance(c, fresh.slice(0, 1))).toEqual({ ts: '2026-01-01T00:00:01.000Z', ids: ['a', 'b'] });
    expect(advance(c, fresh)).toEqual({ ts: '2026-01-01T00:00:02.000Z', ids: ['c'] });
  });
  it('reads X-RateLimit-Reset in ms or s, else Retry-After', () => {
    const now = 1_700_000_000_000;
    expect(rateLimitWaitMs(new Headers({ 'x-ratelimit-reset': String(now + 1500) }), now, 60_000)).toBe(1500);
    expect(rateLimitWaitMs(new Headers({ 'x-ratelimit-reset': String(now / 1000 + 2) }), now, 60_000)).toBe(2000);
    expect(rateLimitWaitMs(new Headers({ 'retry-after': '3' }), now, 60_000)).toBe(3000);
    expect(rateLimitWaitMs(new Headers(), now, 60_000)).toBe(60_000);
  });
});
