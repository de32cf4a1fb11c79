/**
 * FHIR R4 destination: one canonical message -> one `Communication`, written with a
 * conditional create (`If-None-Exist: identifier=<system>|<message id>`) so a redelivery never
 * duplicates. Before mapping, the sender is matched to a Patient by phone; Patients are never
 * created. Docs (modelling, conditional create, retry classification): docs/destinations/fhir-r4.md.
 *
 * PHI: error messages and logs carry status codes, issue codes and ids only, never message text,
 * phone numbers or request URLs (search URLs contain the phone number).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Client as FhirKitClient, FhirResource } from 'fhir-kit-client';
import type { CanonicalMessage } from '../../core/canonical-message.js';
import { ConfigError, SwitchboardError, attachRejectedOutput, parseRetryAfter, type ErrorCode } from '../../core/errors.js';
import { mappingOutputInvalid } from '../../mapping/mapping-output-error.js';
import { loadFhirDefinitions, validateFhirResource } from '../../fhir/validate-resource.js';
import { createSmartBackendClient, type SmartBackendClient } from '../../fhir/smart-backend.js';
import { fhirClientAuthHeaders, searchBundleSchema, staticFhirAuthVariants } from '../../fhir/fhir-rest-client.js';
import type {
  DeliveryContext,
  DeliveryOutcome,
  DestinationConnector,
  DestinationCreateContext,
  DestinationInstance,
} from '../types.js';
import { destinationBase, destinationBaseShape } from '../types.js';

export const FHIR_R4_KIND = 'fhir_r4';
export const DEFAULT_IDENTIFIER_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/** An absolute URI (scheme + non-empty rest, no whitespace): `https://…`, `urn:oid:…`. */
const absoluteUri = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/, { message: 'an absolute URI such as https://your-domain/sid/whatsapp-message-id', abort: true })
  .refine((value) => URL.canParse(value), 'an absolute URI such as https://your-domain/sid/whatsapp-message-id');

/** What a smart_backend destination asks for when its channel names no scope. */
export const SMART_DEFAULT_SCOPE = { v2: 'system/Communication.c system/Patient.rs', v1: 'system/Communication.write system/Patient.read' } as const;

/**
 * Scopes written in the other SMART syntax than the one chosen: `system/Communication.write` under
 * v2, or `system/Communication.c` under v1 (an EHR refuses or ignores a scope it cannot parse).
 */
export function smartScopeProblems(scope: string, syntax: 'v1' | 'v2'): string[] {
  const problems: string[] = [];
  for (const s of scope.split(' ').filter(Boolean)) {
    const m = /^(system|user|patient)\/([A-Za-z*]+)\.([^.?]+)(\?.*)?$/.exec(s);
    if (!m) continue; // not a resource scope (e.g. an EHR's own scope): passed on as written
    const [, context, resource, permissions, query] = m as unknown as [string, string, string, string, string | undefined];
    const v1 = permissions === 'read' || permissions === 'write' || permissions === '*';
    const v2 = /^c?r?u?d?s?$/.test(permissions);
    if (syntax === 'v2' && !v2) {
      const hint = permissions === 'read' ? 'rs' : permissions === 'write' ? 'cud' : 'cruds';
      problems.push(`"${s}" is SMART v1 syntax: write ${context}/${resource}.${hint}, or set scope_syntax: v1 for an EHR that speaks v1`);
    } else if (syntax === 'v1' && !v1) {
      const hint = /[cud]/.test(permissions) ? 'write' : 'read';
      problems.push(`"${s}" is SMART v2 syntax, but scope_syntax is v1: write ${context}/${resource}.${hint}${query !== undefined ? ' (v1 has no search parameters)' : ''}`);
    } else if (syntax === 'v1' && query !== undefined) {
      problems.push(`"${s}": SMART v1 scopes have no search parameters`);
    }
  }
  return problems;
}

