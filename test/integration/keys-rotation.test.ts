/**
 * `switchboard keys` on a real gateway under live traffic: a data key rotated and every older
 * value (and plaintext rows from before encryption) re-encrypted online, interrupted and resumed,
 * with nothing lost or duplicated; then the key-encryption key rotated and the old one retired.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { capturedIo } from '../support/cli-io.js';
import { createKeyringProvider, parseKeyring } from '../../src/crypto/keyring.js';
import { createFileMediaStore } from '../../src/media/media-store.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { openEncryptingCodec } from '../../src/store/encrypting-codec.js';
import { MessageStore } from '../../src/store/message-store.js';
import type { KeyStatus } from '../../src/store/key-admin.js';
import { startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';
const k1 = `k1:${randomBytes(32).toString('base64')}`;
const k2 = `k2:${randomBytes(32).toString('base64')}`;

const cliIo = (env: Record<string, string>, signal?: AbortSignal) => capturedIo(env, signal ? { signal } : {});

async function status(env: Record<string, string>): Promise<KeyStatus> {
  const io = cliIo(env);
  expect(await runCli(['keys', 'status', '--format', 'json'], io)).toBe(0);
  return JSON.parse(io.out) as KeyStatus;
}

const redis = redisUrl();

describe.skipIf(redis === null)('key rotation and re-encryption under live traffic', () => {
  let fhir: FhirSandbox;
  let gw: TestGateway;
  let dbUrl: string;

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    dbUrl = await createTestDatabase();
    gw = await startGateway({ databaseUrl: dbUrl, redisUrl: redis, fhirBaseUrl: fhir.baseUrl, encryptionKeys: k1 });
  });
  afterAll(async () => {
    await gw?.stop();
    await fhir?.close();
  });

  it('loses nothing, duplicates nothing, and leaves every value under the new key', async () => {
    // DATA_DIR: the command rewrites the media files where the gateway keeps them.
    const env = { DATABASE_URL: dbUrl, ENCRYPTION_KEYS: k1, DATA_DIR: gw.dataDir };
    const sent: string[] = [];
    const send = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const wamid = newWamid();
        expect((await postWebhook(`${gw.url}/webhooks/whatsapp-to-ehr`, textEvent({ wamid, text: `message ${i}` }))).status).toBe(200);
        sent.push(wamid);
      }
    };
    await send(15);
    const before = await status(env);
    const oldKey = before.dataKeys.find((d) => d.active)!.id;

    // A row from before encryption existed: plaintext, NULL key id.
    const pool = new pg.Pool({ connectionString: dbUrl });
    const legacy = (await pool.query<{ id: string }>('SELECT id FROM inbound_events ORDER BY received_at LIMIT 1')).rows[0]!.id;
    await pool.query('UPDATE inbound_events SET raw_payload = $2, raw_key_id = NULL WHERE id = $1', [legacy, Buffer.from('{"legacy":true}')]);

    // A media file written under the old key.
    const mediaDir = path.join(gw.dataDir, 'media');
    const mediaKeyId = async (key: string) => (JSON.parse(await readFile(path.join(mediaDir, key.slice(0, 2), `${key}.json`), 'utf8')) as { keyId: string | null }).keyId;
    const mediaBytes = Buffer.from(`a photo ${randomBytes(8).toString('hex')}`);
    const oldCodec = await openEncryptingCodec(pool, createKeyringProvider(parseKeyring(k1, 'k1'), 'k1'));
    const media = await createFileMediaStore(mediaDir, oldCodec).put(mediaBytes, 'image/jpeg');
    oldCodec.close();
    expect(await mediaKeyId(media.key)).toBe(oldKey);

    // Traffic keeps flowing while the key rotates and values are rewritten.
    const traffic = send(30);
    const rotate = cliIo(env);
    expect(await runCli(['keys', 'rotate'], rotate)).toBe(0);
    const newKey = /new active data key (\S+);/.exec(rotate.out)![1]!;
    expect(newKey).not.toBe(oldKey);

    // Interrupted after its first batch...
    const stop = new AbortController();
    const first = cliIo(env, stop.signal);
    first.stderr = (t: string) => {
      first.err += t;
      stop.abort();
    };
    expect(await runCli(['keys', 'reencrypt', '--batch', '5'], first)).toBe(1);
    expect(first.out).toMatch(/interrupted after \d+ values; \d+ left: run switchboard keys reencrypt again to resume/);
    expect(first.err).toMatch(/reencrypt \w+\.\w+: \d+\/\d+/);
    await traffic;

    // ...and resumed once the traffic has settled (values a gateway wrote before it saw the new key included).
    await waitFor('every message delivered', async () => {
      const states = await Promise.all(sent.map((w) => gw.app.internals.store!.findMessage('whatsapp-to-ehr', w)));
      return states.every((m) => m?.deliveries[0]?.state === 'delivered');
    }, 60_000);
    const resumed = cliIo(env);
    expect(await runCli(['keys', 'reencrypt', '--batch', '7'], resumed)).toBe(0);
    expect(resumed.out).toMatch(new RegExp(`re-encrypted \\d+ values under ${newKey}; 0 left`));
    // The media file too: under the new key, and still read as it was written.
    expect(resumed.err).toContain('reencrypt media files: 1');
    expect(await mediaKeyId(media.key)).toBe(newKey);
    const newCodec = await openEncryptingCodec(pool, createKeyringProvider(parseKeyring(k1, 'k1'), 'k1'));
    try {
      expect((await createFileMediaStore(mediaDir, newCodec).get(media.key))?.bytes.equals(mediaBytes)).toBe(true);
    } finally {
      newCodec.close();
    }

    const after = await status(env);
    expect(after.dataKeys.find((d) => d.active)?.id).toBe(newKey);
    expect(after.rows.length).toBeGreaterThan(0);
    for (const r of after.rows) expect(r.keyId, `${r.table}.${r.column}`).toBe(newKey);

    // Nothing lost, nothing duplicated: one Communication per message in the EHR.
    for (const wamid of sent) {
      const r = await fetch(`${fhir.baseUrl}/Communication?identifier=${encodeURIComponent(`${SYSTEM}|${wamid}`)}`);
      expect(((await r.json()) as { total?: number; entry?: unknown[] }).entry ?? []).toHaveLength(1);
    }
    const store = gw.app.internals.store!;
    expect((await store.loadEvent(legacy))?.raw.toString()).toBe('{"legacy":true}');
    for (const wamid of sent) {
      const m = await store.findMessage('whatsapp-to-ehr', wamid);
      const d = await store.getDelivery(m!.deliveries[0]!.id);
      expect(d?.outcome).toMatchObject({ resource_id: expect.any(String) });
    }
    const audit = (await pool.query<{ action: string }>(`SELECT action FROM audit_events WHERE action LIKE 'keys.%' ORDER BY seq`)).rows.map((r) => r.action);
    expect(audit).toEqual(['keys.rotated', 'keys.reencrypted', 'keys.reencrypted']);

    // KEK rotation: k2 first in the ring re-wraps every data key; then k1 can leave the ring.
    await gw.stop();
    const both = { DATABASE_URL: dbUrl, ENCRYPTION_KEYS: `${k2},${k1}` };
    const kek = cliIo(both);
    expect(await runCli(['keys', 'rotate'], kek)).toBe(0);
    expect(kek.out).toMatch(/data keys re-wrapped under k2/);
    const onlyNew = await status({ DATABASE_URL: dbUrl, ENCRYPTION_KEYS: k2 });
    expect(onlyNew.dataKeys.every((d) => d.kekId === 'k2' && d.kekAvailable)).toBe(true);
    const codec = await openEncryptingCodec(pool, createKeyringProvider(parseKeyring(k2, 'k2 only'), 'k2 only'));
    try {
      const reopened = new MessageStore(pool, codec);
      expect((await reopened.loadEvent(legacy))?.raw.toString()).toBe('{"legacy":true}');
    } finally {
      codec.close();
      await pool.end();
    }
    // Without the KEK that wraps the data keys, the CLI names it.
    const missing = cliIo({ DATABASE_URL: dbUrl, ENCRYPTION_KEYS: k1 });
    expect(await runCli(['keys', 'status'], missing)).toBe(1);
    expect(missing.err).toContain('encryption key "k2" is not available');
  }, 120_000);
});
