/**
 * A SANDBOX stand-in for Meta's Graph API send endpoint (`POST /<version>/<phone-number-id>/messages`),
 * for the zero-config run and the tests. It answers in Meta's documented formats (success with
 * `messages[].id`, errors as `{ error: { message, type, code, error_data, fbtrace_id } }`), records
 * every send, and, when given the gateway's whatsapp_cloud webhook URL, posts the status webhooks
 * Meta would (sent -> delivered -> read, echoing `biz_opaque_callback_data`), signed with the app
 * secret (`X-Hub-Signature-256`) exactly as Meta signs them. Nothing reaches WhatsApp: every
 * answer says so (`x-switchboard-sandbox` header, `sandbox: true`, wamids `wamid.SANDBOX…`).
 *
 * Fault injection (tests and the fault suite): queue faults for the next requests: an error
 * answer (5xx, 130429, 131047, 131056, ...), or accepting the send and then never answering
 * (a timeout after the send) or dropping the connection.
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { Logger } from '../core/logger.js';

export type GraphFault =
  /** Answer this error instead of sending. */
  | { kind: 'error'; httpStatus: number; code: number; message: string; details?: string; retryAfterSeconds?: number }
  /** Accept and record the send (statuses follow unless `statuses: false`), then never answer: the client times out. */
  | { kind: 'accept_then_hang'; statuses?: boolean }
  /** Accept and record the send (statuses follow unless `statuses: false`), then drop the connection without an answer. */
  | { kind: 'accept_then_reset'; statuses?: boolean }
  /** Accept and record the send but post no status webhooks for it. */
  | { kind: 'accept_silently' };

export interface GraphSandboxSend {
  wamid: string;
  phoneNumberId: string;
  to: string;
  type: string;
  body: Record<string, unknown>;
  callbackData: string | undefined;
  at: Date;
  /** How the sandbox answered: ok, an error code, or hung / reset after accepting. */
  answered: 'ok' | 'hang' | 'reset' | 'silent';
}

export interface GraphSandboxOptions {
  port?: number;
  host?: string;
  /** The app secret status webhooks are signed with (the gateway's WHATSAPP_APP_SECRET). */
  appSecret: string;
  /** Where status webhooks go (the gateway's whatsapp_cloud webhook); a function when known only later. Unset: none. */
  webhookUrl?: string | (() => string | undefined);
  /** The statuses posted after a send, in order, and the delay before each. Default sent, delivered, read at 200 ms each. */
  statuses?: readonly { status: 'sent' | 'delivered' | 'read'; delayMs: number }[];
  /** Only this bearer token is accepted (else 401 with code 190). Unset: any non-empty token. */
  accessToken?: string;
  logger?: Logger;
}

export interface GraphSandbox {
  readonly url: string;
  readonly sends: readonly GraphSandboxSend[];
  /** Faults for the next requests, in order. */
  inject(...faults: GraphFault[]): void;
  /** Called when a send request arrives, before it is answered; awaited (the fault suite kills the workers here). */
  onRequest(hook: ((send: { to: string; callbackData: string | undefined }) => void | Promise<void>) | undefined): void;
  /** Posts one status webhook now (e.g. a late `failed`). */
  postStatus(send: GraphSandboxSend, status: 'sent' | 'delivered' | 'read' | 'failed', error?: { code: number; title: string }): Promise<void>;
  close(): Promise<void>;
}

const SANDBOX_HEADER = { 'x-switchboard-sandbox': 'graph-api: nothing is sent to WhatsApp' };
const WABA_ID = '100555000000001';

const bodySchema = z.looseObject({
  messaging_product: z.literal('whatsapp'),
  recipient_type: z.literal('individual').optional(),
  to: z.string().regex(/^\d{5,15}$/),
  type: z.enum(['text', 'template', 'image', 'audio', 'video', 'document']).default('text'),
  biz_opaque_callback_data: z.string().max(512).optional(),
  context: z.looseObject({ message_id: z.string() }).optional(),
  text: z.looseObject({ body: z.string().min(1).max(4096), preview_url: z.boolean().optional() }).optional(),
  template: z.looseObject({ name: z.string().min(1), language: z.looseObject({ code: z.string().min(2) }) }).optional(),
});

function graphError(code: number, message: string, details: string | undefined, type = 'OAuthException'): object {
  return { error: { message, type, code, ...(details !== undefined && { error_data: { messaging_product: 'whatsapp', details } }), fbtrace_id: `SANDBOX${randomBytes(6).toString('hex')}` } };
}