const authSchema = z
  .discriminatedUnion('kind', [
    ...staticFhirAuthVariants,
    z.strictObject({
      kind: z
        .literal('smart_backend')
        .describe('SMART Backend Services: a client assertion JWT signed with our private key buys a short-lived access token (client_credentials); public keys at /.well-known/jwks.json.'),
      client_id: z.string().min(1).describe('The client id the EHR registered for Switchboard.'),
      scope_syntax: z
        .enum(['v1', 'v2'])
        .default('v2')
        .describe(
          'The SMART scope syntax the EHR speaks: `v2` (SMART App Launch 2: `system/Communication.c`, `.cru`, `.rs`) or `v1` (SMART 1: `system/Communication.write`, `.read`). Chooses the default `scope`, and an explicit `scope` must use it.',
        ),
      scope: z
        .string()
        .regex(/^\S+( \S+)*$/, 'space-separated scopes, e.g. "system/Communication.c system/Patient.rs"')
        .optional()
        .describe(`System scopes requested. Default: create Communication, read and search Patient: \`${SMART_DEFAULT_SCOPE.v2}\` (v2) or \`${SMART_DEFAULT_SCOPE.v1}\` (v1).`),
      token_url: z.url().optional().describe('The token endpoint. Default: discovered from <base_url>/.well-known/smart-configuration.'),
      keys: z
        .array(
          z.strictObject({
            kid: z.string().min(1).describe('Key id, sent in the assertion header and published in the JWKS.'),
            alg: z.enum(['RS384', 'ES384']).describe('RS384 (RSA, 2048 bits or more) or ES384 (EC P-384).'),
            private_key_file: z.string().min(1).describe('PEM private key file (e.g. ${EHR_SMART_KEY_FILE}), never the key itself.'),
          }),
        )
        .min(1)
        .describe('Newest first: the first key signs, all are published, so a new key can be registered before it is used.'),
    }).superRefine((auth, ctx) => {
      for (const problem of smartScopeProblems(auth.scope ?? '', auth.scope_syntax)) ctx.addIssue({ code: 'custom', path: ['scope'], message: problem });
    }),
  ])
  .default({ kind: 'none' })
  .describe('How requests authenticate to the FHIR server. Default: none.');

const unmatchedPolicy = z.enum(['unlinked', 'dead_letter']);

const patientMatchSchema = z
  .strictObject({
    by: z
      .literal('phone')
      .default('phone')
      .describe('What identifies the sender: `phone` searches Patient.telecom for the sender\'s E.164 number.'),
    on_unmatched: unmatchedPolicy
      .default('unlinked')
      .describe('No Patient matched (or the sender has no phone number): `unlinked` delivers without subject, with a logical sender; `dead_letter` fails with PATIENT_UNMATCHED.'),
    on_ambiguous: unmatchedPolicy
      .default('dead_letter')
      .describe('Several Patients matched: `dead_letter` fails with PATIENT_AMBIGUOUS; `unlinked` delivers without subject.'),
    cache_ttl_ms: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(60_000)
      .describe(
        'How long a successful match (exactly one Patient) is reused for the same number, saving the searches on every message of a conversation. Only matches are cached: an unmatched or ambiguous number is searched again every time. 0 turns the cache off.',
      ),
  })
  .default({ by: 'phone', on_unmatched: 'unlinked', on_ambiguous: 'dead_letter', cache_ttl_ms: 60_000 })
  .describe('How the sender is linked to a Patient. Patients are never created.');

export const fhirR4ConfigSchema = z
  .strictObject({
    kind: z.literal(FHIR_R4_KIND).describe('Destination kind: a FHIR R4 server (Communication resources).'),
    ...destinationBaseShape,
    base_url: z
      .url({ protocol: /^https?$/, message: 'an http(s) URL such as https://ehr.example.org/fhir/R4' })
      .describe('FHIR base URL, e.g. https://ehr.example.org/fhir/R4 (no trailing resource type).'),
    identifier_system: absoluteUri
      .default(DEFAULT_IDENTIFIER_SYSTEM)
      .describe('Communication.identifier.system for the message id: the idempotency key of the conditional create. An absolute URI you own, the same in every environment.'),
    auth: authSchema,
    timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(300_000)
      .default(15_000)
      .describe('Timeout of each HTTP request (patient search, create, metadata), in milliseconds.'),
    patient_match: patientMatchSchema,
  })
  .describe('Writes each message as a FHIR R4 Communication with a conditional create on its message identifier.');

