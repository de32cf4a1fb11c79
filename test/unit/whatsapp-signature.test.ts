import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { InboundRequest, SourceConnector, SourceInstance } from '../../src/connectors/types.js';
import { syncResult } from '../support/sync-parse.js';
import { checkSignatureVector, readSignatureVector } from '../support/whatsapp-signature-vector.js';
import {
  WHATSAPP_MAX_BODY_BYTES,
  whatsappCloudConfigSchema,
  whatsappCloudSource,
  whatsappSignature,
} from '../../src/connectors/sources/whatsapp-cloud.js';

const samples = new URL('../../fixtures/whatsapp/', import.meta.url);
const cases = new URL('../fixtures/whatsapp/', import.meta.url);
const vector = readSignatureVector(readFileSync(new URL('signature_vector.json', cases), 'utf8'));

function source(overrides: Partial<z.input<typeof whatsappCloudConfigSchema>> = {}): SourceInstance {
  const config = whatsappCloudConfigSchema.parse({
    kind: 'whatsapp_cloud',
    app_secret: vector.appSecret,
    verify_token: 'let-me-in-2026',
    ...overrides,
  });
  return whatsappCloudSource.create(config, { channelId: 'clinic-a' });
}

function post(rawBody: Buffer, signature?: string): InboundRequest {
  return {
    method: 'POST',
    url: '/webhooks/clinic-a',
    headers: signature === undefined ? {} : { 'x-hub-signature-256': signature },
    query: new URLSearchParams(),
    rawBody,
  };
}

function get(query: string): InboundRequest {
  return { method: 'GET', url: `/webhooks/clinic-a?${query}`, headers: {}, query: new URLSearchParams(query), rawBody: Buffer.alloc(0) };
}

