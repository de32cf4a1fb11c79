/**
 * The sandbox FHIR server (Medplum router + MemoryRepository over node:http) behaves like a
 * validating FHIR R4 server: conditional create, validation errors as OperationOutcomes,
 * a CapabilityStatement, ETag/Location, Prefer, If-Match, transactions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEMO_PATIENT_IDENTIFIER_SYSTEM,
  DEMO_PATIENT_PHONE,
  startFhirSandbox,
  type FhirSandbox,
} from '../../src/sandbox/fhir-sandbox.js';
import { validateFhirResource } from '../../src/fhir/validate-resource.js';

const SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';
const JSON_HEADERS = { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown> | undefined;
}

let sandbox: FhirSandbox;

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${sandbox.baseUrl}${path}`, {
    method,
    headers: { ...JSON_HEADERS, ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
}

function communication(value: string): Record<string, unknown> {
  return {
    resourceType: 'Communication',
    identifier: [{ system: SYSTEM, value }],
    status: 'completed',
    sent: '2025-03-04T09:15:00Z',
    payload: [{ contentString: 'hello' }],
  };
}

function ifNoneExist(value: string): Record<string, string> {
  return { 'if-none-exist': `identifier=${encodeURIComponent(SYSTEM)}|${encodeURIComponent(value)}` };
}

beforeAll(async () => {
  sandbox = await startFhirSandbox({ port: 0, seed: true });
});

afterAll(async () => {
  await sandbox?.close();
});

describe('fhir sandbox', () => {
  it('listens on 127.0.0.1 with the real port in baseUrl', () => {
    expect(sandbox.port).toBeGreaterThan(0);
    expect(sandbox.baseUrl).toBe(`http://127.0.0.1:${sandbox.port}/fhir/R4`);
  });

  it('answers /metadata with a valid CapabilityStatement (conditionalCreate on Communication)', async () => {
    const res = await call('GET', '/metadata');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    expect(res.body?.resourceType).toBe('CapabilityStatement');
    expect(validateFhirResource(res.body, 'CapabilityStatement')).toEqual({ ok: true });
    const rest = (res.body?.rest as { resource: { type: string; conditionalCreate?: boolean }[] }[])[0];
    expect(rest?.resource.find((r) => r.type === 'Communication')?.conditionalCreate).toBe(true);
  });

  it('conditional create: 201 with Location and ETag, then 200 with the same id', async () => {
    const value = 'wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJC+/=';
    const first = await call('POST', '/Communication', communication(value), ifNoneExist(value));
    expect(first.status).toBe(201);
    const id = first.body?.id as string;
    const versionId = (first.body?.meta as { versionId: string }).versionId;
    expect(first.headers.get('location')).toBe(`${sandbox.baseUrl}/Communication/${id}/_history/${versionId}`);
    expect(first.headers.get('etag')).toBe(`W/"${versionId}"`);

    const second = await call('POST', '/Communication', communication(value), ifNoneExist(value));
    expect(second.status).toBe(200);
    expect(second.body?.id).toBe(id);

    const search = await call('GET', `/Communication?identifier=${encodeURIComponent(`${SYSTEM}|${value}`)}`);
    expect((search.body?.entry as unknown[]).length).toBe(1);
  });

  it('answers 412 when the conditional create matches several resources', async () => {
    const value = 'wamid.DUPLICATED';
    expect((await call('POST', '/Communication', communication(value))).status).toBe(201);
    expect((await call('POST', '/Communication', communication(value))).status).toBe(201);
    const res = await call('POST', '/Communication', communication(value), ifNoneExist(value));
    expect(res.status).toBe(412);
    expect(res.body?.resourceType).toBe('OperationOutcome');
  });

  it('refuses an invalid resource with 400 and an OperationOutcome', async () => {
    const res = await call('POST', '/Communication', { resourceType: 'Communication', payload: [{}], whatsapp: true });
    expect(res.status).toBe(400);
    expect(res.body?.resourceType).toBe('OperationOutcome');
    const expressions = (res.body?.issue as { expression?: string[] }[]).flatMap((i) => i.expression ?? []);
    expect(expressions).toEqual(expect.arrayContaining(['Communication.status', 'Communication.whatsapp']));
  });

  it('refuses a body that is not JSON with 400 and an OperationOutcome', async () => {
    const res = await call('POST', '/Communication', '{"resourceType": "Communication",');
    expect(res.status).toBe(400);
    expect(res.body?.resourceType).toBe('OperationOutcome');
  });

  it('validates transaction entries too', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ request: { method: 'POST', url: 'Communication' }, resource: { resourceType: 'Communication', payload: [{ contentString: 'x' }] } }],
    };
    const res = await call('POST', '', bundle);
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('Bundle.entry[0].resource.status');
  });

  it('replays a transaction with ifNoneExist without duplicates', async () => {
    const value = 'wamid.TRANSACTION';
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:0d8f4e1a-3c2b-4a5d-9e6f-7a8b9c0d1e2f',
          request: { method: 'POST', url: 'Communication', ifNoneExist: `identifier=${SYSTEM}|${value}` },
          resource: communication(value),
        },
      ],
    };
    const first = await call('POST', '', bundle);
    expect(first.status).toBe(200);
    const firstEntry = (first.body?.entry as { response: { status: string } }[])[0];
    expect(firstEntry?.response.status).toBe('201');
    const replay = await call('POST', '', bundle);
    const replayEntry = (replay.body?.entry as { response: { status: string } }[])[0];
    expect(replayEntry?.response.status).toBe('200');
  });

  it('honours Prefer: return=minimal and If-Match', async () => {
    const created = await call('POST', '/Communication', communication('wamid.PREFER'), { prefer: 'return=minimal' });
    expect(created.status).toBe(201);
    expect(created.body).toBeUndefined();
    const location = created.headers.get('location') ?? '';
    const id = /Communication\/([^/]+)\//.exec(location)?.[1] as string;
    expect(id).toBeTruthy();

    const read = await call('GET', `/Communication/${id}`);
    const etag = read.headers.get('etag') as string;
    const updated = await call('PUT', `/Communication/${id}`, { ...read.body, status: 'entered-in-error' }, { 'if-match': etag });
    expect(updated.status).toBe(200);
    const stale = await call('PUT', `/Communication/${id}`, { ...read.body, status: 'completed' }, { 'if-match': etag });
    expect(stale.status).toBe(412);
  });

  it('seeds the demo Patient once, findable by phone, and seeding again is idempotent', async () => {
    const byPhone = await call('GET', `/Patient?telecom=${encodeURIComponent(`phone|${DEMO_PATIENT_PHONE}`)}`);
    expect((byPhone.body?.entry as unknown[]).length).toBe(1);

    // Restart on the same store with seed: the demo Patient is not created twice.
    const again = await startFhirSandbox({ port: 0, seed: true, repo: sandbox.repo });
    try {
      const res = await fetch(`${again.baseUrl}/Patient?identifier=${encodeURIComponent(`${DEMO_PATIENT_IDENTIFIER_SYSTEM}|demo-1`)}`);
      const bundle = (await res.json()) as { entry?: { resource: { name: { text: string }[] } }[] };
      expect(bundle.entry?.length).toBe(1);
      expect(bundle.entry?.[0]?.resource.name[0]?.text).toBe('Jane Demo');
    } finally {
      await again.close();
    }
  });

  it('answers 404 with an OperationOutcome outside the base path', async () => {
    const res = await fetch(`${sandbox.baseUrl.replace('/fhir/R4', '')}/elsewhere`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
  });
});
