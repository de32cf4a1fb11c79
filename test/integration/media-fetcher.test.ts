/**
 * The media fetcher against a hand-written peer on port 0 that imitates the Graph API media
 * endpoints and Twilio's media resource (which redirects to a signed storage URL on a second
 * server), for fault injection: expired URLs, wrong hashes, oversize files, refused types, 5xx,
 * 404 on expired ids, unreachable hosts. The store is a real file store in a temp dir.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalMessageSchema, type CanonicalMessage, type Media } from '../../src/core/canonical-message.js';
import { SwitchboardError, classify } from '../../src/core/errors.js';
import { validateFhirResource, loadFhirDefinitions } from '../../src/fhir/validate-resource.js';
import { downloadMedia, resolveMessageMedia } from '../../src/media/media-fetcher.js';
import { mediaPolicySchema, type MediaPolicy } from '../../src/media/media-policy.js';
import { createFileMediaStore, type MediaStore } from '../../src/media/media-store.js';

const TOKEN = 'EAAG-test-access-token';
const ACCOUNT = 'AC8f3c2e1d0b9a8f7e6d5c4b3a2f1e0d9c';
const TWILIO_TOKEN = 'twilio-auth-token-for-tests';
const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(3000, 7)]);
const pdf = Buffer.from('%PDF-1.4\n% a small test document\n%%EOF\n');

interface Served {
  bytes: Buffer;
  mime: string;
  /** Announced sha256 (base64 by default, as Meta sends it). */
  sha256?: string;
  fileSize?: number;
}

let graph: http.Server;
let storage: http.Server;
let graphUrl: string;
let storageUrl: string;
const media = new Map<string, Served>();
/** Media ids whose first download URL answers 404 (expired). */
const expireFirstUrl = new Set<string>();
const log: string[] = [];
let failNext: number | undefined;

function listen(server: http.Server): Promise<string> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

beforeAll(async () => {
  graph = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    log.push(`graph ${req.method} ${u.pathname}`);
    if (failNext !== undefined) {
      res.writeHead(failNext, { 'retry-after': '7' }).end();
      failNext = undefined;
      return;
    }
    // Graph API: GET /v23.0/<MEDIA_ID> -> {url, mime_type, sha256, file_size, id}
    const lookup = /^\/v\d+\.\d+\/([\w.-]+)$/.exec(u.pathname);
    if (lookup) {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      const m = media.get(lookup[1]!);
      if (!m) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":100}}');
      const generation = log.filter((l) => l === `graph GET ${u.pathname}`).length;
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(
        JSON.stringify({
          messaging_product: 'whatsapp',
          url: `${graphUrl}/whatsapp_business/attachments/?mid=${lookup[1]}&gen=${generation}`,
          mime_type: m.mime,
          sha256: m.sha256 ?? createHash('sha256').update(m.bytes).digest('base64'),
          file_size: m.fileSize ?? m.bytes.length,
          id: lookup[1],
        }),
      );
    }
    // The download URL: same bearer; expires (404) on its first generation when asked to.
    if (u.pathname === '/whatsapp_business/attachments/') {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      const id = u.searchParams.get('mid') ?? '';
      const m = media.get(id);
      if (!m || (expireFirstUrl.has(id) && u.searchParams.get('gen') === '1')) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': m.mime, 'content-length': String(m.bytes.length) });
      return void res.end(m.bytes);
    }
    // Twilio media resource: Basic auth, then a redirect to signed storage on another origin.
    const tw = /^\/2010-04-01\/Accounts\/(AC\w+)\/Messages\/(\w+)\/Media\/(\w+)$/.exec(u.pathname);
    if (tw) {
      const expected = `Basic ${Buffer.from(`${ACCOUNT}:${TWILIO_TOKEN}`).toString('base64')}`;
      if (req.headers.authorization !== expected) return void res.writeHead(401).end();
      if (!media.has(tw[3]!)) return void res.writeHead(404).end();
      res.writeHead(307, { location: `${storageUrl}/signed/${tw[3]}?X-Amz-Signature=abc` });
      return void res.end();
    }
    res.writeHead(404).end();
  });
  storage = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    log.push(`storage ${req.method} ${u.pathname} auth=${req.headers.authorization === undefined ? 'none' : 'present'}`);
    const m = media.get(u.pathname.replace('/signed/', ''));
    if (!m) return void res.writeHead(404).end();
    // No content-length: the size limit must hold while streaming.
    res.writeHead(200, { 'content-type': `${m.mime}; charset=binary` });
    res.end(m.bytes);
  });
  graphUrl = await listen(graph);
  storageUrl = await listen(storage);
});

