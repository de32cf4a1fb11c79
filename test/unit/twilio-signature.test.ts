/**
 * X-Twilio-Signature: every vector of test/fixtures/twilio (signed for Switchboard with another
 * HMAC implementation; the vectors published by others are checked the same way in
 * test/conformance/twilio-signature-corpus.test.ts), then twilio-node's own
 * `validateRequest` as an oracle on random URLs, parameters and tokens, then the source's
 * authenticate() over raw requests (public_base_url, forwarded headers, SHA-256 settings).
 */
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { InboundRequest } from '../../src/connectors/types.js';
import {
  signatureAlgorithmFrom,
  twilioSignature,
  twilioStringToSign,
  validateTwilioSignature,
  type TwilioParams,
} from '../../src/connectors/sources/twilio-whatsapp-signature.js';
import { EMPTY_TWIML, twilioWhatsAppConfigSchema, twilioWhatsAppSource } from '../../src/connectors/sources/twilio-whatsapp.js';
import { checkTwilioVectors, twilioOracle as oracle } from '../support/twilio-signature-vectors.js';

describe('signature vectors written for Switchboard (test/fixtures/twilio)', () => {
  checkTwilioVectors(readFileSync(new URL('../fixtures/twilio/signature_vectors.json', import.meta.url), 'utf8'));
});

// ---------------------------------------------------------------------------------------------
// The oracle on random inputs
// ---------------------------------------------------------------------------------------------

const alphabet = "abcXYZ019 +-_.~!*'()%&=?/:@,;é✓🙏";
function randomText(max: number): string {
  const n = randomInt(0, max + 1);
  let s = '';
  const chars = [...alphabet];
  for (let i = 0; i < n; i++) s += chars[randomInt(0, chars.length)];
  return s;
}
function randomUrl(): string {
  const scheme = randomInt(0, 2) === 0 ? 'https' : 'http';
  const port = ['', ':443', ':80', ':8443', ':1234'][randomInt(0, 5)];
  const cred = randomInt(0, 8) === 0 ? 'user:pass@' : '';
  const pathPart = `/webhooks/${randomText(6).replace(/[?#%\s]/g, 'x')}`;
  const pairs = Array.from({ length: randomInt(0, 4) }, () => `${encodeURIComponent(randomText(4) || 'k')}=${randomInt(0, 2) === 0 ? encodeURIComponent(randomText(6)) : randomText(6).replace(/[#&%\s]/g, 'y')}`);
  return `${scheme}://${cred}hooks.example.com${port}${pathPart}${pairs.length > 0 ? `?${pairs.join('&')}` : ''}`;
}
function randomParams(): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const n = randomInt(0, 8);
  for (let i = 0; i < n; i++) {
    const key = randomText(8) || 'Body';
    out[key] = randomInt(0, 5) === 0 ? Array.from({ length: randomInt(1, 4) }, () => randomText(5)) : randomText(20);
  }
  return out;
}

