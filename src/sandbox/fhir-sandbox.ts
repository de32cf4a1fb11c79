/**
 * A sandbox FHIR R4 server for zero-config runs and tests: Medplum's FhirRouter over an
 * in-memory MemoryRepository, served by node:http at `/fhir/R4`.
 *
 * It is a real FHIR implementation (conditional create, identifier/telecom search,
 * transactions with ifNoneExist, If-Match), not a fake. The router itself does not validate,
 * so this wrapper runs Medplum's `validateResource` on every POST and PUT body (a transaction
 * Bundle is validated whole, entries included) and answers 400 with the OperationOutcome,
 * like a validating server. It also builds what the router leaves to the HTTP layer:
 * status from the outcome, Location, ETag, Last-Modified, `Prefer: return=…`.
 *
 * R4 rest-hook Subscriptions are served by fhir-sandbox-subscriptions.ts (the router has none).
 *
 * Limits: transactions are not atomic; conditional references
 * are stored literally; PATCH results are not re-validated. Data lives in memory only.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  badRequest,
  getStatus,
  normalizeOperationOutcome,
  notFound,
  OperationOutcomeError,
  validateResource,
} from '@medplum/core';
import { FhirRouter, MemoryRepository, type FhirRequest, type HttpMethod } from '@medplum/fhir-router';
import type { Bundle, CapabilityStatement, OperationOutcome, Patient, Resource } from '@medplum/fhirtypes';
import type { Logger } from '../core/logger.js';
import { loadFhirDefinitions } from '../fhir/validate-resource.js';
import { createSubscriptionNotifier, type SubscriptionNotifier } from './fhir-sandbox-subscriptions.js';

export const FHIR_SANDBOX_BASE_PATH = '/fhir/R4';
export const DEMO_PATIENT_IDENTIFIER_SYSTEM = 'https://switchboard.example/sid/demo-patient';
export const DEMO_PATIENT_IDENTIFIER_VALUE = 'demo-1';
export const DEMO_PATIENT_PHONE = '+15551234567';

/** Largest request body accepted; larger ones get 413. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const METHODS: ReadonlySet<string> = new Set<HttpMethod>(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

export interface FhirSandboxOptions {
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Create the demo Patient (Jane Demo, +15551234567). Idempotent. */
  seed?: boolean;
  logger?: Logger;
  /** Serve an existing store, e.g. to restart the sandbox without losing its data. */
  repo?: MemoryRepository;
}

export interface FhirSandbox {
  /** e.g. `http://127.0.0.1:41234/fhir/R4` (no trailing slash). */
  baseUrl: string;
  port: number;
  close(): Promise<void>;
  /** The in-memory store, for tests that want to look behind the HTTP API. */
  repo: MemoryRepository;
  /** R4 rest-hook Subscriptions (fhir-sandbox-subscriptions.ts): `idle()` waits for queued notifications. */
  subscriptions: Pick<SubscriptionNotifier, 'idle'>;
}

/** The demo Patient the sandbox seeds; a fresh object each call. */
export function demoPatientResource(): Patient {
  return {
    resourceType: 'Patient',
    identifier: [{ system: DEMO_PATIENT_IDENTIFIER_SYSTEM, value: DEMO_PATIENT_IDENTIFIER_VALUE }],
    active: true,
    name: [{ use: 'official', given: ['Jane'], family: 'Demo', text: 'Jane Demo' }],
    telecom: [{ system: 'phone', value: DEMO_PATIENT_PHONE, use: 'mobile' }],
  };
}

