/**
 * A stand-in for Rocket.Chat's REST API on the sending side, following its documented formats:
 * `POST /api/v1/chat.sendMessage` (`X-Auth-Token`, `X-User-Id`; body `{ message: { _id?, rid,
 * msg, attachments? } }`; 200 `{ message, success: true }`; 400 `{ success: false, error,
 * errorType }`; 401 `{ status: 'error', message }`), `GET /api/v1/chat.getMessage?msgId=`,
 * `GET /api/v1/livechat/room?token=` and `GET /api/v1/me`. Message ids are unique, as in
 * Rocket.Chat's database. Fault injection: error answers (5xx, 429 with x-ratelimit-reset) and a
 * message stored then never answered or its connection dropped.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type RocketChatFault =
  | { kind: 'error'; httpStatus: number; body: object; headers?: Record<string, string> }
  | { kind: 'accept_then_hang' }
  | { kind: 'accept_then_reset' };

export interface RocketChatStored {
  _id: string;
  rid: string;
  msg: string;
  attachments: unknown[] | undefined;
}

export interface RocketChatStandin {
  url: string;
  readonly messages: readonly RocketChatStored[];
  /** Rooms that exist (others answer error-room-not-found); visitor token -> room. */
  rooms: Set<string>;
  visitors: Map<string, string>;
  inject(...faults: RocketChatFault[]): void;
  /** Called when a send arrives, before it is stored and answered; awaited (the fault suite kills the workers here). */
  onRequest(hook: (() => void | Promise<void>) | undefined): void;
  close(): Promise<void>;
}

export async function startRocketChatStandin(o: { authToken: string; userId: string }): Promise<RocketChatStandin> {
  const messages: RocketChatStored[] = [];
  const faults: RocketChatFault[] = [];
  const rooms = new Set<string>();
  const visitors = new Map<string, string>();
  let hook: (() => void | Promise<void>) | undefined;
  const json = (res: http.ServerResponse, status: number, body: object, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle());
    async function handle(): Promise<void> {
      const url = new URL(req.url ?? '/', 'http://standin');
      if (req.headers['x-auth-token'] !== o.authToken || req.headers['x-user-id'] !== o.userId) return json(res, 401, { status: 'error', message: 'You must be logged in to do this.' });
      if (req.method === 'GET' && url.pathname === '/api/v1/me') return json(res, 200, { _id: o.userId, username: 'care.team', success: true });
      if (req.method === 'GET' && url.pathname === '/api/v1/chat.getMessage') {
        const m = messages.find((x) => x._id === url.searchParams.get('msgId'));
        return m ? json(res, 200, { message: { ...m, u: { _id: o.userId } }, success: true }) : json(res, 400, { success: false, error: 'Message not found' });
      }
      if (req.method === 'GET' && url.pathname === '/api/v1/livechat/room') {
        const rid = visitors.get(url.searchParams.get('token') ?? '');
        return rid ? json(res, 200, { room: { _id: rid, t: 'l' }, newRoom: false, success: true }) : json(res, 400, { success: false, error: 'invalid-token' });
      }
      if (req.method !== 'POST' || url.pathname !== '/api/v1/chat.sendMessage') return json(res, 404, { success: false, error: 'Not found' });
      let body: { message?: { _id?: string; rid?: string; msg?: string; attachments?: unknown[] } };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
      } catch {
        return json(res, 400, { success: false, error: 'Invalid JSON' });
      }
      const m = body.message;
      if (!m?.rid) return json(res, 400, { success: false, error: "Match error: Missing key 'rid'", errorType: 'error-invalid-params' });
      if (!rooms.has(m.rid)) return json(res, 400, { success: false, error: 'error-room-not-found', errorType: 'error-room-not-found' });
      if (m._id !== undefined && messages.some((x) => x._id === m._id)) return json(res, 400, { success: false, error: 'Duplicated message id', errorType: 'error-duplicate-id' });
      await hook?.();
      const fault = faults.shift();
      if (fault?.kind === 'error') return json(res, fault.httpStatus, fault.body, fault.headers);
      const stored: RocketChatStored = { _id: m._id ?? randomBytes(9).toString('base64url'), rid: m.rid, msg: m.msg ?? '', attachments: m.attachments };
      messages.push(stored);
      if (fault?.kind === 'accept_then_hang') return;
      if (fault?.kind === 'accept_then_reset') {
        req.socket.destroy();
        return;
      }
      return json(res, 200, { message: { ...stored, ts: new Date().toISOString(), u: { _id: o.userId, username: 'care.team' } }, success: true });
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    messages,
    rooms,
    visitors,
    inject: (...f) => faults.push(...f),
    onRequest: (h) => {
      hook = h;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
