/** Builds signed WhatsApp webhook requests the way Meta sends them (non-ASCII as \uXXXX escapes). */
import { createHmac, randomBytes } from 'node:crypto';

export const TEST_APP_SECRET = 'test-app-secret-0123456789';
export const TEST_VERIFY_TOKEN = 'test-verify-token';
export const DEMO_WA_ID = '15551234567';

export function newWamid(): string {
  return `wamid.TEST${randomBytes(10).toString('hex').toUpperCase()}`;
}

export function textEvent(opts: { wamid: string; from?: string; text?: string; timestamp?: number }): object {
  const from = opts.from ?? DEMO_WA_ID;
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '102290129340398',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' },
              contacts: [{ profile: { name: 'Jane Demo' }, wa_id: from }],
              messages: [
                { from, id: opts.wamid, timestamp: String(opts.timestamp ?? Math.floor(Date.now() / 1000)), type: 'text', text: { body: opts.text ?? 'Hello from a test ✓ café' } },
              ],
            },
          },
        ],
      },
    ],
  };
}

export function metaSerialise(payload: object): string {
  return JSON.stringify(payload).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function sign(body: string | Buffer, secret = TEST_APP_SECRET): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export async function postWebhook(url: string, payload: object | string, opts: { secret?: string; signature?: string | null } = {}): Promise<Response> {
  const body = typeof payload === 'string' ? payload : metaSerialise(payload);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const signature = opts.signature === undefined ? sign(body, opts.secret) : opts.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  return fetch(url, { method: 'POST', headers, body });
}
