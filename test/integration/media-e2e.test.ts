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
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook } from '../support/whatsapp-webhook.js';

const redis = redisUrl();
const TOKEN = 'graph-access-token-for-tests';

describe.skipIf(redis === null)('media download and serving', () => {
  let fhir: FhirSandbox;
  let graph: http.Server;
  let graphUrl = '';
  let gw: TestGateway;
  let failLookups = 0;
  const files = new Map<string, Buffer>();
  const types = new Map<string, string>();

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
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
      fhirBaseUrl: fhir.baseUrl,
      channelsDir: path.join(dir, 'channels'),
      env: { WHATSAPP_ACCESS_TOKEN: TOKEN, GRAPH_URL: graphUrl },
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await new Promise((r) => graph?.close(r));
    await fhir?.close();
  });

  it('downloads, stores and links the image; the URL serves the bytes to authenticated callers only', async () => {
    const mediaId = `${Date.now()}${randomBytes(3).toString('hex')}`;
    const bytes = randomBytes(4096);
    files.set(mediaId, bytes);
    failLookups = 1; // the first lookup fails: the media step retries like a delivery
    const wamid = newWamid();
    const event = {
      object: 'whatsapp_business_account',
      entry: [{ id: '1', changes: [{ field: 'messages', value: {
        messaging_product: 'whatsapp',
        metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' },
        contacts: [{ profile: { name: 'Jane Demo' }, wa_id: '15551234567' }],
        messages: [{ from: '15551234567', id: wamid, timestamp: String(Math.floor(Date.now() / 1000)), type: 'image', image: { caption: 'my rash', mime_type: 'image/jpeg', sha256: createHash('sha256').update(bytes).digest('base64'), id: mediaId } }],
      } }] }],
    };
    expect((await postWebhook(`${gw.url}/webhooks/media`, event)).status).toBe(200);
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
    expect(att.url).toMatch(new RegExp(`^${gw.url}/media/[0-9a-f]{64}$`));

    expect((await fetch(att.url)).status).toBe(401);
    expect((await fetch(att.url, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    const served = await fetch(att.url, { headers: { authorization: `Bearer ${gw.adminToken}` } });
    expect(served.status).toBe(200);
    expect(served.headers.get('content-type')).toBe('image/jpeg');
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
