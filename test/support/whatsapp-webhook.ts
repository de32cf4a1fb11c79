/** Builds signed WhatsApp webhook requests the way Meta sends them (non-ASCII as \uXXXX escapes). */
import { randomBytes } from 'node:crypto';
import { whatsappSignature } from '../../src/connectors/sources/whatsapp-cloud.js';
import { DEMO_WA_ID, metaSerialise, whatsappTextEvent } from '../../src/sandbox/whatsapp-sample-events.js';

export const TEST_APP_SECRET = 'test-app-secret-0123456789';
export const TEST_VERIFY_TOKEN = 'test-verify-token';
export { DEMO_WA_ID };

export function newWamid(): string {
  return `wamid.TEST${randomBytes(10).toString('hex').toUpperCase()}`;
}

export function textEvent(opts: { wamid: string; from?: string; text?: string; timestamp?: number }): object {
  return whatsappTextEvent({ ...opts, text: opts.text ?? 'Hello from a test ✓ café' });
}

export { metaSerialise };

export function sign(body: string | Buffer, secret = TEST_APP_SECRET): string {
  return whatsappSignature(secret, Buffer.from(body));
}

export async function postWebhook(url: string, payload: object | string, opts: { secret?: string; signature?: string | null } = {}): Promise<Response> {
  const body = typeof payload === 'string' ? payload : metaSerialise(payload);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const signature = opts.signature === undefined ? sign(body, opts.secret) : opts.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  return fetch(url, { method: 'POST', headers, body });
}