export async function startFhirSandbox(opts: FhirSandboxOptions = {}): Promise<FhirSandbox> {
  loadFhirDefinitions();
  const host = opts.host ?? '127.0.0.1';
  const logger = opts.logger;
  const repo = opts.repo ?? new MemoryRepository();
  const router = new FhirRouter();
  const startedAt = new Date().toISOString();
  let baseUrl = '';

  const dispatch = (req: FhirRequest): ReturnType<FhirRouter['handleRequest']> => router.handleRequest(req, repo);
  const notifier = createSubscriptionNotifier(repo, logger);

  const server = createServer((req, res) => {
    const started = Date.now();
    handle(req, res, { dispatch, baseUrl: () => baseUrl, startedAt, afterWrite: (r) => notifier.afterWrite(r) })
      .catch((err: unknown) => {
        // Last fence: never crash the process on a request.
        logger?.error({ err_name: err instanceof Error ? err.name : typeof err }, 'fhir sandbox: unhandled error');
        if (!res.headersSent) send(res, 500, serverErrorOutcome());
        else res.destroy();
      })
      .finally(() => {
        // Log the route shape only: query strings can carry phone numbers.
        logger?.debug(
          { method: req.method, route: routeShape(req.url), status: res.statusCode, ms: Date.now() - started },
          'fhir sandbox request',
        );
      });
  });
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  baseUrl = `http://${urlHost(host)}:${port}${FHIR_SANDBOX_BASE_PATH}`;

  const close = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeAllConnections();
    });

  try {
    if (opts.seed) await seedDemoData(dispatch);
  } catch (err) {
    await close();
    throw err;
  }
  logger?.info({ port, base_path: FHIR_SANDBOX_BASE_PATH, seeded: Boolean(opts.seed) }, 'fhir sandbox listening');
  return { baseUrl, port, close, repo, subscriptions: notifier };
}

/** Conditional create on the demo identifier, so seeding twice leaves one Patient. */
async function seedDemoData(dispatch: (req: FhirRequest) => ReturnType<FhirRouter['handleRequest']>): Promise<void> {
  const patient = demoPatientResource();
  validateOrThrow(patient);
  const [outcome] = await dispatch({
    method: 'POST',
    url: 'Patient',
    pathname: '',
    body: patient,
    params: {},
    query: {},
    headers: {
      'if-none-exist': `identifier=${encodeURIComponent(DEMO_PATIENT_IDENTIFIER_SYSTEM)}|${encodeURIComponent(DEMO_PATIENT_IDENTIFIER_VALUE)}`,
    },
    config: { transactions: true },
  });
  const status = getStatus(outcome);
  if (status !== 200 && status !== 201) throw new OperationOutcomeError(outcome);
}

interface HandlerContext {
  dispatch: (req: FhirRequest) => ReturnType<FhirRouter['handleRequest']>;
  /** Called with each resource version a request created or updated (Subscriptions). */
  afterWrite: (resource: Resource) => void;
  baseUrl: () => string;
  startedAt: string;
}