/** Meta's wire form: non-ASCII as lowercase \uXXXX escapes. */
function escapeNonAscii(json: string): string {
  return json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

describe('X-Hub-Signature-256 (POST)', () => {
  const instance = source();
  const raw = Buffer.from(vector.bodyAsSentByMeta_escapedUnicode, 'utf8');

  checkSignatureVector(vector, (body, header) => instance.authenticate(post(body, header))?.status ?? null);

  it('a re-serialised JSON body (JSON.stringify(JSON.parse(raw))) no longer matches', () => {
    const fixture = readFileSync(new URL('sample_reaction.json', samples), 'utf8');
    const wire = Buffer.from(escapeNonAscii(JSON.stringify(JSON.parse(fixture))), 'utf8');
    expect(wire.toString('utf8')).toContain('\\ud83d\\ude4f');
    const signature = whatsappSignature(vector.appSecret, wire);
    expect(instance.authenticate(post(wire, signature))).toBeNull();

    const reserialised = Buffer.from(JSON.stringify(JSON.parse(wire.toString('utf8'))), 'utf8');
    expect(reserialised.equals(wire)).toBe(false);
    expect(instance.authenticate(post(reserialised, signature))?.status).toBe(403);
  });

  it('accepts upper-case hex and surrounding whitespace in the header', () => {
    const upper = `sha256=${vector.expectedHeaderValue.slice('sha256='.length).toUpperCase()}`;
    expect(instance.authenticate(post(raw, upper))).toBeNull();
    expect(instance.authenticate(post(raw, ` ${vector.expectedHeaderValue} `))).toBeNull();
  });

  it('wrong app secret -> 403', () => {
    const other = source({ app_secret: 'SOMEONE_ELSES_SECRET' });
    const response = other.authenticate(post(raw, vector.expectedHeaderValue));
    expect(response?.status).toBe(403);
    expect(response?.body).toContain('does not match');
  });

  it('missing header -> 401', () => {
    expect(instance.authenticate(post(raw))?.status).toBe(401);
    expect(instance.authenticate(post(raw, ''))?.status).toBe(401);
  });

  it('malformed header -> 403', () => {
    const hex = vector.expectedHeaderValue.slice('sha256='.length);
    for (const bad of [
      hex,
      `sha1=${hex}`,
      `sha256=${hex.slice(0, 63)}`,
      `sha256=${hex}00`,
      `sha256=${hex.slice(0, 63)}g`,
      'sha256=',
      `sha256=${hex},sha256=${hex}`,
    ]) {
      const response = instance.authenticate(post(raw, bad));
      expect(response?.status, bad).toBe(403);
      expect(response?.body).toContain('not \\"sha256=\\"');
    }
  });

  it('the legacy SHA-1 header alone is not accepted', () => {
    const sha1 = `sha1=${createHmac('sha1', vector.appSecret).update(raw).digest('hex')}`;
    const request: InboundRequest = { ...post(raw), headers: { 'x-hub-signature': sha1 } };
    expect(instance.authenticate(request)?.status).toBe(401);
  });

  it('a body tampered by one byte -> 403', () => {
    for (const index of [0, Math.floor(raw.length / 2), raw.length - 1]) {
      const tampered = Buffer.from(raw);
      tampered[index] = (tampered[index] ?? 0) ^ 0x01;
      expect(instance.authenticate(post(tampered, vector.expectedHeaderValue))?.status).toBe(403);
    }
    expect(instance.authenticate(post(Buffer.concat([raw, Buffer.from('\n')]), vector.expectedHeaderValue))?.status).toBe(403);
  });

  it('error bodies are short JSON reasons', () => {
    const response = instance.authenticate(post(raw));
    expect(response?.contentType).toBe('application/json');
    expect(JSON.parse(response?.body ?? '')).toEqual({
      error: { code: 'SIGNATURE_MISSING', message: 'The X-Hub-Signature-256 header is missing.' },
    });
  });
});

describe('verification handshake (GET)', () => {
  const instance = source();

  it('matching token -> 200 with the raw challenge as text/plain', () => {
    const response = instance.handleGet(get('hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=let-me-in-2026'));
    expect(response).toEqual({ status: 200, contentType: 'text/plain; charset=utf-8', body: '1158201444' });
  });

  it('the challenge is echoed exactly, after URL decoding only', () => {
    const response = instance.handleGet(get('hub.mode=subscribe&hub.challenge=a%20b%2Bc&hub.verify_token=let-me-in-2026'));
    expect(response.body).toBe('a b+c');
  });

  it('wrong token -> 403, including prefixes and longer tokens', () => {
    for (const token of ['nope', 'let-me-in-202', 'let-me-in-20266', 'LET-ME-IN-2026', '']) {
      const response = instance.handleGet(get(`hub.mode=subscribe&hub.challenge=1&hub.verify_token=${encodeURIComponent(token)}`));
      expect(response.status, token).toBe(403);
      expect(response.body).not.toContain('let-me-in');
    }
  });

  it('missing parameters -> 400 with a plain reason', () => {
    for (const query of ['', 'hub.mode=subscribe&hub.challenge=1', 'hub.mode=subscribe&hub.verify_token=let-me-in-2026', 'hub.challenge=1&hub.verify_token=let-me-in-2026']) {
      const response = instance.handleGet(get(query));
      expect(response.status, query).toBe(400);
      expect(response.body).toContain('required');
    }
  });

  it('a mode other than subscribe, or an empty or huge challenge -> 400', () => {
    expect(instance.handleGet(get('hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=let-me-in-2026')).status).toBe(400);
    expect(instance.handleGet(get('hub.mode=subscribe&hub.challenge=&hub.verify_token=let-me-in-2026')).status).toBe(400);
    expect(instance.handleGet(get(`hub.mode=subscribe&hub.challenge=${'9'.repeat(1025)}&hub.verify_token=let-me-in-2026`)).status).toBe(400);
  });
});

describe('configuration and edge contract', () => {
  it('defaults: path from the channel id, 3 MiB body limit, 200 acknowledgement', () => {
    const instance = source();
    expect(instance.path).toBe('/webhooks/clinic-a');
    expect(instance.maxBodyBytes).toBe(WHATSAPP_MAX_BODY_BYTES);
    expect(WHATSAPP_MAX_BODY_BYTES).toBe(3 * 1024 * 1024);
    expect(instance.acceptedResponse.status).toBe(200);
    expect(source({ path: '/webhooks/wa/clinic-a', max_body_bytes: 1024 })).toMatchObject({ path: '/webhooks/wa/clinic-a', maxBodyBytes: 1024 });
  });

  it('the schema is strict, and every field is described', () => {
    const base = { kind: 'whatsapp_cloud', app_secret: 's', verify_token: 't' };
    expect(whatsappCloudConfigSchema.safeParse(base).success).toBe(true);
    expect(whatsappCloudConfigSchema.safeParse({ ...base, extra: 1 }).success).toBe(false);
    expect(whatsappCloudConfigSchema.safeParse({ ...base, kind: 'twilio_whatsapp' }).success).toBe(false);
    expect(whatsappCloudConfigSchema.safeParse({ ...base, app_secret: '' }).success).toBe(false);
    expect(whatsappCloudConfigSchema.safeParse({ ...base, verify_token: '' }).success).toBe(false);
    expect(whatsappCloudConfigSchema.safeParse({ ...base, max_body_bytes: 1.5 }).success).toBe(false);
    for (const path of ['/hooks/x', '/webhooks/', 'webhooks/x', '/webhooks/x?y=1', '/webhooks/a b']) {
      expect(whatsappCloudConfigSchema.safeParse({ ...base, path }).success, path).toBe(false);
    }
    for (const [name, field] of Object.entries(whatsappCloudConfigSchema.shape)) {
      expect(field.description, name).toBeTruthy();
    }
  });

  it('is a SourceConnector of kind whatsapp_cloud', () => {
    const connector: SourceConnector = whatsappCloudSource;
    expect(connector.kind).toBe('whatsapp_cloud');
    expect(connector.configSchema).toBe(whatsappCloudConfigSchema);
  });

  it('checkEnvelope accepts WhatsApp webhooks, including unknown extra fields', () => {
    const instance = source();
    for (const file of [new URL('sample_text.json', samples), new URL('sample_batch_order_sticker_flow_status_call.json', samples), new URL('status_group_read.json', cases)]) {
      expect(instance.checkEnvelope(JSON.parse(readFileSync(file, 'utf8'))), file.pathname).toBeNull();
    }
    expect(
      instance.checkEnvelope({
        object: 'whatsapp_business_account',
        new_top_level: true,
        entry: [{ id: '1', time: 1, changes: [{ field: 'account_update', value: { anything: 1 } }] }],
      }),
    ).toBeNull();
  });

  it('checkEnvelope refuses anything else with a plain reason', () => {
    const instance = source();
    for (const body of [null, 'text', [], {}, { object: 'page', entry: [] }, { object: 'whatsapp_business_account' }, { object: 'whatsapp_business_account', entry: [{ id: '1' }] }, { object: 'whatsapp_business_account', entry: [{ changes: [{ value: {} }] }] }]) {
      const reason = instance.checkEnvelope(body);
      expect(reason, JSON.stringify(body)).toMatch(/^not a WhatsApp Cloud API webhook: /);
    }
  });

  it('parse is wired to the WhatsApp parser', () => {
    const raw = readFileSync(new URL('sample_text.json', samples));
    const result = syncResult(source().parse(raw, { channelId: 'clinic-a', receivedAt: new Date('2026-03-01T12:00:00Z') }));
    expect(result.messages.map((m) => m.text)).toEqual(['Could I move my Thursday appointment to the afternoon?']);
  });
});