export type FhirR4Config = z.infer<typeof fhirR4ConfigSchema>;

// ---------------------------------------------------------------------------------------------
// Edge schemas: what we accept from the server
// ---------------------------------------------------------------------------------------------

const operationOutcomeSchema = z.looseObject({
  resourceType: z.literal('OperationOutcome'),
  issue: z
    .array(
      z.looseObject({
        severity: z.string(),
        code: z.string(),
      }),
    )
    .min(1),
});
export type OperationOutcomeBody = z.infer<typeof operationOutcomeSchema>;

const humanNameSchema = z.looseObject({
  use: z.string().optional(),
  text: z.string().optional(),
  given: z.array(z.string()).optional(),
  family: z.string().optional(),
});

const patientSchema = z.looseObject({
  resourceType: z.literal('Patient'),
  id: z.string().min(1),
  active: z.boolean().optional(),
  name: z.array(humanNameSchema).optional(),
});

const createdCommunicationSchema = z.looseObject({
  resourceType: z.literal('Communication'),
  id: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/),
});

const capabilityStatementSchema = z.looseObject({ resourceType: z.literal('CapabilityStatement') });

/** The shape of fhir-kit-client's non-2xx error (`Error` + `.response` + `.config.headers`). */
const httpErrorSchema = z.object({
  response: z.object({ status: z.number().int(), data: z.unknown() }),
  config: z.object({ headers: z.unknown().optional() }).optional(),
});

// ---------------------------------------------------------------------------------------------
// Transport: a small typed adapter over fhir-kit-client (ESM only, loosely typed results)
// ---------------------------------------------------------------------------------------------

export interface FhirHttpResponse {
  status: number;
  headers: Headers;
  /** The parsed JSON body (`{}` for an empty one). Validate before use. */
  body: unknown;
}

export interface FhirTransport {
  search(resourceType: string, params: Record<string, string>, signal: AbortSignal): Promise<FhirHttpResponse>;
  create(resourceType: string, resource: fhir4.Resource, headers: Record<string, string>, signal: AbortSignal): Promise<FhirHttpResponse>;
  capabilities(signal: AbortSignal): Promise<FhirHttpResponse>;
}

/** A source of bearer tokens that can be refreshed after a 401 (SMART Backend Services). */
export interface BearerSource {
  accessToken(signal: AbortSignal): Promise<string>;
  invalidate(token: string): void;
}

export function authHeaders(auth: FhirR4Config['auth']): Record<string, string> {
  return auth.kind === 'smart_backend' ? {} : fhirClientAuthHeaders(auth);
}

/**
 * Creates the fhir-kit-client transport. The import is dynamic: the package is ESM only. With a
 * bearer source, each request carries its current token; a 401 drops that token and the request
 * is sent once more with a fresh one (a token revoked or expired early at the server).
 */
