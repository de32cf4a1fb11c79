/**
 * Media through the whole gateway: a WhatsApp image is downloaded from the Graph API (a local
 * stand-in on loopback, the only hand-written peer here), stored content-addressed, and the EHR
 * receives a Communication whose attachment has the R4 SHA-1 hash, the size and a URL that
 * Switchboard serves to authenticated callers only. A failed download retries like a delivery.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, mkdir, copyFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook } from '../support/whatsapp-webhook.js';

const redis = redisUrl();
const TOKEN = 'graph-access-token-for-tests';

const LINK_TTL_S = 15;

/** A WhatsApp image message as Meta sends it, for a medium the Graph stand-in serves. */
function imageEvent(wamid: string, mediaId: string, bytes: Buffer) {
  return {
    object: 'whatsapp_business_account',
    entry: [{ id: '1', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' },
      contacts: [{ profile: { name: 'Jane Demo' }, wa_id: '15551234567' }],
      messages: [{ from: '15551234567', id: wamid, timestamp: String(Math.floor(Date.now() / 1000)), type: 'image', image: { caption: 'my rash', mime_type: 'image/jpeg', sha256: createHash('sha256').update(bytes).digest('base64'), id: mediaId } }],
    } }] }],
  };
}

describe.skipIf(redis === null)('media download and serving', () => {
  let fhir: FhirSandbox;
  let proxy: FaultProxy;
  let graph: http.Server;
  let graphUrl = '';
  let gw: TestGateway;
  let failLookups = 0;
  const files = new Map<string, Buffer>();
  const types = new Map<string, string>();

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    proxy = await startFaultProxy(fhir.baseUrl);
    graph = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      const lookup = /^\/v\d+\.\d+\/([\w.-]+)$/.exec(u.pathname);
      if (lookup) {
        if (failLookups > 0) {
          failLookups--;
          return void res.writeHead(503, { 'retry-after': '1' }).end();
        }
        const bytes = files.get(lookup[1]!);
        if (!bytes) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ url: `${graphUrl}/download/${lookup[1]}`, mime_type: types.get(lookup[1]!) ?? 'image/jpeg', sha256: createHash('sha256').update(bytes).digest('base64'), file_size: bytes.length, id: lookup[1] }));
      }
      const dl = /^\/download\/([\w.-]+)$/.exec(u.pathname);
      const bytes = dl ? files.get(dl[1]!) : undefined;
      if (!bytes) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': types.get(dl![1]!) ?? 'image/jpeg', 'content-length': String(bytes.length) });
      res.end(bytes);
    });
    await new Promise<void>((r) => graph.listen(0, '127.0.0.1', () => r()));
    const a = graph.address();
    graphUrl = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;

    const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-media-'));
    await mkdir(path.join(dir, 'channels'));
    await mkdir(path.join(dir, 'mappings'));
    await copyFile(path.join(repoRoot, 'mappings', 'whatsapp-to-communication.jsonata'), path.join(dir, 'mappings', 'whatsapp-to-communication.jsonata'));
    await writeFile(
      path.join(dir, 'channels', 'media.yaml'),
      `id: media
source:
  kind: whatsapp_cloud
  app_secret: \${WHATSAPP_APP_SECRET}
  verify_token: \${WHATSAPP_VERIFY_TOKEN}
media:
  max_bytes: 1048576
  allowed_types: [image/*]
  whatsapp:
    access_token: \${WHATSAPP_ACCESS_TOKEN}
    graph_base_url: \${GRAPH_URL}
destinations:
  - name: ehr
    kind: fhir_r4
    base_url: \${FHIR_BASE_URL}
    mapping: ../mappings/whatsapp-to-communication.jsonata
    retry: { attempts: 5, initial_delay_ms: 200, max_delay_ms: 1500 }
`,
    );
    gw = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redis,
      fhirBaseUrl: proxy.url,
      channelsDir: path.join(dir, 'channels'),
      env: { WHATSAPP_ACCESS_TOKEN: TOKEN, GRAPH_URL: graphUrl },
      // Short enough to watch a link expire in the test.
      mediaLinkTtlSeconds: LINK_TTL_S,
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await new Promise((r) => graph?.close(r));
    await proxy?.close();
    await fhir?.close();
  });

  it('downloads, stores and links the image; the URL serves the bytes to authenticated callers only', async () => {
    const mediaId = `${Date.now()}${randomBytes(3).toString('hex')}`;
    const bytes = randomBytes(4096);
    files.set(mediaId, bytes);
    failLookups = 1; // the first lookup fails: the media step retries like a delivery
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}/webhooks/media`, imageEvent(wamid, mediaId, bytes))).status).toBe(200);
    const d = await waitFor('delivered', async () => {
      const r = await gw.admin(`/admin/messages?channel=media&source_id=${encodeURIComponent(wamid)}`);
      const m = r.ok ? ((await r.json()) as { deliveries: { state: string; attempts: number }[] }) : undefined;
      return m?.deliveries[0]?.state === 'delivered' ? m.deliveries[0] : undefined;
    });
    expect(d.attempts).toBe(2);

    const bundle = (await (await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`https://switchboard.example/sid/whatsapp-message-id|${wamid}`)}`)).json()) as {
      entry: { resource: { payload: { contentString?: string; contentAttachment?: { contentType: string; url: string; size: number; hash: string } }[] } }[];
    };
    const att = bundle.entry[0]!.resource.payload.find((p) => p.contentAttachment)!.contentAttachment!;
    expect(att.contentType).toBe('image/jpeg');
    expect(att.size).toBe(4096);
    expect(att.hash).toBe(createHash('sha1').update(bytes).digest('base64'));
    // A signed link: the EHR fetches it with no credential of ours until it expires.
    expect(att.url).toMatch(new RegExp(`^${gw.url}/media/[0-9a-f]{64}\\?expires=\\d+&kid=ml-[\\w-]+&sig=[\\w-]{43}$`));
    const link = new URL(att.url);
    const mediaKey = link.pathname.split('/').pop()!;
    const expires = Number(link.searchParams.get('expires'));
    expect(expires * 1000).toBeGreaterThan(Date.now());
    expect(expires * 1000).toBeLessThanOrEqual(Date.now() + LINK_TTL_S * 1000);
    const served = await fetch(att.url);
    expect(served.status).toBe(200);
    expect(served.headers.get('content-type')).toBe('image/jpeg');
    expect(served.headers.get('cache-control')).toBe('private, no-store');
    expect(Buffer.from(await served.arrayBuffer()).equals(bytes)).toBe(true);

    // Every fetch is audited, naming the link as the principal and the medium by key.
    const fetched = await gw.app.internals.audit!.search({ actions: ['media.fetched'], resourceId: mediaKey });
    expect(fetched.length).toBe(1);
    expect(fetched[0]!.principal?.kind).toBe('media_link');
    expect(fetched[0]!.outcome).toBe('success');

    // Tampered links are refused with the reason, and audited.
    const tampered = (change: (u: URL) => void): string => {
      const u = new URL(att.url);
      change(u);
      return u.toString();
    };
    const sig = link.searchParams.get('sig')!;
    const refusals = {
      signature: tampered((u) => u.searchParams.set('sig', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1))),
      longerLife: tampered((u) => u.searchParams.set('expires', String(expires + 86_400))),
      otherMedium: tampered((u) => (u.pathname = `/media/${'0'.repeat(64)}`)),
      unknownKey: tampered((u) => u.searchParams.set('kid', 'ml-19700101000000-000000')),
      incomplete: tampered((u) => u.searchParams.delete('sig')),
    };
    for (const [what, url] of Object.entries(refusals)) {
      const r = await fetch(url);
      expect(r.status, what).toBe(403);
      expect(((await r.json()) as { error: { code: string } }).error.code, what).toBe('MEDIA_LINK_INVALID');
    }
    const failures = await gw.app.internals.audit!.search({ actions: ['auth.failed'], resourceId: 'GET /media/:key' });
    expect(failures.filter((f) => String(f.detail?.['reason']).startsWith('media_link_')).length).toBeGreaterThanOrEqual(Object.keys(refusals).length);

    // Without link parameters the route still wants a bearer; MEDIA_TOKEN and the admin token work.
    const plain = `${gw.url}/media/${mediaKey}`;
    expect((await fetch(plain)).status).toBe(401);
    expect((await fetch(plain, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    expect((await fetch(plain, { headers: { authorization: `Bearer ${gw.adminToken}` } })).status).toBe(200);

    // Once expired, the link is refused as expired.
    await new Promise((r) => setTimeout(r, Math.max(0, expires * 1000 - Date.now()) + 200));
    const late = await fetch(att.url);
    expect(late.status).toBe(403);
    const body = (await late.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('MEDIA_LINK_EXPIRED');
    expect(body.error.message).toContain('expired');
  });

  it('a dead letter replayed after its link expired reaches the EHR with a link valid from the replay', async () => {
    const mediaId = `${Date.now()}${randomBytes(3).toString('hex')}`;
    const bytes = randomBytes(2048);
    files.set(mediaId, bytes);
    let refused: { payload: { contentAttachment?: { url: string } }[] } | undefined;
    proxy.setRule((req) => {
      if (req.method !== 'POST' || !req.path.endsWith('/Communication')) return { kind: 'pass' };
      refused = JSON.parse(req.body.toString()) as typeof refused;
      return { kind: 'respond', status: 422, headers: { 'content-type': 'application/fhir+json' }, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","diagnostics":"Patient is inactive"}]}' };
    });
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}/webhooks/media`, imageEvent(wamid, mediaId, bytes))).status).toBe(200);
    const dead = await waitFor('dead-lettered', async () => {
      const r = await gw.admin(`/admin/messages?channel=media&source_id=${encodeURIComponent(wamid)}`);
      const m = r.ok ? ((await r.json()) as { deliveries: { id: string; state: string }[] }) : undefined;
      return m?.deliveries[0]?.state === 'dead_lettered' ? m.deliveries[0] : undefined;
    });
    const first = new URL(refused!.payload.find((p) => p.contentAttachment)!.contentAttachment!.url);
    const firstExpiry = Number(first.searchParams.get('expires'));

    // The EHR is fixed only after the link it was first given has expired.
    await new Promise((r) => setTimeout(r, Math.max(0, firstExpiry * 1000 - Date.now()) + 1200));
    expect((await fetch(first)).status).toBe(403);
    proxy.setRule(() => ({ kind: 'pass' }));
    expect((await gw.admin(`/admin/dead-letters/${dead.id}/replay`, { method: 'POST', body: '{"reason":"EHR fixed"}', headers: { 'content-type': 'application/json' } })).status).toBe(202);
    await waitFor('delivered on replay', async () => {
      const r = await gw.admin(`/admin/messages?channel=media&source_id=${encodeURIComponent(wamid)}`);
      const m = r.ok ? ((await r.json()) as { deliveries: { state: string }[] }) : undefined;
      return m?.deliveries[0]?.state === 'delivered' || undefined;
    });
    const bundle = (await (await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`https://switchboard.example/sid/whatsapp-message-id|${wamid}`)}`)).json()) as {
      entry: { resource: { payload: { contentAttachment?: { url: string } }[] } }[];
    };
    const delivered = new URL(bundle.entry[0]!.resource.payload.find((p) => p.contentAttachment)!.contentAttachment!.url);
    expect(delivered.pathname).toBe(first.pathname);
    expect(Number(delivered.searchParams.get('expires'))).toBeGreaterThan(firstExpiry);
    const served = await fetch(delivered);
    expect(served.status).toBe(200);
    expect(Buffer.from(await served.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('dead-letters media of a refused type with its cause', async () => {
    const mediaId = `${Date.now()}${randomBytes(3).toString('hex')}`;
    files.set(mediaId, randomBytes(64));
    types.set(mediaId, 'application/x-msdownload');
    const wamid = newWamid();
    const event = {
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'messages', value: {
        messaging_product: 'whatsapp',
        metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' },
        contacts: [{ profile: { name: 'Jane Demo' }, wa_id: '15551234567' }],
        messages: [{ from: '15551234567', id: wamid, timestamp: String(Math.floor(Date.now() / 1000)), type: 'document', document: { filename: 'x.exe', mime_type: 'application/x-msdownload', id: mediaId } }],
      } }] }],
    };
    expect((await postWebhook(`${gw.url}/webhooks/media`, event)).status).toBe(200);
    const d = await waitFor('dead-lettered', async () => {
      const r = await gw.admin(`/admin/messages?channel=media&source_id=${encodeURIComponent(wamid)}`);
      const m = r.ok ? ((await r.json()) as { deliveries: { state: string; lastErrorCode: string | null }[] }) : undefined;
      return m?.deliveries[0]?.state === 'dead_lettered' ? m.deliveries[0] : undefined;
    });
    expect(d.lastErrorCode).toMatch(/^MEDIA_/);
  });
});
