/**
 * SMART Backend Services for fhir_r4, against a real authorization server (oidc-provider with a
 * private_key_jwt client) and the sandbox FHIR server behind a gate that verifies every access
 * token: discovery, one token for many deliveries, a refresh on 401, key rotation, a revoked
 * client, and the public keys the gateway publishes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { SwitchboardError, classify } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { fhirR4ConfigSchema, fhirR4Destination } from '../../src/connectors/destinations/fhir-r4.js';
import type { DestinationInstance } from '../../src/connectors/types.js';
import { loadMapping, type CompiledMapping } from '../../src/mapping/jsonata-mapping.js';
import { DEMO_PATIENT_PHONE, startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { createSmartBackendClient } from '../../src/fhir/smart-backend.js';
import { SMART_SCOPE, SMART_V1_SCOPE, startSmartEhr, type SmartEhr } from '../support/smart-ehr.js';

const MAPPING_FILE = fileURLToPath(new URL('../../mappings/whatsapp-to-communication.jsonata', import.meta.url));
const logger = createLogger({ level: 'silent' });
const CLIENT_ID = 'switchboard-test-client';

let sandbox: FhirSandbox;
let mapping: CompiledMapping;
let dir: string;
let ehr: SmartEhr;
const files: Record<'rsaOld' | 'ecNew', string> = { rsaOld: '', ecNew: '' };
let counter = 0;

function message(): CanonicalMessage {
  counter++;
  const id = `wamid.SMART${counter}${Date.now()}=`;
  return canonicalMessageSchema.parse({
    schema_version: 1,
    source: { kind: 'whatsapp_cloud' },
    id,
    dedup_key: id,
    kind: 'text',
    sent_at: '2025-03-04T09:15:00Z',
    received_at: '2025-03-04T09:15:02Z',
    sender: { phone: DEMO_PATIENT_PHONE, platform_id: DEMO_PATIENT_PHONE.slice(1), display_name: 'Jane' },
    conversation_id: DEMO_PATIENT_PHONE.slice(1),
    text: 'a private question for the care team',
  });
}

function destination(keys: { kid: string; alg: 'RS384' | 'ES384'; private_key_file: string }[], extra: Record<string, unknown> = {}, at: SmartEhr = ehr): DestinationInstance {
  const config = fhirR4ConfigSchema.parse({
    kind: 'fhir_r4',
    name: 'ehr',
    mapping: 'whatsapp-to-communication.jsonata',
    base_url: at.fhirBase,
    auth: { kind: 'smart_backend', client_id: CLIENT_ID, keys, ...extra },
  });
  return fhirR4Destination.create(config, { channelId: 'smart', logger, mapping });
}

const deliver = (d: DestinationInstance, m = message()) =>
  d.deliver(m, { deliveryId: `d-${m.id}`, messageId: m.id, attempt: 1, signal: new AbortController().signal, logger, now: new Date(m.received_at) });

const rsaOld = () => ({ kid: 'sb-rsa-2026', alg: 'RS384' as const, private_key_file: files.rsaOld });
const ecNew = () => ({ kid: 'sb-ec-2027', alg: 'ES384' as const, private_key_file: files.ecNew });

beforeAll(async () => {
  sandbox = await startFhirSandbox({ port: 0, seed: true });
  mapping = await loadMapping(MAPPING_FILE);
  dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-smart-'));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  files.rsaOld = path.join(dir, 'rsa.pem');
  files.ecNew = path.join(dir, 'ec.pem');
  await writeFile(files.rsaOld, rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  await writeFile(files.ecNew, ec.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  // The EHR is given the key set Switchboard publishes (what /.well-known/jwks.json serves).
  const published = createSmartBackendClient({ clientId: CLIENT_ID, fhirBaseUrl: 'http://unused', scope: 'x', keys: [{ kid: 'sb-rsa-2026', alg: 'RS384', privateKeyPem: rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() }] }).publicJwks();
  ehr = await startSmartEhr({ sandboxBase: sandbox.baseUrl, clientId: CLIENT_ID, jwks: { keys: published } });
}, 60_000);

afterAll(async () => {
  await ehr?.close();
  await sandbox?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('fhir_r4 with SMART Backend Services', () => {
  it('discovers the token endpoint, signs a client assertion and delivers; one token serves many deliveries', async () => {
    const before = ehr.tokensIssued();
    const d = destination([rsaOld()]);
    const outcomes = await Promise.all([deliver(d), deliver(d), deliver(d)]);
    for (const o of outcomes) expect(o.detail['status']).toBe(201);
    await deliver(d);
    expect(ehr.tokensIssued() - before).toBe(1);
    expect(ehr.assertions().at(-1)).toEqual({ kid: 'sb-rsa-2026', alg: 'RS384' });
    await d.close();
  });

  it('signs each client assertion for the token endpoint: iss = sub = client id, five minutes, a fresh jti', async () => {
    const d = destination([rsaOld()]);
    await deliver(d);
    ehr.rejectNext(); // a second token request
    await deliver(d);
    const [a, b] = ehr.assertionClaims().slice(-2) as [Record<string, unknown>, Record<string, unknown>];
    for (const c of [a, b]) {
      expect(c).toMatchObject({ iss: CLIENT_ID, sub: CLIENT_ID, aud: ehr.tokenUrl });
      expect(Number(c['exp']) - Number(c['iat'])).toBe(300);
      expect(typeof c['jti']).toBe('string');
    }
    expect(a['jti']).not.toBe(b['jti']);
    await d.close();
  });

  it('keeps the access token until shortly before it expires (60 s margin), then fetches a new one', async () => {
    // The EHR's tokens live 300 s. The client's clock starts 250 s in the past, so its first
    // assertion is still valid and moving the clock to now passes the token's refresh point.
    let clock = Date.now() - 250_000;
    const key = { kid: 'sb-rsa-2026', alg: 'RS384' as const, privateKeyPem: await readFile(files.rsaOld, 'utf8') };
    const client = createSmartBackendClient({ clientId: CLIENT_ID, fhirBaseUrl: ehr.fhirBase, scope: SMART_SCOPE, keys: [key], now: () => clock });
    const signal = new AbortController().signal;
    const first = await client.accessToken(signal);
    expect(client.tokenRequests).toBe(1);
    clock += 239_000; // 61 s before expiry: still cached
    expect(await client.accessToken(signal)).toBe(first);
    expect(client.tokenRequests).toBe(1);
    clock = Date.now(); // 250 s on, within the last 60 s (the refresh margin)
    const second = await client.accessToken(signal);
    expect(second).not.toBe(first);
    expect(client.tokenRequests).toBe(2);
  });

  it('takes an explicit token_url without discovery', async () => {
    const d = destination([rsaOld()], { token_url: ehr.tokenUrl, scope: 'system/Communication.c system/Patient.rs' });
    expect((await deliver(d)).detail['status']).toBe(201);
    await d.close();
  });

  it('after a 401 to its token, fetches a new one once and delivers in the same attempt', async () => {
    const d = destination([rsaOld()]);
    await deliver(d);
    const before = ehr.tokensIssued();
    ehr.rejectNext();
    expect((await deliver(d)).detail['status']).toBe(201);
    expect(ehr.tokensIssued() - before).toBe(1);
    await d.close();
  });

  it('rotates keys: the new key signs once the EHR knows it, and both are published', async () => {
    const d = destination([ecNew(), rsaOld()]);
    expect(d.publicJwks?.().map((k) => [k.kid, k.alg, k.kty])).toEqual([
      ['sb-ec-2027', 'ES384', 'EC'],
      ['sb-rsa-2026', 'RS384', 'RSA'],
    ]);
    for (const k of d.publicJwks?.() ?? []) expect(k).not.toHaveProperty('d'); // public halves only
    ehr.register({ keys: [...(d.publicJwks?.() ?? [])] });
    expect((await deliver(d)).detail['status']).toBe(201);
    expect(ehr.assertions().at(-1)).toEqual({ kid: 'sb-ec-2027', alg: 'ES384' });
    await d.close();
  });

  it('asks for SMART v2 scopes by default, and for v1 scopes when the destination says scope_syntax: v1', async () => {
    const v2 = destination([rsaOld()]);
    expect((await deliver(v2)).detail['status']).toBe(201);
    expect(ehr.scopesRequested().at(-1)).toBe(SMART_SCOPE);
    await v2.close();

    // An EHR whose authorization server knows only v1 scopes.
    const v1Ehr = await startSmartEhr({ sandboxBase: sandbox.baseUrl, clientId: CLIENT_ID, jwks: { keys: destination([rsaOld()]).publicJwks?.() ?? [] }, scopeSyntax: 'v1' });
    try {
      const v1 = destination([rsaOld()], { scope_syntax: 'v1' }, v1Ehr);
      expect((await deliver(v1)).detail['status']).toBe(201);
      expect(v1Ehr.scopesRequested().at(-1)).toBe(SMART_V1_SCOPE);
      await v1.close();

      // The v2 default at a v1 EHR: the provider grants none of the scopes it cannot read, and the
      // FHIR server refuses the token (401): the delivery is not made.
      const wrong = destination([rsaOld()], {}, v1Ehr);
      const verdict = classify(await deliver(wrong).catch((e: unknown) => e));
      expect(verdict.code).toBe('FHIR_AUTH');
      expect(v1Ehr.scopesRequested().at(-1)).toBe(SMART_SCOPE);
      await wrong.close();
    } finally {
      await v1Ehr.close();
    }
  });

  it('refuses a scope written in the other syntax than scope_syntax, saying how to write it', () => {
    const problems = (auth: Record<string, unknown>) => {
      const r = fhirR4ConfigSchema.safeParse({ kind: 'fhir_r4', name: 'ehr', mapping: 'm.jsonata', base_url: ehr.fhirBase, auth: { kind: 'smart_backend', client_id: CLIENT_ID, keys: [rsaOld()], ...auth } });
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(problems({ scope: 'system/Communication.write system/Patient.rs' })).toEqual(['auth.scope: "system/Communication.write" is SMART v1 syntax: write system/Communication.cud, or set scope_syntax: v1 for an EHR that speaks v1']);
    expect(problems({ scope_syntax: 'v1', scope: 'system/Communication.c' })).toEqual(['auth.scope: "system/Communication.c" is SMART v2 syntax, but scope_syntax is v1: write system/Communication.write']);
    expect(problems({ scope_syntax: 'v1', scope: 'system/Communication.write system/Patient.read launch' })).toEqual([]);
    expect(problems({ scope: 'system/Communication.cru system/Patient.rs' })).toEqual([]);
  });

  it('a client the EHR revoked is a permanent SMART_TOKEN_REFUSED naming the OAuth error, never the assertion', async () => {
    ehr.revoke();
    const d = destination([rsaOld()]);
    let err: unknown;
    try {
      await deliver(d);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SwitchboardError);
    const verdict = classify(err);
    expect(verdict.code).toBe('SMART_TOKEN_REFUSED');
    expect(verdict.disposition).toBe('permanent');
    expect(verdict.details['oauth_error']).toBe('invalid_client');
    expect(verdict.message).toContain(CLIENT_ID);
    expect(JSON.stringify(verdict)).not.toMatch(/eyJ/); // no JWT in the message or details
    await d.close();
  });

  it('an unreachable token endpoint is retryable SMART_TOKEN_UNAVAILABLE', async () => {
    const d = destination([rsaOld()], { token_url: 'http://127.0.0.1:9/token' });
    const verdict = classify(await deliver(d).catch((e: unknown) => e));
    expect(verdict.code).toBe('SMART_TOKEN_UNAVAILABLE');
    expect(verdict.disposition).toBe('retryable');
    await d.close();
  });

  it('refuses a key that does not fit its algorithm, naming the key', () => {
    expect(() => destination([{ kid: 'wrong', alg: 'ES384', private_key_file: files.rsaOld }])).toThrow(/SMART key "wrong": ES384 needs an EC P-384 key/);
    expect(() => destination([{ kid: 'gone', alg: 'RS384', private_key_file: path.join(dir, 'missing.pem') }])).toThrow(/private_key_file: file not found/);
  });
});
