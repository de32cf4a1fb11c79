/**
 * A stand-in for Twilio's Messages API (no real peer can be run in tests), following its
 * documented formats: `POST /2010-04-01/Accounts/<sid>/Messages.json` (form fields To, From or
 * MessagingServiceSid, Body, MediaUrl, ContentSid, ContentVariables, StatusCallback; HTTP Basic)
 * answering 201 with the Message resource (`sid` SM…, `status` queued, RFC 2822 dates), errors as
 * `{ code, message, more_info, status }`; `GET …/Messages.json?To=&From=` lists messages newest
 * first; status callbacks (MessageSid, MessageStatus, ErrorCode) posted form-encoded with
 * X-Twilio-Signature. Fault injection: error answers (429 20429, 5xx, 400 21211), a send accepted
 * then never answered or its connection dropped, and 63016 failing the message asynchronously.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { twilioSignature } from '../../src/connectors/sources/twilio-whatsapp-signature.js';

export type TwilioFault =
  | { kind: 'error'; httpStatus: number; code: number; message: string; retryAfterSeconds?: number }
  | { kind: 'accept_then_hang' }
  | { kind: 'accept_then_reset' }
  /** Created (201), then failed by WhatsApp: a status callback `undelivered` with ErrorCode 63016. */
  | { kind: 'fail_63016' }
  /** The `sent` status callback is delivered (answered by the gateway) before the send is answered. */
  | { kind: 'status_before_answer' };

export interface TwilioMessage {
  sid: string;
  to: string;
  from: string | null;
  messagingServiceSid: string | null;
  body: string | null;
  mediaUrls: string[];
  contentSid: string | null;
  contentVariables: string | null;
  statusCallback: string | null;
  dateCreated: Date;
}

export interface TwilioStandin {
  url: string;
  readonly messages: readonly TwilioMessage[];
  inject(...faults: TwilioFault[]): void;
  /** Called when a send arrives, before it is stored and answered; awaited (the fault suite kills the workers here). */
  onRequest(hook: (() => void | Promise<void>) | undefined): void;
  close(): Promise<void>;
}

const rfc2822 = (d: Date) => d.toUTCString().replace('GMT', '+0000');

export async function startTwilioStandin(o: { accountSid: string; authToken: string; statuses?: readonly string[]; statusDelayMs?: number; rewriteCallback?: (url: string) => string }): Promise<TwilioStandin> {
  const messages: TwilioMessage[] = [];
  const faults: TwilioFault[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let hook: (() => void | Promise<void>) | undefined;
  const expectedAuth = `Basic ${Buffer.from(`${o.accountSid}:${o.authToken}`).toString('base64')}`;

  const resource = (m: TwilioMessage, status = 'queued') => ({
    sid: m.sid,
    account_sid: o.accountSid,
    to: m.to,
    from: m.from,
    messaging_service_sid: m.messagingServiceSid,
    body: m.body,
    status,
    num_media: String(m.mediaUrls.length),
    num_segments: '1',
    direction: 'outbound-api',
    api_version: '2010-04-01',
    price: null,
    price_unit: null,
    error_code: null,
    error_message: null,
    date_created: rfc2822(m.dateCreated),
    date_updated: rfc2822(m.dateCreated),
    date_sent: null,
    uri: `/2010-04-01/Accounts/${o.accountSid}/Messages/${m.sid}.json`,
  });

  function callback(m: TwilioMessage, status: string, errorCode?: number): Promise<unknown> {
    if (m.statusCallback === null) return Promise.resolve();
    const params: Record<string, string> = { MessageSid: m.sid, SmsSid: m.sid, MessageStatus: status, SmsStatus: status, AccountSid: o.accountSid, To: m.to, From: m.from ?? '', ApiVersion: '2010-04-01', ChannelPrefix: 'whatsapp' };
    if (errorCode !== undefined) params['ErrorCode'] = String(errorCode);
    const signature = twilioSignature(o.authToken, m.statusCallback, params);
    const target = o.rewriteCallback ? o.rewriteCallback(m.statusCallback) : m.statusCallback;
    return fetch(target, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature }, body: new URLSearchParams(params).toString() }).catch(() => undefined);
  }

  function schedule(m: TwilioMessage, fail63016: boolean): void {
    const words = fail63016 ? ['undelivered'] : (o.statuses ?? ['sent', 'delivered', 'read']);
    words.forEach((w, i) => {
      const t = setTimeout(() => {
        timers.delete(t);
        void callback(m, w, w === 'undelivered' ? 63016 : undefined);
      }, (i + 1) * (o.statusDelayMs ?? 50));
      timers.add(t);
    });
  }

  const error = (res: http.ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status }));
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle());
    async function handle(): Promise<void> {
      const url = new URL(req.url ?? '/', 'http://standin');
      if (req.headers.authorization !== expectedAuth) return error(res, 401, 20003, 'Authenticate');
      const base = `/2010-04-01/Accounts/${o.accountSid}`;
      if (req.method === 'GET' && url.pathname === `${base}.json`) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sid: o.accountSid, status: 'active', type: 'Full' }));
        return;
      }
      if (url.pathname !== `${base}/Messages.json`) return error(res, 404, 20404, 'The requested resource was not found');
      if (req.method === 'GET') {
        const to = url.searchParams.get('To');
        const from = url.searchParams.get('From');
        const list = messages.filter((m) => (to === null || m.to === to) && (from === null || m.from === from)).reverse();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ messages: list.slice(0, Number(url.searchParams.get('PageSize') ?? 50)).map((m) => resource(m, 'sent')), page: 0, page_size: 50, next_page_uri: null, uri: url.pathname }));
        return;
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const to = form.get('To') ?? '';
      if (!/^whatsapp:\+[1-9]\d{4,14}$/.test(to)) return error(res, 400, 21211, `The 'To' number ${to} is not a valid phone number.`);
      if (form.get('From') === null && form.get('MessagingServiceSid') === null) return error(res, 400, 21603, "The 'From' phone number is required.");
      if (form.get('Body') === null && form.getAll('MediaUrl').length === 0 && form.get('ContentSid') === null) return error(res, 400, 21619, 'A text message body or media urls must be specified.');
      await hook?.();
      const fault = faults.shift();
      if (fault?.kind === 'error') return error(res, fault.httpStatus, fault.code, fault.message, fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {});
      const m: TwilioMessage = {
        sid: `SM${randomBytes(16).toString('hex')}`,
        to,
        from: form.get('From'),
        messagingServiceSid: form.get('MessagingServiceSid'),
        body: form.get('Body'),
        mediaUrls: form.getAll('MediaUrl'),
        contentSid: form.get('ContentSid'),
        contentVariables: form.get('ContentVariables'),
        statusCallback: form.get('StatusCallback'),
        dateCreated: new Date(),
      };
      messages.push(m);
      if (fault?.kind === 'status_before_answer') await callback(m, 'sent');
      else schedule(m, fault?.kind === 'fail_63016');
      if (fault?.kind === 'accept_then_hang') return;
      if (fault?.kind === 'accept_then_reset') {
        req.socket.destroy();
        return;
      }
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify(resource(m)));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    messages,
    inject: (...f) => faults.push(...f),
    onRequest: (h) => {
      hook = h;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