export async function startGraphApiSandbox(o: GraphSandboxOptions): Promise<GraphSandbox> {
  const sends: GraphSandboxSend[] = [];
  const faults: GraphFault[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let hook: ((send: { to: string; callbackData: string | undefined }) => void | Promise<void>) | undefined;
  const statuses = o.statuses ?? [
    { status: 'sent', delayMs: 200 },
    { status: 'delivered', delayMs: 200 },
    { status: 'read', delayMs: 200 },
  ];
  let closed = false;

  function webhookUrl(): string | undefined {
    return typeof o.webhookUrl === 'function' ? o.webhookUrl() : o.webhookUrl;
  }

  async function postStatus(send: GraphSandboxSend, status: 'sent' | 'delivered' | 'read' | 'failed', error?: { code: number; title: string }): Promise<void> {
    const url = webhookUrl();
    if (url === undefined || closed) return;
    const entry: Record<string, unknown> = {
      id: send.wamid,
      status,
      timestamp: String(Math.floor(Date.now() / 1000)),
      recipient_id: send.to,
      ...(send.callbackData !== undefined && { biz_opaque_callback_data: send.callbackData }),
      ...(status === 'sent' && { conversation: { id: `SANDBOX${randomBytes(8).toString('hex')}`, origin: { type: 'service' } }, pricing: { billable: false, pricing_model: 'PMP', category: 'service' } }),
      ...(error !== undefined && { errors: [{ code: error.code, title: error.title, message: error.title, error_data: { details: error.title } }] }),
    };
    const payload = {
      object: 'whatsapp_business_account',
      entry: [{ id: WABA_ID, changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550100100', phone_number_id: send.phoneNumberId }, statuses: [entry] } }] }],
    };
    const raw = Buffer.from(JSON.stringify(payload));
    const signature = `sha256=${createHmac('sha256', o.appSecret).update(raw).digest('hex')}`;
    try {
      await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature, ...SANDBOX_HEADER }, body: raw, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      o.logger?.warn({ err: { message: (err as Error).message } }, 'graph api sandbox: status webhook not delivered');
    }
  }

  function scheduleStatuses(send: GraphSandboxSend): void {
    let at = 0;
    let chain = Promise.resolve();
    for (const s of statuses) {
      at += s.delayMs;
      const timer = setTimeout(() => {
        timers.delete(timer);
        chain = chain.then(() => postStatus(send, s.status));
      }, at);
      timers.add(timer);
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle());
    async function handle(): Promise<void> {
      const answer = (status: number, body: object, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...SANDBOX_HEADER, ...headers });
        res.end(JSON.stringify(body));
      };
      const url = new URL(req.url ?? '/', 'http://sandbox');
      const parts = url.pathname.split('/').filter((p) => p !== '');
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (token === undefined || (o.accessToken !== undefined && token !== o.accessToken)) {
        answer(401, graphError(190, 'Error validating access token: the sandbox does not know this token.', undefined));
        return;
      }
      if (req.method === 'GET' && parts.length === 2) {
        answer(200, { id: parts[1], display_phone_number: '+1 555-010-0100', verified_name: 'Switchboard sandbox (not WhatsApp)', sandbox: true });
        return;
      }
      if (req.method !== 'POST' || parts.length !== 3 || parts[2] !== 'messages' || !/^v\d+\.\d+$/.test(parts[0]!)) {
        answer(400, graphError(100, 'Unsupported request (sandbox Graph API: POST /<version>/<phone-number-id>/messages only).', undefined, 'GraphMethodException'));
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        answer(400, graphError(100, '(#100) Invalid parameter', 'The request body is not JSON.'));
        return;
      }
      const parsed = bodySchema.safeParse(json);
      if (!parsed.success) {
        answer(400, graphError(100, '(#100) Invalid parameter', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')));
        return;
      }
      const b = parsed.data;
      if (b[b.type] === undefined) {
        answer(400, graphError(131008, '(#131008) Required parameter is missing', `Parameter '${b.type}' is required for type ${b.type}.`));
        return;
      }
      await hook?.({ to: b.to, callbackData: b.biz_opaque_callback_data });
      const fault = faults.shift();
      if (fault?.kind === 'error') {
        answer(fault.httpStatus, graphError(fault.code, fault.message, fault.details), fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {});
        return;
      }
      const send: GraphSandboxSend = {
        wamid: `wamid.SANDBOX${randomBytes(12).toString('hex')}`,
        phoneNumberId: parts[1]!,
        to: b.to,
        type: b.type,
        body: b as Record<string, unknown>,
        callbackData: b.biz_opaque_callback_data,
        at: new Date(),
        answered: fault?.kind === 'accept_then_hang' ? 'hang' : fault?.kind === 'accept_then_reset' ? 'reset' : fault?.kind === 'accept_silently' ? 'silent' : 'ok',
      };
      sends.push(send);
      const withStatuses = send.answered !== 'silent' && !((fault?.kind === 'accept_then_hang' || fault?.kind === 'accept_then_reset') && fault.statuses === false);
      if (withStatuses) scheduleStatuses(send);
      if (send.answered === 'hang') return; // never answered; the client's timeout ends it
      if (send.answered === 'reset') {
        req.socket.destroy();
        return;
      }
      answer(200, { messaging_product: 'whatsapp', contacts: [{ input: b.to, wa_id: b.to }], messages: [{ id: send.wamid, ...(b.type === 'template' && { message_status: 'accepted' }) }], sandbox: true });
    }
  });
  await new Promise<void>((resolve) => server.listen(o.port ?? 0, o.host ?? '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return {
    url: `http://${o.host ?? '127.0.0.1'}:${address.port}`,
    sends,
    inject: (...f) => faults.push(...f),
    onRequest: (h) => {
      hook = h;
    },
    postStatus,
    async close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