export async function createFhirKitTransport(baseUrl: string, headers: Record<string, string>, bearer?: BearerSource): Promise<FhirTransport> {
  const { Client } = await import('fhir-kit-client');
  const client: FhirKitClient = new Client({ baseUrl, customHeaders: headers });
  const toResponse = (result: FhirResource): FhirHttpResponse => {
    const { response } = Client.httpFor(result);
    // A plain copy: the result carries hidden request/response properties.
    return { status: response?.status ?? 200, headers: response?.headers ?? new Headers(), body: { ...result } };
  };
  const authorized = async (signal: AbortSignal, send: (auth: Record<string, string>) => Promise<FhirResource>): Promise<FhirHttpResponse> => {
    if (bearer === undefined) return toResponse(await send({}));
    const token = await bearer.accessToken(signal);
    try {
      return toResponse(await send({ authorization: `Bearer ${token}` }));
    } catch (err) {
      const http = httpErrorSchema.safeParse(err);
      if (!http.success || http.data.response.status !== 401) throw err;
      bearer.invalidate(token);
      const fresh = await bearer.accessToken(signal);
      return toResponse(await send({ authorization: `Bearer ${fresh}` }));
    }
  };
  return {
    async search(resourceType, params, signal) {
      return authorized(signal, (auth) => client.resourceSearch({ resourceType, searchParams: params, options: { headers: auth, signal } }));
    },
    async create(resourceType, resource, extraHeaders, signal) {
      // fhir-kit-client types resources as Record<string, unknown>: cast at this boundary only.
      const body = resource as unknown as FhirResource;
      return authorized(signal, (auth) => client.create({ resourceType, body, options: { headers: { ...extraHeaders, ...auth }, signal } }));
    },
    async capabilities(signal) {
      return authorized(signal, (auth) => client.capabilityStatement({ headers: auth, signal }));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Error classification: the one place a FHIR failure becomes a verdict
// ---------------------------------------------------------------------------------------------

export type FhirInteraction = 'conditional-create' | 'patient-search' | 'capabilities' | 'other';

/** OperationOutcome issue codes that mean "try again later" (reference §3). */
const TRANSIENT_ISSUE_CODES: ReadonlySet<string> = new Set([
  'transient',
  'lock-error',
  'no-store',
  'exception',
  'timeout',
  'incomplete',
  'throttled',
]);
const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 425, 429, 500, 502, 503, 504]);
/** Server errors that will not go away by themselves. */
const PERMANENT_5XX: ReadonlySet<number> = new Set([501, 505]);
const NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EPIPE',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);
const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

const INTERACTION_TEXT: Record<FhirInteraction, string> = {
  'conditional-create': 'the conditional create of the Communication',
  'patient-search': 'the Patient search',
  capabilities: 'the metadata request',
  other: 'the request',
};

/**
 * Turns anything a FHIR request threw into a SwitchboardError with a stable code, following
 * the retry classification table (docs/destinations/fhir-r4.md). `interaction` decides the
 * meaning of 409 and 412, which differ between a conditional create and other requests.
 */
export function classifyFhirError(err: unknown, interaction: FhirInteraction = 'other'): SwitchboardError {
  if (err instanceof SwitchboardError) return err;
  const what = INTERACTION_TEXT[interaction];

  const http = httpErrorSchema.safeParse(err);
  if (http.success && !isNetworkShaped(err)) {
    return classifyHttpError(http.data.response.status, http.data.response.data, http.data.config?.headers, interaction);
  }

  const name = err instanceof Error || isDomException(err) ? (err as { name: string }).name : undefined;
  if (name === 'TimeoutError') {
    return new SwitchboardError('FHIR_TIMEOUT', `FHIR server did not answer ${what} in time`, {
      details: { http_status: null, interaction },
    });
  }
  if (name === 'AbortError') {
    return new SwitchboardError('FHIR_TIMEOUT', `${capitalise(what)} was aborted before the FHIR server answered`, {
      details: { http_status: null, interaction, aborted: true },
    });
  }

  const code = networkCode(err);
  if (code !== undefined || (err instanceof TypeError && err.message === 'fetch failed')) {
    if (code !== undefined && TIMEOUT_CODES.has(code)) {
      return new SwitchboardError('FHIR_TIMEOUT', `FHIR server did not answer ${what} in time (${code})`, {
        details: { http_status: null, interaction, network_code: code },
      });
    }
    const known = code !== undefined && NETWORK_CODES.has(code);
    return new SwitchboardError('FHIR_NETWORK', `FHIR server could not be reached for ${what} (${code ?? 'network error'})`, {
      details: { http_status: null, interaction, network_code: code ?? null, ...(known ? {} : { unrecognised: true }) },
      cause: causeOf(err),
    });
  }

  return new SwitchboardError('INTERNAL', `Unexpected failure during ${what} (${name ?? typeof err})`, {
    details: { http_status: null, interaction },
  });
}

function classifyHttpError(status: number, data: unknown, rawHeaders: unknown, interaction: FhirInteraction): SwitchboardError {
  const what = INTERACTION_TEXT[interaction];
  const headers = rawHeaders instanceof Headers ? rawHeaders : undefined;
  const outcome = operationOutcomeSchema.safeParse(data);
  const details: Record<string, unknown> = { http_status: status, interaction };
  if (outcome.success) {
    details.operation_outcome = outcome.data;
    details.issue_codes = [...new Set(outcome.data.issue.map((issue) => issue.code))];
  } else {
    details.body_kind = bodyKind(data);
  }
  const issueCodes = outcome.success ? outcome.data.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal').map((i) => i.code) : [];
  const retryAfterMs = parseRetryAfter(headers?.get('retry-after'));
  if (retryAfterMs !== undefined) details.retry_after_ms = retryAfterMs;

  const make = (code: ErrorCode, message: string, extra: { disposition?: 'retryable' | 'permanent'; retryAfter?: boolean } = {}): SwitchboardError =>
    new SwitchboardError(code, message, {
      details,
      ...(extra.disposition ? { disposition: extra.disposition } : {}),
      ...(extra.retryAfter && retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });

  if (status >= 200 && status < 300) {
    return make('FHIR_RESPONSE_INVALID', `FHIR server answered ${status} to ${what} with a body that is not JSON`);
  }
  if (status === 401) return make('FHIR_AUTH', `FHIR server refused the credentials (401) for ${what}`, { retryAfter: true });
  if (status === 412 && interaction === 'conditional-create') {
    return make('FHIR_MULTIPLE_MATCHES', 'FHIR server found several Communications with this identifier (412): duplicates already exist');
  }
  if (status === 409 && interaction === 'conditional-create') {
    details.reason = 'conditional create race';
    return make('FHIR_HTTP_RETRYABLE', 'FHIR server reported a conflict (409) on the conditional create, likely a concurrent create; retrying', {
      retryAfter: true,
    });
  }
  if (RETRYABLE_STATUSES.has(status) || (status >= 500 && !PERMANENT_5XX.has(status))) {
    return make('FHIR_HTTP_RETRYABLE', `FHIR server answered ${status} to ${what}`, { retryAfter: true });
  }
  // A 4xx whose error issues are all transient-family codes is a server saying "later" (reference §3).
  const definitePermanent = new Set([401, 403, 404, 405, 410, 412]);
  if (!definitePermanent.has(status) && status < 500 && issueCodes.length > 0 && issueCodes.every((c) => TRANSIENT_ISSUE_CODES.has(c))) {
    return make('FHIR_HTTP_RETRYABLE', `FHIR server answered ${status} to ${what} with a transient OperationOutcome`, { retryAfter: true });
  }
  return make('FHIR_HTTP_PERMANENT', `FHIR server rejected ${what} (${status})`);
}

function bodyKind(data: unknown): string {
  if (data === undefined || data === null || (typeof data === 'object' && Object.keys(data).length === 0)) return 'empty';
  if (typeof data === 'string') return /^\s*</.test(data) ? 'html' : 'text';
  return 'json';
}

function isDomException(err: unknown): boolean {
  return typeof DOMException !== 'undefined' && err instanceof DOMException;
}

function isNetworkShaped(err: unknown): boolean {
  return err instanceof TypeError && networkCode(err) !== undefined;
}

/** `.cause.code` of an undici fetch failure (or of the first error in an AggregateError cause). */
function networkCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const direct = (err as { code?: unknown }).code;
  if (typeof direct === 'string' && (NETWORK_CODES.has(direct) || TIMEOUT_CODES.has(direct))) return direct;
  const cause = err.cause;
  if (typeof cause !== 'object' || cause === null) return undefined;
  const code = (cause as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  const errors = (cause as { errors?: unknown }).errors;
  if (Array.isArray(errors)) {
    for (const inner of errors) {
      const innerCode = (inner as { code?: unknown } | null)?.code;
      if (typeof innerCode === 'string') return innerCode;
    }
  }
  return undefined;
}

/** The low-level socket error (host and port, no PHI); never the fetch error, whose message may hold a URL. */
function causeOf(err: unknown): unknown {
  return err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// ---------------------------------------------------------------------------------------------
// Patient matching
// ---------------------------------------------------------------------------------------------

export interface PatientBinding {
  reference: string;
  display?: string;
}

export type PatientMatch =
  | { kind: 'matched'; patient: PatientBinding }
  | { kind: 'unmatched'; reason: 'no_phone' | 'not_found' }
  | { kind: 'ambiguous'; count: number };

function patientDisplay(names: z.infer<typeof humanNameSchema>[] | undefined): string | undefined {
  const name = names?.find((n) => n.use === 'official') ?? names?.find((n) => n.use !== 'old') ?? names?.[0];
  if (!name) return undefined;
  const text = name.text?.trim() || [...(name.given ?? []), name.family ?? ''].join(' ').trim();
  return text === '' ? undefined : text;
}

/**
 * Finds Patients whose telecom is the sender's phone. Token search is exact on the stored
 * string, so both `telecom=phone|…` and `phone=…` are asked, each with the `+E.164` form and the
 * bare digits; the union of Patient ids decides. Inactive Patients (e.g. merged records) are
 * ignored. One search failing permanently (a server that lacks the parameter) is tolerated when
 * the other answers; a retryable failure fails the match.
 */
export async function matchPatientByPhone(
  transport: FhirTransport,
  phone: string | undefined,
  signal: () => AbortSignal,
): Promise<PatientMatch> {
  if (phone === undefined) return { kind: 'unmatched', reason: 'no_phone' };
  const digits = phone.replace(/^\+/, '');
  const searches: Record<string, string>[] = [
    { telecom: `phone|${phone},phone|${digits}`, _count: '5' },
    { phone: `${phone},${digits}`, _count: '5' },
  ];
  const settled = await Promise.allSettled(searches.map((params) => transport.search('Patient', params, signal())));
  const patients = new Map<string, PatientBinding>();
  let answered = 0;
  let firstError: SwitchboardError | undefined;
  for (const result of settled) {
    if (result.status === 'rejected') {
      const error = classifyFhirError(result.reason, 'patient-search');
      if (error.disposition === 'retryable') throw error;
      firstError ??= error;
      continue;
    }
    const bundle = searchBundleSchema.safeParse(result.value.body);
    if (!bundle.success) {
      throw new SwitchboardError('FHIR_RESPONSE_INVALID', 'FHIR server answered the Patient search with something other than a Bundle', {
        details: { http_status: result.value.status, interaction: 'patient-search' },
      });
    }
    answered++;
    for (const entry of bundle.data.entry ?? []) {
      if ((entry.search?.mode ?? 'match') !== 'match') continue;
      const patient = patientSchema.safeParse(entry.resource);
      if (!patient.success || patient.data.active === false) continue;
      const display = patientDisplay(patient.data.name);
      patients.set(patient.data.id, { reference: `Patient/${patient.data.id}`, ...(display ? { display } : {}) });
    }
  }
  if (answered === 0 && firstError) throw firstError;
  if (patients.size === 0) return { kind: 'unmatched', reason: 'not_found' };
  if (patients.size > 1) return { kind: 'ambiguous', count: patients.size };
  const [patient] = patients.values();
  return { kind: 'matched', patient: patient as PatientBinding };
}

// ---------------------------------------------------------------------------------------------
// The destination
// ---------------------------------------------------------------------------------------------

/** `identifier=<system>|<value>`, each part percent-encoded so `+`, `,` and `&` survive. */
export function ifNoneExistFor(system: string, value: string): string {
  return `identifier=${encodeURIComponent(system)}|${encodeURIComponent(value)}`;
}

type SmartAuth = Extract<FhirR4Config['auth'], { kind: 'smart_backend' }>;

function createSmartClient(auth: SmartAuth, baseUrl: string, channelId: string): SmartBackendClient {
  const keys = auth.keys.map((k, i) => {
    let privateKeyPem: string;
    try {
      privateKeyPem = readFileSync(path.resolve(k.private_key_file), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new ConfigError([{ file: path.resolve(k.private_key_file), line: 1, column: 1, message: `channel ${channelId}: auth.keys[${i}].private_key_file: ${code === 'ENOENT' ? 'file not found' : `cannot read it (${code ?? 'error'})`}` }]);
    }
    return { kid: k.kid, alg: k.alg, privateKeyPem };
  });
  return createSmartBackendClient({ clientId: auth.client_id, fhirBaseUrl: baseUrl, scope: auth.scope ?? SMART_DEFAULT_SCOPE[auth.scope_syntax], keys, ...(auth.token_url !== undefined && { tokenUrl: auth.token_url }) });
}

function createFhirR4Destination(config: FhirR4Config, ctx: DestinationCreateContext): DestinationInstance {
  const { mapping, channelId } = ctx;
  // Index the R4 definitions now (≈1.7 s once per process) rather than on the first delivery.
  loadFhirDefinitions();
  const smart = config.auth.kind === 'smart_backend' ? createSmartClient(config.auth, config.base_url, channelId) : undefined;
  let transport: Promise<FhirTransport> | undefined;
  const getTransport = (): Promise<FhirTransport> => {
    transport ??= createFhirKitTransport(config.base_url, authHeaders(config.auth), smart).catch((err: unknown) => {
      transport = undefined;
      throw err;
    });
    return transport;
  };
  const requestSignal = (outer: AbortSignal) => (): AbortSignal => AbortSignal.any([outer, AbortSignal.timeout(config.timeout_ms)]);

  // Matches (exactly one Patient) per phone number, for cache_ttl_ms; bounded, oldest evicted.
  const matches = new Map<string, { match: PatientMatch; until: number }>();
  const MAX_CACHED = 10_000;
  async function matchCached(http: FhirTransport, phone: string | undefined, signal: () => AbortSignal): Promise<PatientMatch> {
    const ttl = config.patient_match.cache_ttl_ms;
    if (phone !== undefined && ttl > 0) {
      const hit = matches.get(phone);
      if (hit && hit.until > Date.now()) return hit.match;
      matches.delete(phone);
    }
    const match = await matchPatientByPhone(http, phone, signal);
    if (phone !== undefined && ttl > 0 && match.kind === 'matched') {
      if (matches.size >= MAX_CACHED) matches.delete(matches.keys().next().value as string);
      matches.set(phone, { match, until: Date.now() + ttl });
    }
    return match;
  }

  /** Evaluates the mapping and validates its output; undefined when the mapping dropped the message. */
  async function renderCommunication(
    message: CanonicalMessage,
    now: Date,
    bindings: Record<string, unknown>,
  ): Promise<{ communication: fhir4.Communication; identifierValue: string } | undefined> {
    const output = await mapping.evaluate(message, {
      now,
      bindings: { patient: null, ...bindings, identifier_system: config.identifier_system, channel: { id: channelId } },
    });
    if (output === undefined) return undefined;
    // JSONata results can carry sequence markers and undefined members: keep plain JSON only.
    const json = JSON.stringify(output);
    if (json === undefined) throw mappingOutputInvalid(mapping, ['(root): the mapping returned something that is not JSON (a function?)'], { what: 'Communication' });
    const resource: unknown = JSON.parse(json);
    const verdict = validateFhirResource(resource, 'Communication');
    if (!verdict.ok) throw mappingOutputInvalid(mapping, verdict.issues, { what: 'Communication', output: resource });
    const communication = resource as fhir4.Communication;
    const identifier = communication.identifier?.find(
      (id) => id.system === config.identifier_system && typeof id.value === 'string' && id.value !== '',
    );
    if (!identifier?.value) {
      throw mappingOutputInvalid(mapping, [`Communication.identifier: no identifier with the destination's identifier_system`], { what: 'Communication', output: resource });
    }
    return { communication, identifierValue: identifier.value };
  }

  async function deliver(message: CanonicalMessage, dctx: DeliveryContext): Promise<DeliveryOutcome> {
    const http = await getTransport();
    const signal = requestSignal(dctx.signal);

    // a. Patient matching (nothing cached across messages).
    const match = await matchCached(http, message.sender.phone, signal);
    dctx.logger.debug({ patient_match: match.kind }, 'fhir_r4: patient match');
    if (match.kind === 'unmatched' && config.patient_match.on_unmatched === 'dead_letter') {
      throw new SwitchboardError('PATIENT_UNMATCHED', 'No Patient matched the sender and the destination requires one', {
        details: { reason: match.reason, policy: 'dead_letter' },
      });
    }
    if (match.kind === 'ambiguous' && config.patient_match.on_ambiguous === 'dead_letter') {
      throw new SwitchboardError('PATIENT_AMBIGUOUS', `${match.count} Patients matched the sender and the destination requires exactly one`, {
        details: { matches: match.count, policy: 'dead_letter' },
      });
    }
    const patient = match.kind === 'matched' ? match.patient : null;

    // b. Mapping and validation.
    const rendered = await renderCommunication(message, dctx.now, { patient });
    if (rendered === undefined) return { detail: { dropped: true, mapping_version: mapping.version } };
    const { communication, identifierValue } = rendered;

    // c. Conditional create.
    let response: FhirHttpResponse;
    try {
      response = await http.create(
        'Communication',
        communication,
        { 'if-none-exist': ifNoneExistFor(config.identifier_system, identifierValue), prefer: 'return=representation' },
        signal(),
      );
    } catch (err) {
      const failure = classifyFhirError(err, 'conditional-create');
      // What the server refused, for the dead letter's content view.
      throw failure.disposition === 'permanent' ? attachRejectedOutput(failure, communication) : failure;
    }
    const location = response.headers.get('location') ?? undefined;
    const parsed = createdCommunicationSchema.safeParse(response.body);
    const id = parsed.success ? parsed.data.id : location ? /(?:^|\/)Communication\/([A-Za-z0-9\-.]{1,64})(?:\/|$)/.exec(location)?.[1] : undefined;
    if ((response.status !== 200 && response.status !== 201) || id === undefined) {
      throw new SwitchboardError('FHIR_RESPONSE_INVALID', `FHIR server answered ${response.status} to the conditional create without a usable Communication id`, {
        details: { http_status: response.status, interaction: 'conditional-create' },
      });
    }
    return {
      detail: {
        resource_id: id,
        status: response.status,
        created: response.status === 201,
        ...(location ? { location } : {}),
        patient_match: match.kind,
        mapping_version: mapping.version,
      },
      // For replies from the EHR: the store links this conversation to the Patient (blind index).
      ...(patient !== null && { patient: patient.reference }),
    };
  }

  return {
    ...destinationBase(config, mapping),
    ...(smart !== undefined && { publicJwks: () => smart.publicJwks() }),
    deliver,
    async render(message, options) {
      const r = await renderCommunication(message, options.now, options.bindings);
      return r === undefined
        ? { dropped: true, contentType: 'application/fhir+json', body: undefined }
        : { dropped: false, contentType: 'application/fhir+json', body: r.communication };
    },
    async healthcheck(signal: AbortSignal): Promise<string> {
      const http = await getTransport();
      let response: FhirHttpResponse;
      try {
        response = await http.capabilities(requestSignal(signal)());
      } catch (err) {
        throw classifyFhirError(err, 'capabilities');
      }
      if (!capabilityStatementSchema.safeParse(response.body).success) {
        throw new SwitchboardError('FHIR_RESPONSE_INVALID', 'FHIR server answered /metadata without a CapabilityStatement', {
          details: { http_status: response.status, interaction: 'capabilities' },
        });
      }
      return config.auth.kind === 'none'
        ? 'reachable: /metadata answered a CapabilityStatement (no authentication configured)'
        : `reachable: /metadata answered a CapabilityStatement with the ${config.auth.kind} credentials (many servers serve /metadata without checking them; the first delivery proves them)`;
    },
    async close(): Promise<void> {
      // fhir-kit-client uses Node's global fetch dispatcher: nothing of ours to release.
      transport = undefined;
    },
  };
}

export const fhirR4Destination: DestinationConnector<typeof fhirR4ConfigSchema> = {
  kind: FHIR_R4_KIND,
  summary: 'FHIR R4 server: one Communication per message, conditional create on the message identifier, Patient matched by phone.',
  status: 'beta',
  since: '0.1.0',
  configSchema: fhirR4ConfigSchema,
  create: createFhirR4Destination,
};
