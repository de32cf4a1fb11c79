/**
 * GET /.well-known/jwks.json on a running gateway, as an EHR uses it: the EHR's authorization
 * server (oidc-provider) has Switchboard's client registered by JWKS URL and fetches the key set
 * from the gateway itself. The set holds the public halves only, needs no credential, carries the
 * security headers, and follows a key rotation through channel reloads: the new key published
 * beside the old one, then signing, then the old one withdrawn; a new key that signs before the
 * EHR has fetched the set again is refused.
 */
import { generateKeyPairSync } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { repoRoot, startGateway, waitFor, type TestGateway } from '../support/gateway.js';
import { createTestDatabase, redisUrl } from '../support/services.js';
import { startSmartEhr, type SmartEhr } from '../support/smart-ehr.js';
import { newWamid, postWebhook, textEvent } from '../support/whatsapp-webhook.js';

const redis = redisUrl();
const CLIENT_ID = 'switchboard-gateway-client';
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

type Jwk = Record<string, unknown> & { kid: string };

describe.skipIf(redis === null)('the gateway publishes its SMART keys at /.well-known/jwks.json', () => {
  let fhir: FhirSandbox;
  let ehr: SmartEhr;
  let gw: TestGateway;
  let dir: string;
  let channelFile: string;

  /** The channel file with these keys, newest first (the first signs). */
  const writeChannel = (keys: ('rsa' | 'ec')[]) =>
    writeFile(
      channelFile,
      `id: smart
source:
  kind: whatsapp_cloud
  app_secret: \${WHATSAPP_APP_SECRET}
  verify_token: \${WHATSAPP_VERIFY_TOKEN}
destinations:
  - name: ehr
    kind: fhir_r4
    base_url: \${SMART_FHIR_BASE}
    mapping: ../mappings/whatsapp-to-communication.jsonata
    retry: { attempts: 1, initial_delay_ms: 100, max_delay_ms: 100 }
    auth:
      kind: smart_backend
      client_id: ${CLIENT_ID}
      keys:
${keys.map((k) => (k === 'rsa' ? '        - { kid: sb-rsa-2026, alg: RS384, private_key_file: "${SMART_RSA_KEY}" }' : '        - { kid: sb-ec-2027, alg: ES384, private_key_file: "${SMART_EC_KEY}" }')).join('\n')}
`,
    );

  const jwks = async () => {
    const r = await fetch(`${gw.url}/.well-known/jwks.json`);
    return { r, body: (await r.json()) as { keys: Jwk[] } };
  };

  /** Rewrites the channel file, asks for a reload and waits until the JWKS shows `kids`. */
  async function reloadWith(keys: ('rsa' | 'ec')[], kids: string[]): Promise<Jwk[]> {
    await writeChannel(keys);
    const res = await gw.admin('/admin/channels/reload', { method: 'POST', body: '{}' });
    expect(res.status).toBe(200);
    return waitFor(`JWKS ${kids.join(',')}`, async () => {
      const { body } = await jwks();
      return JSON.stringify(body.keys.map((k) => k.kid)) === JSON.stringify(kids) ? body.keys : undefined;
    });
  }

  /** Sends a WhatsApp message and waits for its delivery's outcome: `delivered`, or the dead letter's error code. */
  async function send(): Promise<string> {
    const wamid = newWamid();
    expect((await postWebhook(`${gw.url}/webhooks/smart`, textEvent({ wamid }))).status).toBe(200);
    return waitFor('an outcome', async () => {
      const r = await gw.admin(`/admin/messages?channel=smart&source_id=${encodeURIComponent(wamid)}`);
      const d = r.ok ? ((await r.json()) as { deliveries: { state: string; lastErrorCode: string | null }[] }).deliveries[0] : undefined;
      if (d?.state === 'dead_lettered') return `dead letter ${d.lastErrorCode}`;
      return d?.state === 'delivered' ? 'delivered' : undefined;
    });
  }

  beforeAll(async () => {
    fhir = await startFhirSandbox({ port: 0, seed: true });
    dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-jwks-'));
    await mkdir(path.join(dir, 'channels'));
    await mkdir(path.join(dir, 'mappings'));
    await copyFile(path.join(repoRoot, 'mappings', 'whatsapp-to-communication.jsonata'), path.join(dir, 'mappings', 'whatsapp-to-communication.jsonata'));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    await writeFile(path.join(dir, 'rsa.pem'), rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    await writeFile(path.join(dir, 'ec.pem'), ec.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    // No client yet: it is registered below by the gateway's JWKS URL, as an EHR's admin would.
    ehr = await startSmartEhr({ sandboxBase: fhir.baseUrl, clientId: CLIENT_ID, jwks: { keys: [] } });
    channelFile = path.join(dir, 'channels', 'smart.yaml');
    await writeChannel(['rsa']);
    gw = await startGateway({
      databaseUrl: await createTestDatabase(),
      redisUrl: redis,
      fhirBaseUrl: fhir.baseUrl,
      channelsDir: path.join(dir, 'channels'),
      env: { SMART_FHIR_BASE: ehr.fhirBase, SMART_RSA_KEY: path.join(dir, 'rsa.pem'), SMART_EC_KEY: path.join(dir, 'ec.pem') },
    });
    ehr.register({ uri: `${gw.url}/.well-known/jwks.json` });
  }, 60_000);

  afterAll(async () => {
    await gw?.stop();
    await ehr?.close();
    await fhir?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the public keys without credentials, with the security headers, and the EHR authenticates Switchboard by them', async () => {
    const { r, body } = await jwks();
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/jwk-set\+json/);
    // An EHR may cache it this long: what "within 5 minutes" in the README's rotation steps rests on.
    expect(r.headers.get('cache-control')).toBe('public, max-age=300');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('x-frame-options')).toBe('DENY');
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    expect(r.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(body.keys).toHaveLength(1);
    const [key] = body.keys;
    expect(key).toMatchObject({ kid: 'sb-rsa-2026', alg: 'RS384', kty: 'RSA', use: 'sig', key_ops: ['verify'] });
    expect(typeof key!['n']).toBe('string');
    for (const member of PRIVATE_MEMBERS) expect(key, member).not.toHaveProperty(member);

    // A wrong or absent credential changes nothing: the route is public.
    const withBadToken = await fetch(`${gw.url}/.well-known/jwks.json`, { headers: { authorization: 'Bearer not-a-token-of-ours' } });
    expect(withBadToken.status).toBe(200);

    expect(await send()).toBe('delivered');
    expect(ehr.assertions().at(-1)).toEqual({ kid: 'sb-rsa-2026', alg: 'RS384' });
  });

  it('follows a rotation through channel reloads: the new key published beside the old, then signing, then the old withdrawn', async () => {
    // 1. The new key second: published, not yet signing.
    const both = await reloadWith(['rsa', 'ec'], ['sb-rsa-2026', 'sb-ec-2027']);
    expect(both.map((k) => [k.kid, k.alg, k.kty, k['crv']])).toEqual([
      ['sb-rsa-2026', 'RS384', 'RSA', undefined],
      ['sb-ec-2027', 'ES384', 'EC', 'P-384'],
    ]);
    for (const k of both) for (const member of PRIVATE_MEMBERS) expect(k, `${k.kid}.${member}`).not.toHaveProperty(member);
    expect(await send()).toBe('delivered');
    expect(ehr.assertions().at(-1)?.kid).toBe('sb-rsa-2026');

    // Signing with it too early: the EHR still holds the set it fetched (fresh for max-age), so it
    // refuses the new key's assertion, and the delivery is a SMART_TOKEN_REFUSED dead letter.
    await reloadWith(['ec', 'rsa'], ['sb-ec-2027', 'sb-rsa-2026']);
    expect(await send()).toBe('dead letter SMART_TOKEN_REFUSED');
    expect(ehr.assertions().at(-1)?.kid).toBe('sb-ec-2027');

    // 2. Once the EHR has fetched the set again (its cache expired, at most max-age later; here
    //    at once), the new key signs and the old one is still published.
    ehr.register({ uri: `${gw.url}/.well-known/jwks.json` });
    expect(await send()).toBe('delivered');
    expect(ehr.assertions().at(-1)).toEqual({ kid: 'sb-ec-2027', alg: 'ES384' });

    // 3. The old key withdrawn: only the new one is published, and deliveries go on.
    const last = await reloadWith(['ec'], ['sb-ec-2027']);
    expect(last).toHaveLength(1);
    ehr.register({ uri: `${gw.url}/.well-known/jwks.json` });
    expect(await send()).toBe('delivered');
  });
});
