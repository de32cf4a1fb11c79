/**
 * The fhir_r4 destination against the real sandbox FHIR server (Medplum), with a
 * fault-injecting HTTP proxy in front of it for the failures a real EHR produces: 503 with
 * Retry-After, 422 with an OperationOutcome, an HTML 503 from a gateway, a server that never
 * answers, a closed port, and an auth check. The proxy is the only fake here.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { SwitchboardError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { compileMapping, loadMapping, type CompiledMapping } from '../../src/mapping/jsonata-mapping.js';
import type { DeliveryContext, DestinationInstance } from '../../src/connectors/types.js';
import {
  classifyFhirError,
  fhirR4ConfigSchema,
  fhirR4Destination,
  DEFAULT_IDENTIFIER_SYSTEM,
} from '../../src/connectors/destinations/fhir-r4.js';
import { DEMO_PATIENT_PHONE, startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { passAll, startFaultProxy, type FaultProxy, type FaultRule, type ProxyRequest } from '../support/fault-proxy.js';

const MAPPING_FILE = fileURLToPath(new URL('../../mappings/whatsapp-to-communication.jsonata', import.meta.url));
const logger = createLogger({ level: 'silent' });
const SECRET_TEXT = 'my chest hurts since this morning';

let sandbox: FhirSandbox;
let mapping: CompiledMapping;
let demoPatientId: string;
let counter = 0;

// ---- helpers -------------------------------------------------------------------------------

function message(overrides: Partial<Record<keyof CanonicalMessage, unknown>> = {}): CanonicalMessage {
  counter++;
  const id = `wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJC+/${counter}=`;
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
    text: SECRET_TEXT,
    ...overrides,
  });
}

function destination(overrides: Record<string, unknown> = {}, withMapping: CompiledMapping = mapping): DestinationInstance {
  const config = fhirR4ConfigSchema.parse({
    kind: 'fhir_r4',
    name: 'ehr',
    mapping: 'whatsapp-to-communication.jsonata',
    base_url: sandbox.baseUrl,
    ...overrides,
  });
  return fhirR4Destination.create(config, { channelId: 'demo', logger, mapping: withMapping });
}

function ctx(msg: CanonicalMessage, signal: AbortSignal = new AbortController().signal): DeliveryContext {
  return { deliveryId: `d-${msg.id}`, messageId: msg.id, attempt: 1, signal, logger, now: new Date(msg.received_at) };
}

async function failure(promise: Promise<unknown>): Promise<SwitchboardError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchboardError);
    const e = err as SwitchboardError;
    // Never PHI in an error message.
    expect(e.message).not.toContain(SECRET_TEXT);
    expect(e.message).not.toContain('5551234567');
    return e;
  }
  throw new Error('expected a failure');
}

async function communicationsWithIdentifier(value: string): Promise<{ id: string; subject?: { reference: string }; sender?: unknown }[]> {
  const q = encodeURIComponent(`${DEFAULT_IDENTIFIER_SYSTEM}|${value}`);
  const res = await fetch(`${sandbox.baseUrl}/Communication?identifier=${q}`);
  const bundle = (await res.json()) as { entry?: { resource: { id: string; subject?: { reference: string }; sender?: unknown } }[] };
  return (bundle.entry ?? []).map((e) => e.resource);
}

const isCreate = (req: ProxyRequest): boolean => req.method === 'POST' && req.path === '/fhir/R4/Communication';

/** A rule that answers the Communication create with this response and passes everything else. */
function onCreate(status: number, body: string, headers: Record<string, string>): FaultRule {
  return (req) => (isCreate(req) ? { kind: 'respond', status, headers, body } : { kind: 'pass' });
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---- setup ---------------------------------------------------------------------------------

beforeAll(async () => {
  sandbox = await startFhirSandbox({ port: 0, seed: true });
  mapping = await loadMapping(MAPPING_FILE);
  const res = await fetch(`${sandbox.baseUrl}/Patient?telecom=${encodeURIComponent(`phone|${DEMO_PATIENT_PHONE}`)}`);
  const bundle = (await res.json()) as { entry: { resource: { id: string } }[] };
  demoPatientId = bundle.entry[0]?.resource.id as string;
});

afterAll(async () => {
  await sandbox?.close();
});

// ---- tests ---------------------------------------------------------------------------------

describe('fhir_r4 destination against the sandbox', () => {
  it('delivers a Communication linked to the Patient found by phone (201)', async () => {
    const msg = message();
    const outcome = await destination().deliver(msg, ctx(msg));
    expect(outcome.detail).toMatchObject({ status: 201, created: true, patient_match: 'matched', mapping_version: mapping.version });
    expect(outcome.detail.location).toMatch(new RegExp(`/Communication/${String(outcome.detail.resource_id)}/_history/`));
    const [stored] = await communicationsWithIdentifier(msg.id);
    expect(stored?.id).toBe(outcome.detail.resource_id);
    expect(stored?.subject?.reference).toBe(`Patient/${demoPatientId}`);
    expect(stored?.sender).toEqual({ reference: `Patient/${demoPatientId}`, display: 'Jane Demo' });
  });

  it('delivers the same message twice as one Communication (conditional create 200)', async () => {
    const msg = message();
    const dest = destination();
    const first = await dest.deliver(msg, ctx(msg));
    const second = await dest.deliver(msg, ctx(msg));
    expect(first.detail).toMatchObject({ status: 201, created: true });
    expect(second.detail).toMatchObject({ status: 200, created: false, resource_id: first.detail.resource_id });
    expect(await communicationsWithIdentifier(msg.id)).toHaveLength(1);
  });

  it('finds a Patient stored without the leading +', async () => {
    await sandbox.repo.createResource({
      resourceType: 'Patient',
      name: [{ given: ['Bare'], family: 'Digits' }],
      telecom: [{ system: 'phone', value: '15550002222' }],
    });
    const msg = message({ sender: { phone: '+15550002222', platform_id: '15550002222' } });
    const outcome = await destination({ patient_match: { on_unmatched: 'dead_letter' } }).deliver(msg, ctx(msg));
    expect(outcome.detail.patient_match).toBe('matched');
  });

  it('unmatched sender: dead_letter policy fails with PATIENT_UNMATCHED', async () => {
    const msg = message({ sender: { phone: '+15559990000', platform_id: '15559990000', display_name: 'Unknown' } });
    const err = await failure(destination({ patient_match: { on_unmatched: 'dead_letter' } }).deliver(msg, ctx(msg)));
    expect(err.code).toBe('PATIENT_UNMATCHED');
    expect(err.disposition).toBe('permanent');
    expect(await communicationsWithIdentifier(msg.id)).toHaveLength(0);
  });

  it('unmatched sender: unlinked policy delivers with a logical sender and no subject', async () => {
    const msg = message({ sender: { phone: '+15559990001', platform_id: '15559990001', display_name: 'Sam' } });
    const outcome = await destination().deliver(msg, ctx(msg));
    expect(outcome.detail).toMatchObject({ created: true, patient_match: 'unmatched' });
    const [stored] = await communicationsWithIdentifier(msg.id);
    expect(stored?.subject).toBeUndefined();
    expect(stored?.sender).toEqual({ identifier: { system: 'https://switchboard.example/sid/whatsapp-user', value: '15559990001' }, display: 'Sam' });
  });

  it('BSUID-only sender (no phone) is unmatched and delivered unlinked', async () => {
    const msg = message({ sender: { user_id: 'US.13491208655302741918' } });
    const outcome = await destination().deliver(msg, ctx(msg));
    expect(outcome.detail).toMatchObject({ created: true, patient_match: 'unmatched' });
  });

  it('several Patients with the number: PATIENT_AMBIGUOUS by default, unlinked on request', async () => {
    for (const given of ['Twin', 'Other']) {
      await sandbox.repo.createResource({ resourceType: 'Patient', name: [{ given: [given] }], telecom: [{ system: 'phone', value: '+15550001111' }] });
    }
    const msg = message({ sender: { phone: '+15550001111', platform_id: '15550001111' } });
    const err = await failure(destination().deliver(msg, ctx(msg)));
    expect(err.code).toBe('PATIENT_AMBIGUOUS');
    expect(err.details).toMatchObject({ matches: 2 });
    const outcome = await destination({ patient_match: { on_ambiguous: 'unlinked' } }).deliver(msg, ctx(msg));
    expect(outcome.detail).toMatchObject({ created: true, patient_match: 'ambiguous' });
  });

  it('412 when duplicates already exist: FHIR_MULTIPLE_MATCHES (permanent)', async () => {
    const msg = message();
    for (let i = 0; i < 2; i++) {
      await sandbox.repo.createResource({ resourceType: 'Communication', status: 'completed', identifier: [{ system: DEFAULT_IDENTIFIER_SYSTEM, value: msg.id }] });
    }
    const err = await failure(destination().deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_MULTIPLE_MATCHES');
    expect(err.disposition).toBe('permanent');
    expect(err.details).toMatchObject({ http_status: 412, issue_codes: ['multiple-matches'] });
  });

  it('a mapping that returns nothing drops the message without sending', async () => {
    const dropping = compileMapping('drop.jsonata', `kind = 'text' ? undefined : { 'resourceType': 'Communication' }`);
    const msg = message();
    const outcome = await destination({}, dropping).deliver(msg, ctx(msg));
    expect(outcome.detail).toEqual({ dropped: true, mapping_version: dropping.version });
    expect(await communicationsWithIdentifier(msg.id)).toHaveLength(0);
  });

  it('invalid mapping output: MAPPING_OUTPUT_INVALID with PHI-free issues', async () => {
    const bad = compileMapping(
      'bad.jsonata',
      `{ 'resourceType': 'Communication', 'status': 'sent', 'identifier': [{'system': $identifier_system, 'value': id}], 'sent': '2025-03-04T09:15:00', 'payload': [{'contentString': text}] }`,
    );
    const msg = message();
    const err = await failure(destination({}, bad).deliver(msg, ctx(msg)));
    expect(err.code).toBe('MAPPING_OUTPUT_INVALID');
    const issues = err.details.issues as string[];
    expect(issues.join('\n')).toContain('Communication.status');
    expect(issues.join('\n')).toContain('Communication.sent');
    expect(JSON.stringify(err.details)).not.toContain(SECRET_TEXT);

    const noIdentifier = compileMapping('no-id.jsonata', `{ 'resourceType': 'Communication', 'status': 'completed' }`);
    const err2 = await failure(destination({}, noIdentifier).deliver(msg, ctx(msg)));
    expect(err2.code).toBe('MAPPING_OUTPUT_INVALID');
    expect((err2.details.issues as string[])[0]).toMatch(/identifier_system/);
  });

  it('healthcheck passes against the sandbox', async () => {
    await expect(destination().healthcheck(new AbortController().signal)).resolves.toBe('reachable: /metadata answered a CapabilityStatement (no authentication configured)');
  });
});

describe('fhir_r4 destination through a fault-injecting proxy', () => {
  let proxy: FaultProxy;

  beforeAll(async () => {
    proxy = await startFaultProxy(sandbox.baseUrl);
  });
  afterEach(() => {
    proxy.setRule(passAll);
    proxy.seen.length = 0;
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('reuses a Patient match for the same number within cache_ttl_ms, and searches every time when it is 0', async () => {
    const patientSearches = () => proxy.seen.filter((r) => r.method === 'GET' && r.path.endsWith('/Patient')).length;
    const cached = destination({ base_url: proxy.url });
    for (let i = 0; i < 3; i++) {
      const m = message();
      expect((await cached.deliver(m, ctx(m))).detail['patient_match']).toBe('matched');
    }
    const withCache = patientSearches();
    expect(withCache).toBeGreaterThan(0);
    proxy.seen.length = 0;
    const uncached = destination({ base_url: proxy.url, patient_match: { cache_ttl_ms: 0 } });
    for (let i = 0; i < 3; i++) {
      const m = message();
      expect((await uncached.deliver(m, ctx(m))).detail['patient_match']).toBe('matched');
    }
    expect(patientSearches()).toBe(3 * withCache);
    // An unmatched number is never cached: a Patient registered a moment later is found.
    proxy.seen.length = 0;
    const stranger = message({ sender: { phone: '+15550009999', platform_id: '15550009999' }, conversation_id: '15550009999' });
    expect((await cached.deliver(stranger, ctx(stranger))).detail['patient_match']).toBe('unmatched');
    const again = message({ sender: { phone: '+15550009999', platform_id: '15550009999' }, conversation_id: '15550009999' });
    await cached.deliver(again, ctx(again));
    expect(patientSearches()).toBe(2 * withCache);
  });

  it('503 with Retry-After: 2 -> FHIR_HTTP_RETRYABLE retryAfterMs 2000; recovery delivers exactly once', async () => {
    const msg = message();
    const dest = destination({ base_url: proxy.url });
    proxy.setRule(
      onCreate(503, JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient' }] }), {
        'content-type': 'application/fhir+json',
        'retry-after': '2',
      }),
    );
    const err = await failure(dest.deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_HTTP_RETRYABLE');
    expect(err.disposition).toBe('retryable');
    expect(err.retryAfterMs).toBe(2000);
    expect(err.details).toMatchObject({ http_status: 503, issue_codes: ['transient'], interaction: 'conditional-create' });

    proxy.setRule(passAll);
    const outcome = await dest.deliver(msg, ctx(msg));
    expect(outcome.detail).toMatchObject({ created: true, status: 201 });
    const again = await dest.deliver(msg, ctx(msg));
    expect(again.detail).toMatchObject({ created: false, status: 200 });
    expect(await communicationsWithIdentifier(msg.id)).toHaveLength(1);
  });

  it('422 with an OperationOutcome -> FHIR_HTTP_PERMANENT with the outcome in details', async () => {
    const outcomeBody = {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'business-rule', details: { text: 'Communication.subject is required by this EHR' } }],
    };
    proxy.setRule(onCreate(422, JSON.stringify(outcomeBody), { 'content-type': 'application/fhir+json' }));
    const msg = message();
    const err = await failure(destination({ base_url: proxy.url }).deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_HTTP_PERMANENT');
    expect(err.disposition).toBe('permanent');
    expect(err.details).toMatchObject({ http_status: 422, issue_codes: ['business-rule'], operation_outcome: outcomeBody });
  });

  it('an HTML 503 from a gateway is still classified, without crashing', async () => {
    proxy.setRule(onCreate(503, '<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>', { 'content-type': 'text/html' }));
    const msg = message();
    const err = await failure(destination({ base_url: proxy.url }).deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_HTTP_RETRYABLE');
    expect(err.retryAfterMs).toBeUndefined();
    expect(err.details).toMatchObject({ http_status: 503, body_kind: 'html' });
    expect(err.details).not.toHaveProperty('operation_outcome');
  });

  it('409 on the conditional create is a race worth retrying', async () => {
    proxy.setRule(
      onCreate(409, JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'conflict' }] }), {
        'content-type': 'application/fhir+json',
      }),
    );
    const msg = message();
    const err = await failure(destination({ base_url: proxy.url }).deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_HTTP_RETRYABLE');
    expect(err.details).toMatchObject({ http_status: 409, reason: 'conditional create race' });
  });

  it('a server that never answers -> FHIR_TIMEOUT', async () => {
    proxy.setRule(() => ({ kind: 'hang' })); // never answer
    const msg = message();
    const started = Date.now();
    const err = await failure(destination({ base_url: proxy.url, timeout_ms: 300 }).deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_TIMEOUT');
    expect(err.disposition).toBe('retryable');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a delivery aborted by the caller stops at once and is retryable', async () => {
    proxy.setRule(() => ({ kind: 'hang' }));
    const controller = new AbortController();
    const msg = message();
    const pending = destination({ base_url: proxy.url, timeout_ms: 60_000 }).deliver(msg, ctx(msg, controller.signal));
    setTimeout(() => controller.abort(), 50);
    const err = await failure(pending);
    expect(err.code).toBe('FHIR_TIMEOUT');
    expect(err.details).toMatchObject({ aborted: true });
  });

  it('connection refused -> FHIR_NETWORK', async () => {
    const port = await closedPort();
    const msg = message();
    const dest = destination({ base_url: `http://127.0.0.1:${port}/fhir/R4` });
    const err = await failure(dest.deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_NETWORK');
    expect(err.disposition).toBe('retryable');
    expect(err.details).toMatchObject({ network_code: 'ECONNREFUSED', http_status: null });

    const health = await failure(dest.healthcheck(new AbortController().signal));
    expect(health.code).toBe('FHIR_NETWORK');
  });

  it('sends the bearer token on every request; a refused token is FHIR_AUTH', async () => {
    proxy.setRule((req) =>
      req.headers.authorization !== 'Bearer s3cret-token'
        ? {
            kind: 'respond',
            status: 401,
            headers: { 'content-type': 'application/fhir+json', 'www-authenticate': 'Bearer' },
            body: JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] }),
          }
        : { kind: 'pass' },
    );
    const msg = message();
    const outcome = await destination({ base_url: proxy.url, auth: { kind: 'bearer', token: 's3cret-token' } }).deliver(msg, ctx(msg));
    expect(outcome.detail).toMatchObject({ created: true, patient_match: 'matched' });
    expect(proxy.seen.length).toBeGreaterThanOrEqual(2); // patient search(es) + create
    expect(proxy.seen.every((r) => r.authorization === 'Bearer s3cret-token')).toBe(true);

    const refused = message();
    const err = await failure(destination({ base_url: proxy.url, auth: { kind: 'bearer', token: 'wrong' } }).deliver(refused, ctx(refused)));
    expect(err.code).toBe('FHIR_AUTH');
    expect(err.details).toMatchObject({ http_status: 401 });
    expect(err.message).not.toContain('wrong');
  });

  it('sends HTTP Basic credentials', async () => {
    const msg = message();
    await destination({ base_url: proxy.url, auth: { kind: 'basic', username: 'switchboard', password: 'pa:ss' } }).deliver(msg, ctx(msg));
    const expected = `Basic ${Buffer.from('switchboard:pa:ss').toString('base64')}`;
    expect(proxy.seen.length).toBeGreaterThan(0);
    expect(proxy.seen.every((r) => r.authorization === expected)).toBe(true);
  });

  it('a 2xx create without a usable id -> FHIR_RESPONSE_INVALID', async () => {
    proxy.setRule(onCreate(201, JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational' }] }), { 'content-type': 'application/fhir+json' }));
    const msg = message();
    const err = await failure(destination({ base_url: proxy.url }).deliver(msg, ctx(msg)));
    expect(err.code).toBe('FHIR_RESPONSE_INVALID');
    expect(err.details).toMatchObject({ http_status: 201 });
  });
});

describe('classifyFhirError', () => {
  const httpError = (status: number, data: unknown, headers: Record<string, string> = {}): Error =>
    Object.assign(new Error(`HTTP ${status}: POST http://ehr.example/fhir/Communication`), {
      response: { status, data },
      config: { headers: new Headers(headers) },
    });

  it('follows the retry classification table', () => {
    const cases: [number, string, string?][] = [
      [400, 'FHIR_HTTP_PERMANENT'],
      [401, 'FHIR_AUTH'],
      [403, 'FHIR_HTTP_PERMANENT'],
      [404, 'FHIR_HTTP_PERMANENT'],
      [405, 'FHIR_HTTP_PERMANENT'],
      [408, 'FHIR_HTTP_RETRYABLE'],
      [410, 'FHIR_HTTP_PERMANENT'],
      [418, 'FHIR_HTTP_PERMANENT'],
      [422, 'FHIR_HTTP_PERMANENT'],
      [425, 'FHIR_HTTP_RETRYABLE'],
      [429, 'FHIR_HTTP_RETRYABLE'],
      [500, 'FHIR_HTTP_RETRYABLE'],
      [501, 'FHIR_HTTP_PERMANENT'],
      [502, 'FHIR_HTTP_RETRYABLE'],
      [503, 'FHIR_HTTP_RETRYABLE'],
      [504, 'FHIR_HTTP_RETRYABLE'],
    ];
    for (const [status, code] of cases) {
      const e = classifyFhirError(httpError(status, {}), 'conditional-create');
      expect({ status, code: e.code, http_status: e.details.http_status }).toEqual({ status, code, http_status: status });
    }
    expect(classifyFhirError(httpError(412, {}), 'conditional-create').code).toBe('FHIR_MULTIPLE_MATCHES');
    expect(classifyFhirError(httpError(412, {}), 'other').code).toBe('FHIR_HTTP_PERMANENT');
    expect(classifyFhirError(httpError(409, {}), 'conditional-create').disposition).toBe('retryable');
    expect(classifyFhirError(httpError(409, {}), 'other').code).toBe('FHIR_HTTP_PERMANENT');
  });

  it('reads Retry-After as seconds or an HTTP-date', () => {
    expect(classifyFhirError(httpError(429, {}, { 'retry-after': '7' })).retryAfterMs).toBe(7000);
    const at = new Date(Date.now() + 30_000).toUTCString();
    const ms = classifyFhirError(httpError(503, {}, { 'retry-after': at })).retryAfterMs ?? 0;
    expect(ms).toBeGreaterThan(25_000);
    expect(ms).toBeLessThanOrEqual(30_000);
  });

  it('treats a 4xx carrying only transient issue codes as retryable', () => {
    const oo = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'throttled' }] };
    expect(classifyFhirError(httpError(400, oo)).code).toBe('FHIR_HTTP_RETRYABLE');
    expect(classifyFhirError(httpError(403, oo)).code).toBe('FHIR_HTTP_PERMANENT');
  });

  it('classifies network and abort errors', () => {
    const net = (code: string): TypeError => Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error(`connect ${code}`), { code }) });
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN']) {
      expect(classifyFhirError(net(code)).code).toBe('FHIR_NETWORK');
    }
    expect(classifyFhirError(net('UND_ERR_HEADERS_TIMEOUT')).code).toBe('FHIR_TIMEOUT');
    expect(classifyFhirError(new DOMException('The operation was aborted due to timeout', 'TimeoutError')).code).toBe('FHIR_TIMEOUT');
    expect(classifyFhirError(new Error('boom')).code).toBe('INTERNAL');
  });

  it('never copies the request URL into the message', () => {
    const e = classifyFhirError(httpError(400, '<html>bad</html>'), 'patient-search');
    expect(e.message).not.toContain('ehr.example');
    expect(e.details).toMatchObject({ http_status: 400, body_kind: 'html' });
  });
});