async function handle(req: IncomingMessage, res: ServerResponse, ctx: HandlerContext): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://sandbox.invalid');
  const method = (req.method ?? 'GET').toUpperCase();
  if (url.pathname !== FHIR_SANDBOX_BASE_PATH && !url.pathname.startsWith(`${FHIR_SANDBOX_BASE_PATH}/`)) {
    send(res, 404, notFound);
    return;
  }
  const relative = url.pathname.slice(FHIR_SANDBOX_BASE_PATH.length).replace(/^\/+|\/+$/g, '');
  const segments = relative === '' ? [] : relative.split('/');

  if (relative === 'metadata') {
    if (method !== 'GET') {
      send(res, 405, issueOutcome('not-supported', 'metadata answers GET only'), { allow: 'GET' });
      return;
    }
    send(res, 200, capabilityStatement(ctx.baseUrl(), ctx.startedAt));
    return;
  }
  if (!METHODS.has(method)) {
    send(res, 405, issueOutcome('not-supported', `method ${method} is not supported`), { allow: [...METHODS].join(', ') });
    return;
  }

  // ---- body --------------------------------------------------------------------------------
  let body: unknown = undefined;
  if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    const read = await readBody(req);
    if (read === 'too-large') {
      send(res, 413, issueOutcome('too-costly', `request body exceeds ${MAX_BODY_BYTES} bytes`));
      return;
    }
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    const isSearchPost = segments.at(-1) === '_search';
    if (isSearchPost && contentType === 'application/x-www-form-urlencoded') {
      body = Object.fromEntries(groupParams(new URLSearchParams(read.toString('utf8'))));
    } else if (read.length > 0) {
      if (contentType !== '' && !/^application\/(fhir\+json|json|json-patch\+json)$/.test(contentType)) {
        send(res, 415, issueOutcome('not-supported', 'send application/fhir+json'));
        return;
      }
      try {
        body = JSON.parse(read.toString('utf8'));
      } catch {
        send(res, 400, issueOutcome('structure', 'the request body is not valid JSON'));
        return;
      }
    }
  }

  // ---- validation: the router stores whatever it is given ----------------------------------
  const writesResource =
    (method === 'POST' && segments.length <= 1 && !segments[0]?.startsWith('$') && !segments[0]?.startsWith('_')) ||
    method === 'PUT';
  if (writesResource) {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      send(res, 400, badRequest('the request body must be a FHIR resource'));
      return;
    }
    const invalid = validationFailure(body as Resource);
    if (invalid) {
      send(res, 400, invalid);
      return;
    }
  }

  // ---- route -------------------------------------------------------------------------------
  const fhirReq: FhirRequest = {
    method: method as HttpMethod,
    // The router parses url itself; pathname must be empty (it refuses requests that set it).
    url: relative + url.search,
    pathname: '',
    body,
    params: {},
    query: {},
    headers: req.headers,
    config: { transactions: true },
  };
  let outcome: OperationOutcome;
  let resource: Resource | undefined;
  try {
    [outcome, resource] = await ctx.dispatch(fhirReq);
  } catch (err) {
    outcome = normalizeOperationOutcome(err);
  }
  const status = getStatus(outcome);

  // ---- headers from meta -------------------------------------------------------------------
  const headers: Record<string, string> = {};
  const versionId = resource?.meta?.versionId;
  if (resource && resource.resourceType !== 'Bundle' && resource.resourceType !== 'OperationOutcome') {
    if (versionId) headers.etag = `W/"${versionId}"`;
    if (resource.meta?.lastUpdated) headers['last-modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201 && resource.id) {
      const location = `${ctx.baseUrl()}/${resource.resourceType}/${resource.id}`;
      headers.location = versionId ? `${location}/_history/${versionId}` : location;
    }
  }

  if (status >= 400 || !resource) {
    send(res, status, outcome, headers);
    return;
  }
  notifyWrites(method, status, resource, ctx.afterWrite);
  if (method === 'GET' && resource.resourceType === 'Bundle') addPagingLinks(resource, url, ctx.baseUrl());
  switch (preferReturn(req.headers.prefer)) {
    case 'minimal':
      send(res, status, undefined, headers);
      return;
    case 'OperationOutcome':
      send(res, status, outcome, headers);
      return;
    default:
      send(res, status, resource, headers);
  }
}

/** Tells the Subscription notifier about what a successful request wrote (not a conditional create's match). */
function notifyWrites(method: string, status: number, resource: Resource, afterWrite: (r: Resource) => void): void {
  if (resource.resourceType === 'Bundle') {
    if (method !== 'POST' || (resource.type !== 'transaction-response' && resource.type !== 'batch-response')) return;
    for (const entry of resource.entry ?? []) if (entry.resource && entry.response?.status?.startsWith('201')) afterWrite(entry.resource);
    return;
  }
  if (resource.resourceType === 'OperationOutcome') return;
  if (status === 201 || ((method === 'PUT' || method === 'PATCH') && status === 200)) afterWrite(resource);
}

/** Medplum's default page size when a search names no _count. */
const DEFAULT_PAGE_SIZE = 20;

/**
 * Search Bundles from the router carry `total` but no links: add `self` and, when more matches
 * follow, `next` (offset paging, as Medplum's server does), so clients page as with a real server.
 */
function addPagingLinks(bundle: Bundle, url: URL, baseUrl: string): void {
  if (bundle.type !== 'searchset' || bundle.link !== undefined) return;
  const count = Number(url.searchParams.get('_count') ?? DEFAULT_PAGE_SIZE);
  const offset = Number(url.searchParams.get('_offset') ?? 0);
  const self = `${baseUrl}${url.pathname.slice(FHIR_SANDBOX_BASE_PATH.length)}${url.search}`;
  const links: NonNullable<Bundle['link']> = [{ relation: 'self', url: self }];
  const matches = (bundle.entry ?? []).filter((e) => e.search?.mode !== 'include').length;
  if (Number.isInteger(count) && Number.isInteger(offset) && bundle.total !== undefined && offset + matches < bundle.total && matches > 0) {
    const next = new URL(url.toString());
    next.searchParams.set('_count', String(count));
    next.searchParams.set('_offset', String(offset + count));
    links.push({ relation: 'next', url: `${baseUrl}${next.pathname.slice(FHIR_SANDBOX_BASE_PATH.length)}${next.search}` });
  }
  bundle.link = links;
}