afterAll(async () => {
  await new Promise((r) => graph.close(r));
  await new Promise((r) => storage.close(r));
});

let dir: string;
let store: MediaStore;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-media-'));
  store = createFileMediaStore(path.join(dir, 'media'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function policy(over: Record<string, unknown> = {}): MediaPolicy {
  return mediaPolicySchema.parse({
    whatsapp: { access_token: TOKEN, graph_base_url: graphUrl },
    twilio: { account_sid: ACCOUNT, auth_token: TWILIO_TOKEN },
    ...over,
  });
}
const deps = () => ({ store, mediaUrl: (key: string) => `https://switchboard.example/media/${key}` });

async function failure(p: Promise<unknown>): Promise<SwitchboardError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SwitchboardError);
  return err as SwitchboardError;
}

const waMedia = (id: string, over: Partial<Media> = {}): Media => ({ kind: 'image', media_id: id, mime_type: 'image/png', ...over });
const twMedia = (id: string): Media => ({ kind: 'document', media_id: id, mime_type: 'application/pdf', url: `${graphUrl}/2010-04-01/Accounts/${ACCOUNT}/Messages/MM22222222222222222222222222222222/Media/${id}` });

describe('WhatsApp Cloud API media ids', () => {
  it('looks up the URL, downloads with the same bearer, verifies sha256, stores, describes an Attachment', async () => {
    media.set('1001', { bytes: png, mime: 'image/png' });
    const a = await downloadMedia(waMedia('1001'), 'whatsapp_cloud', policy(), deps());
    const key = createHash('sha256').update(png).digest('hex');
    expect(a).toEqual({ content_type: 'image/png', size: png.length, hash: createHash('sha1').update(png).digest('base64'), url: `https://switchboard.example/media/${key}` });
    const stored = await store.get(key);
    expect(stored?.bytes.equals(png)).toBe(true);
    expect(stored?.info).toMatchObject({ key, size: png.length, contentType: 'image/png' });
  });

  it('refreshes an expired download URL once (404), and accepts a hex sha256', async () => {
    media.set('1002', { bytes: pdf, mime: 'application/pdf', sha256: createHash('sha256').update(pdf).digest('hex') });
    expireFirstUrl.add('1002');
    const before = log.length;
    const a = await downloadMedia(waMedia('1002', { kind: 'document', mime_type: 'application/pdf' }), 'whatsapp_cloud', policy(), deps());
    expect(a.size).toBe(pdf.length);
    expect(log.slice(before).filter((l) => l.startsWith('graph GET /v23.0/1002'))).toHaveLength(2);
  });

  it('a wrong sha256 is MEDIA_INTEGRITY (retryable), and nothing is stored under a wrong key', async () => {
    media.set('1003', { bytes: Buffer.from('tampered'), mime: 'image/png', sha256: createHash('sha256').update('original').digest('base64') });
    const e = await failure(downloadMedia(waMedia('1003'), 'whatsapp_cloud', policy(), deps()));
    expect(e.code).toBe('MEDIA_INTEGRITY');
    expect(classify(e).disposition).toBe('retryable');
    expect(await store.stat(createHash('sha256').update('tampered').digest('hex'))).toBeNull();
  });

  it('limits: file_size over max_bytes (no download), refused content type, expired id', async () => {
    media.set('1004', { bytes: png, mime: 'image/png', fileSize: 50_000_000 });
    const before = log.length;
    expect((await failure(downloadMedia(waMedia('1004'), 'whatsapp_cloud', policy(), deps()))).code).toBe('MEDIA_TOO_LARGE');
    expect(log.slice(before).some((l) => l.includes('attachments'))).toBe(false);
    media.set('1005', { bytes: Buffer.from('MZ'), mime: 'application/x-msdownload' });
    const refused = await failure(downloadMedia(waMedia('1005', { mime_type: 'application/x-msdownload' }), 'whatsapp_cloud', policy(), deps()));
    expect(refused.code).toBe('MEDIA_TYPE_REFUSED');
    expect(classify(refused).disposition).toBe('permanent');
    const expired = await failure(downloadMedia(waMedia('no-such-id'), 'whatsapp_cloud', policy(), deps()));
    expect(expired.code).toBe('MEDIA_EXPIRED');
    expect(classify(expired).disposition).toBe('permanent');
  });

  it('5xx is retryable with Retry-After; a wrong token is permanent; no credentials is MEDIA_NOT_CONFIGURED', async () => {
    media.set('1006', { bytes: png, mime: 'image/png' });
    failNext = 503;
    const busy = await failure(downloadMedia(waMedia('1006'), 'whatsapp_cloud', policy(), deps()));
    expect(busy).toMatchObject({ code: 'MEDIA_HTTP_RETRYABLE', retryAfterMs: 7000, details: { http_status: 503, step: 'lookup' } });
    const denied = await failure(downloadMedia(waMedia('1006'), 'whatsapp_cloud', policy({ whatsapp: { access_token: 'wrong', graph_base_url: graphUrl } }), deps()));
    expect(denied).toMatchObject({ code: 'MEDIA_HTTP_PERMANENT', details: { http_status: 401 } });
    expect(denied.message).not.toContain('wrong');
    const none = await failure(downloadMedia(waMedia('1006'), 'whatsapp_cloud', mediaPolicySchema.parse({}), deps()));
    expect(none.code).toBe('MEDIA_NOT_CONFIGURED');
  });

  it('an unreachable Graph API is MEDIA_NETWORK (retryable)', async () => {
    const e = await failure(downloadMedia(waMedia('1001'), 'whatsapp_cloud', policy({ whatsapp: { access_token: TOKEN, graph_base_url: 'http://127.0.0.1:1' } }), deps()));
    expect(e.code).toBe('MEDIA_NETWORK');
    expect(classify(e).disposition).toBe('retryable');
  });
});

