/**
 * `switchboard keys rotate --media-link` against a running gateway: links are signed with the new
 * key from then on, and one signed with it is accepted by a gateway that has not re-read its keys
 * yet (an unknown key id makes it reload them once); links signed with the previous key keep
 * working until they expire; a key retired longer ago than the link lifetime is dropped and its
 * links refused; each rotation is a `keys.rotated` audit entry naming the keys.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { createKeyringProvider, parseKeyring } from '../../src/crypto/keyring.js';
import { createMediaLinks, type MediaLinks } from '../../src/media/media-links.js';
import { createFileMediaStore } from '../../src/media/media-store.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { openEncryptingCodec, type EncryptingCodec } from '../../src/store/encrypting-codec.js';
import { capturedIo } from '../support/cli-io.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';

const redis = redisUrl();
const kek = `k1:${randomBytes(32).toString('base64')}`;
const TTL_S = 3600;

describe.skipIf(redis === null)('media link key rotation', () => {
  let fhir: FhirSandbox;
  let gw: TestGateway;
  let dbUrl: string;
  let pool: pg.Pool;
  let codec: EncryptingCodec;
  let links: MediaLinks;
  let mediaKey: string;
  const bytes = randomBytes(1500);

  const rotate = async () => {
    const io = capturedIo({ DATABASE_URL: dbUrl, ENCRYPTION_KEYS: kek, MEDIA_LINK_TTL: '1h' });
    const code = await runCli(['keys', 'rotate', '--media-link'], io);
    expect(code, io.err).toBe(0);
    return io.out;
  };
  /** A link to the medium as a process that has read the key table now would sign it. */
  const freshLink = async () => {
    await codec.refresh();
    return `${gw.url}/media/${mediaKey}?${links.sign(mediaKey)}`;
  };
  const fetchLink = async (url: string) => {
    const r = await fetch(url);
    const body = Buffer.from(await r.arrayBuffer());
    return { status: r.status, ok: r.status === 200 && body.equals(bytes), code: r.status === 200 ? undefined : (JSON.parse(body.toString()) as { error: { code: string } }).error.code };
  };

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    dbUrl = await createTestDatabase();
    // The gateway re-reads its key table only once an hour here: whatever it accepts at once
    // after a rotation, it found by reloading on the unknown key id.
    gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redis, fhirBaseUrl: fhir.baseUrl, encryptionKeys: kek, mediaLinkTtlSeconds: TTL_S, keyRefreshMs: 3_600_000 });
    pool = new pg.Pool({ connectionString: dbUrl });
    codec = await openEncryptingCodec(pool, createKeyringProvider(parseKeyring(kek, 'test'), 'test'), { refreshMs: 3_600_000 });
    links = createMediaLinks({ keys: { current: () => codec.mediaLinkKey(), byId: (id) => codec.findMediaLinkKey(id) }, ttlSeconds: TTL_S });
    // A medium in the gateway's store, as a download would leave it.
    mediaKey = (await createFileMediaStore(path.join(gw.dataDir, 'media'), codec).put(bytes, 'image/jpeg')).key;
  });
  afterAll(async () => {
    codec?.close();
    await pool?.end();
    await gw?.stop();
    await fhir?.close();
  });

  it('signs with the new key at once, keeps the previous key for the link lifetime, then drops it', async () => {
    const first = await freshLink();
    const firstKid = new URL(first).searchParams.get('kid')!;
    expect(await fetchLink(first)).toMatchObject({ ok: true });

    const out = await rotate();
    const secondKid = /new media link key (ml-\S+):/.exec(out)?.[1];
    expect(secondKid).toBeDefined();
    expect(secondKid).not.toBe(firstKid);
    expect(out).toContain(`links signed with ${firstKid} stay valid until they expire`);

    // A link under the new key, fetched from a gateway that has not re-read its keys: accepted.
    const second = await freshLink();
    expect(new URL(second).searchParams.get('kid')).toBe(secondKid);
    expect(await fetchLink(second)).toMatchObject({ ok: true });
    // The link given out before the rotation still works.
    expect(await fetchLink(first)).toMatchObject({ ok: true });

    const rotated = await gw.app.internals.audit!.search({ actions: ['keys.rotated'] });
    expect(rotated).toHaveLength(1);
    expect(rotated[0]!.resources).toEqual([{ type: 'key', id: secondKid }]);
    expect(rotated[0]!.detail).toMatchObject({ purpose: 'media_link', previous: firstKid, dropped: '' });
    expect(rotated[0]!.principal?.kind).toBe('system');

    // Two hours on (the second key made two hours ago: the first retired longer ago than the
    // one-hour lifetime), the next rotation drops the first key.
    await pool.query("UPDATE encryption_keys SET created_at = now() - interval '2 hours' WHERE id = $1", [secondKid]);
    const again = await rotate();
    const thirdKid = /new media link key (ml-\S+):/.exec(again)?.[1];
    expect(again).toContain(`dropped ${firstKid}: retired longer ago than MEDIA_LINK_TTL`);
    expect(again).toContain(`links signed with ${secondKid} stay valid until they expire`);
    const dropped = await gw.app.internals.audit!.search({ actions: ['keys.rotated'] });
    expect(dropped.find((e) => e.resources?.[0]?.id === thirdKid)?.detail).toMatchObject({ purpose: 'media_link', previous: secondKid, dropped: firstKid });

    // The gateway reloads its keys for the third key's first link (the reload on an unknown key
    // is allowed once a second: wait that out after the previous one), and with them learns that
    // the first key is gone.
    await new Promise((r) => setTimeout(r, 1100));
    const third = await freshLink();
    expect(new URL(third).searchParams.get('kid')).toBe(thirdKid);
    expect(await fetchLink(third)).toMatchObject({ ok: true });
    expect(await fetchLink(second)).toMatchObject({ ok: true });
    expect(await fetchLink(first)).toMatchObject({ status: 403, code: 'MEDIA_LINK_INVALID' });
    const refused = await gw.app.internals.audit!.search({ actions: ['auth.failed'], resourceId: 'GET /media/:key' });
    expect(refused.some((e) => e.detail?.['reason'] === 'media_link_unknown_key')).toBe(true);
  });

  it('refuses --media-link with another subcommand', async () => {
    const io = capturedIo({ DATABASE_URL: dbUrl, ENCRYPTION_KEYS: kek });
    expect(await runCli(['keys', 'status', '--media-link'], io)).toBe(2);
    expect(io.err).toContain('--media-link goes with keys rotate');
  });
});