describe('twilio-node validateRequest as an oracle', () => {
  it('agrees on 2000 random URLs, parameters and tokens, for genuine and forged signatures', () => {
    for (let i = 0; i < 2000; i++) {
      const token = randomBytes(16).toString('hex');
      const url = randomUrl();
      const params = randomParams();
      // Genuine: signed the way twilio-node expects for the exact URL, or for a port variant.
      const signedUrl = randomInt(0, 3) === 0 ? url.replace(/(:\/\/[^/]*?)(:443|:80)(?=\/)/, '$1') : url;
      const genuine = oracle.getExpectedTwilioSignature(token, signedUrl, params);
      expect(twilioSignature(token, signedUrl, params), url).toBe(genuine);
      const cases = [genuine, oracle.getExpectedTwilioSignature(`${token}x`, url, params), randomBytes(20).toString('base64'), ''];
      for (const sig of cases) {
        expect(validateTwilioSignature(token, sig, url, params), `${url} ${JSON.stringify(params)}`).toBe(oracle.validateRequest(token, sig, url, params));
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// authenticate() over raw requests
// ---------------------------------------------------------------------------------------------

const TOKEN = 'twilio-auth-token-for-tests';
const FORM = 'MessageSid=SM11111111111111111111111111111111&AccountSid=AC8f3c2e1d0b9a8f7e6d5c4b3a2f1e0d9c&From=whatsapp%3A%2B15551234567&To=whatsapp%3A%2B14155238886&Body=Hi+there&NumMedia=0';

function paramsOf(form: string): TwilioParams {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(form)) {
    const p = out[k];
    out[k] = p === undefined ? v : Array.isArray(p) ? [...p, v] : [p, v];
  }
  return out;
}

function request(o: { url: string; headers?: Record<string, string>; body?: string }): InboundRequest {
  const q = o.url.indexOf('?');
  return {
    method: 'POST',
    url: o.url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...o.headers },
    query: new URLSearchParams(q === -1 ? '' : o.url.slice(q + 1)),
    rawBody: Buffer.from(o.body ?? FORM),
  };
}

function source(publicBaseUrl?: string) {
  const config = twilioWhatsAppConfigSchema.parse({ kind: 'twilio_whatsapp', auth_token: TOKEN, ...(publicBaseUrl ? { public_base_url: publicBaseUrl } : {}) });
  return twilioWhatsAppSource.create(config, { channelId: 'twilio-to-ehr' });
}

describe('twilio_whatsapp authenticate()', () => {
  const base = 'https://hooks.clinic.example';
  const pathAndQuery = '/webhooks/twilio-to-ehr?clinic=north&lang=de';
  const sig = twilioSignature(TOKEN, base + pathAndQuery, paramsOf(FORM));

  it('accepts the signature over public_base_url + path and query', () => {
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sig } }))).toBeNull();
    // A trailing slash on the base changes nothing; a path prefix is kept.
    expect(source(`${base}/`).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sig } }))).toBeNull();
    const prefixed = twilioSignature(TOKEN, `${base}/sb${pathAndQuery}`, paramsOf(FORM));
    expect(source(`${base}/sb`).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': prefixed } }))).toBeNull();
  });

  it('without public_base_url rebuilds the URL from X-Forwarded-Proto/Host, else Host', () => {
    const forwarded = { 'x-twilio-signature': sig, host: '10.0.0.7:3000', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'hooks.clinic.example' };
    expect(source().authenticate(request({ url: pathAndQuery, headers: forwarded }))).toBeNull();
    const direct = twilioSignature(TOKEN, `http://127.0.0.1:3000${pathAndQuery}`, paramsOf(FORM));
    expect(source().authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': direct, host: '127.0.0.1:3000' } }))).toBeNull();
  });

  it('401 without the header, 403 for a wrong signature, a tampered body, another query or token', () => {
    expect(source(base).authenticate(request({ url: pathAndQuery }))?.status).toBe(401);
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': 'bm9wZQ==' } }))?.status).toBe(403);
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sig }, body: FORM.replace('Hi+there', 'Hi+therE') }))?.status).toBe(403);
    expect(source(base).authenticate(request({ url: '/webhooks/twilio-to-ehr?clinic=south&lang=de', headers: { 'x-twilio-signature': sig } }))?.status).toBe(403);
    expect(source('https://other.example').authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sig } }))?.status).toBe(403);
    const other = twilioSignature('another-token', base + pathAndQuery, paramsOf(FORM));
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': other } }))?.status).toBe(403);
  });

  it('HMAC-SHA256 when X-Twilio-Webhooks-Signature-Settings says so, and only then', () => {
    const sha256 = createHmac('sha256', TOKEN).update(twilioStringToSign(base + pathAndQuery, paramsOf(FORM))).digest('base64');
    const settings = 'key=WK0123456789abcdef0123456789abcdef,algorithm=HMAC_SHA256';
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sha256, 'x-twilio-webhooks-signature-settings': settings } }))).toBeNull();
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sha256 } }))?.status).toBe(403);
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sig, 'x-twilio-webhooks-signature-settings': settings } }))?.status).toBe(403);
    expect(source(base).authenticate(request({ url: pathAndQuery, headers: { 'x-twilio-signature': sha256, 'x-twilio-webhooks-signature-settings': 'algorithm=HMAC_MD5' } }))?.status).toBe(403);
    expect(signatureAlgorithmFrom(undefined)).toBe('sha1');
    expect(signatureAlgorithmFrom('algorithm=HMAC_SHA1')).toBe('sha1');
    expect(signatureAlgorithmFrom('key=abc, algorithm=hmac_sha256')).toBe('sha256');
  });

  it('repeated form parameters count with their unique values, sorted', () => {
    const form = `${FORM}&Tag=b&Tag=a&Tag=b`;
    const s = oracle.getExpectedTwilioSignature(TOKEN, base + pathAndQuery, { ...paramsOf(FORM), Tag: ['b', 'a', 'b'] });
    expect(source(base).authenticate(request({ url: pathAndQuery, body: form, headers: { 'x-twilio-signature': s } }))).toBeNull();
  });

  it('answers with an empty TwiML document and refuses GET webhooks', () => {
    const s = source(base);
    expect(s.acceptedResponse).toEqual({ status: 200, contentType: 'text/xml; charset=utf-8', body: EMPTY_TWIML });
    expect(s.bodyFormat).toBe('form');
    expect(s.handleGet(request({ url: pathAndQuery })).status).toBe(405);
  });
});