describe('Twilio MediaUrlN', () => {
  it('Basic auth, redirect to signed storage without the Authorization header, size checked while streaming', async () => {
    media.set('ME33333333333333333333333333333330', { bytes: pdf, mime: 'application/pdf' });
    const before = log.length;
    const a = await downloadMedia(twMedia('ME33333333333333333333333333333330'), 'twilio_whatsapp', policy({ inline_max_bytes: 1024 }), deps());
    expect(a).toEqual({ content_type: 'application/pdf', size: pdf.length, hash: createHash('sha1').update(pdf).digest('base64'), data: pdf.toString('base64') });
    expect(log.slice(before)).toContain('storage GET /signed/ME33333333333333333333333333333330 auth=none');
    const big = await failure(downloadMedia(twMedia('ME33333333333333333333333333333330'), 'twilio_whatsapp', policy({ max_bytes: 10 }), deps()));
    expect(big.code).toBe('MEDIA_TOO_LARGE');
    const noAuth = await failure(downloadMedia(twMedia('ME33333333333333333333333333333330'), 'twilio_whatsapp', policy({ twilio: { account_sid: ACCOUNT, auth_token: 'nope' } }), deps()));
    expect(noAuth).toMatchObject({ code: 'MEDIA_HTTP_PERMANENT', details: { http_status: 401 } });
  });
});

describe('resolveMessageMedia: the pipeline step', () => {
  it('fills every attachment, is idempotent, stores identical bytes once, and the result maps to a valid Attachment', async () => {
    media.set('2001', { bytes: png, mime: 'image/png' });
    const message: CanonicalMessage = canonicalMessageSchema.parse({
      schema_version: 1,
      source: { kind: 'whatsapp_cloud' },
      id: 'wamid.MEDIA1',
      dedup_key: 'wamid.MEDIA1',
      kind: 'image',
      sent_at: '2026-03-01T12:00:00Z',
      received_at: '2026-03-01T12:00:01Z',
      sender: { phone: '+15551234567', platform_id: '15551234567' },
      conversation_id: 'whatsapp:15551234567',
      media: [waMedia('2001'), waMedia('1001')],
    });
    const resolved = await resolveMessageMedia(message, policy(), deps());
    expect(canonicalMessageSchema.safeParse(resolved).success).toBe(true);
    expect(resolved.media.map((m) => m.attachment?.hash)).toEqual([createHash('sha1').update(png).digest('base64'), createHash('sha1').update(png).digest('base64')]);
    const before = log.length;
    expect(await resolveMessageMedia(resolved, policy(), deps())).toEqual(resolved);
    expect(log.length).toBe(before);
    const key = createHash('sha256').update(png).digest('hex');
    expect((await readdir(path.join(dir, 'media', key.slice(0, 2)))).filter((f) => f === key)).toHaveLength(1);
    expect(await resolveMessageMedia(message, policy({ download: false }), deps())).toBe(message);

    loadFhirDefinitions();
    const att = resolved.media[0]!.attachment!;
    const communication = {
      resourceType: 'Communication',
      status: 'completed',
      payload: [{ contentAttachment: { contentType: att.content_type, size: att.size, hash: att.hash, url: att.url, title: '[image]' } }],
    };
    expect(validateFhirResource(communication, 'Communication')).toEqual({ ok: true });
  });
});