function validationFailure(resource: Resource): OperationOutcome | undefined {
  try {
    validateResource(resource);
    return undefined;
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err.outcome;
    return issueOutcome('invalid', 'the resource could not be validated');
  }
}

function validateOrThrow(resource: Resource): void {
  const failure = validationFailure(resource);
  if (failure) throw new OperationOutcomeError(failure);
}

function preferReturn(header: string | string[] | undefined): 'minimal' | 'representation' | 'OperationOutcome' | undefined {
  const prefer = Array.isArray(header) ? header.join(', ') : (header ?? '');
  const match = /(?:^|[,;\s])return=(minimal|representation|OperationOutcome)\b/.exec(prefer);
  return match?.[1] as 'minimal' | 'representation' | 'OperationOutcome' | undefined;
}

async function readBody(req: IncomingMessage): Promise<Buffer | 'too-large'> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) tooLarge = true; // keep draining so the 413 can be written
    else chunks.push(chunk);
  }
  return tooLarge ? 'too-large' : Buffer.concat(chunks);
}

function groupParams(params: URLSearchParams): Map<string, string | string[]> {
  const out = new Map<string, string | string[]>();
  for (const key of new Set(params.keys())) {
    const values = params.getAll(key);
    out.set(key, values.length === 1 ? (values[0] as string) : values);
  }
  return out;
}

function send(res: ServerResponse, status: number, body: Resource | undefined, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    ...(body === undefined ? {} : { 'content-type': FHIR_JSON }),
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function issueOutcome(code: string, text: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: code as 'invalid', details: { text } }] };
}

function serverErrorOutcome(): OperationOutcome {
  return issueOutcome('exception', 'Internal server error');
}

/** `/fhir/R4/Patient?phone=…` -> `Patient`; never the query string or ids. */
function routeShape(rawUrl: string | undefined): string {
  const path = (rawUrl ?? '').split('?')[0] ?? '';
  const relative = path.startsWith(FHIR_SANDBOX_BASE_PATH) ? path.slice(FHIR_SANDBOX_BASE_PATH.length) : path;
  const [first, ...rest] = relative.split('/').filter(Boolean);
  return `${first ?? '(base)'}${rest.length > 0 ? '/…' : ''}`;
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

const SANDBOX_RESOURCE_TYPES = [
  'Communication',
  'CommunicationRequest',
  'Patient',
  'RelatedPerson',
  'Practitioner',
  'PractitionerRole',
  'Organization',
  'CareTeam',
  'DocumentReference',
  'Provenance',
  'Device',
  'Subscription',
] as const;

/** A small, valid CapabilityStatement; the router has none of its own. */
function capabilityStatement(baseUrl: string, date: string): CapabilityStatement {
  const searchParams: Record<string, { name: string; type: 'token' | 'string' | 'reference' | 'date' }[]> = {
    Communication: [
      { name: 'identifier', type: 'token' },
      { name: 'subject', type: 'reference' },
      { name: 'sent', type: 'date' },
    ],
    Patient: [
      { name: 'identifier', type: 'token' },
      { name: 'telecom', type: 'token' },
      { name: 'phone', type: 'token' },
      { name: 'name', type: 'string' },
    ],
  };
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date,
    publisher: 'Switchboard',
    kind: 'instance',
    software: { name: 'Switchboard FHIR sandbox (Medplum fhir-router, in-memory)' },
    implementation: { description: 'In-memory sandbox FHIR R4 server; data is lost on restart.', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        resource: SANDBOX_RESOURCE_TYPES.map((type) => ({
          type,
          interaction: [
            { code: 'read' },
            { code: 'vread' },
            { code: 'update' },
            { code: 'patch' },
            { code: 'delete' },
            { code: 'history-instance' },
            { code: 'create' },
            { code: 'search-type' },
          ],
          versioning: 'versioned',
          readHistory: true,
          updateCreate: false,
          conditionalCreate: true,
          conditionalUpdate: true,
          conditionalDelete: 'single',
          ...(searchParams[type] ? { searchParam: searchParams[type] } : {}),
        })),
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
      },
    ],
  };
}
