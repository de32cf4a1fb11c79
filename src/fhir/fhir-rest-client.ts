/**
 * A small FHIR R4 REST client over fetch for the EHR side of two-way messaging (the FHIR
 * sources and the status write-back): read, search by URL (following the server's `next`
 * links), create and conditional update (If-Match). Every request has a timeout.
 *
 * Failures become SwitchboardErrors with the FHIR codes of src/core/errors.ts: 401 FHIR_AUTH,
 * 409/412 FHIR_VERSION_CONFLICT, 408/425/429/5xx FHIR_HTTP_RETRYABLE (with Retry-After), other
 * 4xx FHIR_HTTP_PERMANENT, no answer FHIR_NETWORK or FHIR_TIMEOUT. Messages and details carry
 * status codes, issue codes and resource types only: never URLs (search URLs can name a
 * patient), ids of patients or bodies.
 */
import { z } from 'zod';
import { SwitchboardError, parseRetryAfter } from '../core/errors.js';

export interface FhirRestClientOptions {
  /** e.g. https://ehr.example.org/fhir/R4 */
  baseUrl: string;
  /** Sent on every request (Authorization, ...). */
  headers?: Record<string, string>;
  timeoutMs: number;
}

export interface FhirRestResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON; undefined for an empty body. */
  body: unknown;
}

const issueSchema = z.looseObject({ severity: z.string().optional(), code: z.string() });
const operationOutcomeSchema = z.looseObject({ resourceType: z.literal('OperationOutcome'), issue: z.array(issueSchema) });

export const searchBundleSchema = z.looseObject({
  resourceType: z.literal('Bundle'),
  link: z.array(z.looseObject({ relation: z.string(), url: z.string() })).optional(),
  entry: z
    .array(
      z.looseObject({
        resource: z.looseObject({ resourceType: z.string() }).optional(),
        search: z.looseObject({ mode: z.string().optional() }).optional(),
      }),
    )
    .optional(),
});
export type SearchBundle = z.infer<typeof searchBundleSchema>;

const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 425, 429, 500, 502, 503, 504]);

/** The FHIR error for a non-2xx answer to `what` (e.g. "the Communication read"). */
export function fhirHttpError(status: number, body: unknown, headers: Headers, what: string): SwitchboardError {
  const outcome = operationOutcomeSchema.safeParse(body);
  const details: Record<string, unknown> = { http_status: status };
  if (outcome.success) details.issue_codes = [...new Set(outcome.data.issue.map((i) => i.code))];
  const retryAfterMs = parseRetryAfter(headers.get('retry-after'));
  if (status === 401) return new SwitchboardError('FHIR_AUTH', `FHIR server refused the credentials (401) for ${what}`, { details });
  if (status === 409 || status === 412) {
    return new SwitchboardError('FHIR_VERSION_CONFLICT', `FHIR server reported a newer version (${status}) for ${what}`, { details });
  }
  if (RETRYABLE_STATUSES.has(status) || (status >= 500 && status !== 501 && status !== 505)) {
    return new SwitchboardError('FHIR_HTTP_RETRYABLE', `FHIR server answered ${status} to ${what}`, {
      details,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  return new SwitchboardError('FHIR_HTTP_PERMANENT', `FHIR server rejected ${what} (${status})`, { details });
}

function transportError(err: unknown, what: string): SwitchboardError {
  const name = err instanceof Error || (typeof DOMException !== 'undefined' && err instanceof DOMException) ? (err as { name: string }).name : '';
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new SwitchboardError('FHIR_TIMEOUT', `FHIR server did not answer ${what} in time`, { details: { http_status: null, aborted: name === 'AbortError' } });
  }
  const code = err instanceof Error && typeof (err.cause as { code?: unknown } | undefined)?.code === 'string' ? String((err.cause as { code: string }).code) : 'network error';
  return new SwitchboardError('FHIR_NETWORK', `FHIR server could not be reached for ${what} (${code})`, { details: { http_status: null, network_code: code } });
}

/** `W/"3"` -> `3`; undefined when absent. */
export function versionFromEtag(etag: string | null): string | undefined {
  const m = /^(?:W\/)?"([^"]+)"$/.exec(etag?.trim() ?? '');
  return m?.[1];
}

export class FhirRestClient {
  readonly baseUrl: string;
  private readonly base: URL;

  constructor(private readonly opts: FhirRestClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.base = new URL(`${this.baseUrl}/`);
  }

  /** An absolute URL under the base for `relative` (e.g. `Communication?status=active`). */
  url(relative: string): string {
    return new URL(relative.replace(/^\/+/, ''), this.base).toString();
  }

  /**
   * Whether `url` is under this client's base (same origin and path prefix): a `next` link is
   * followed, with our credentials, only when it is.
   */
  isUnderBase(url: string): boolean {
    try {
      const u = new URL(url);
      return u.origin === this.base.origin && u.pathname.startsWith(this.base.pathname);
    } catch {
      return false;
    }
  }

  async request(
    method: 'GET' | 'POST' | 'PUT',
    url: string,
    what: string,
    options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<FhirRestResponse> {
    const signals = [AbortSignal.timeout(this.opts.timeoutMs), ...(options.signal ? [options.signal] : [])];
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        method,
        headers: {
          accept: 'application/fhir+json',
          ...(options.body !== undefined ? { 'content-type': 'application/fhir+json' } : {}),
          ...this.opts.headers,
          ...options.headers,
        },
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        signal: AbortSignal.any(signals),
      });
      text = await res.text();
    } catch (err) {
      throw transportError(err, what);
    }
    let body: unknown;
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        if (res.ok) throw new SwitchboardError('FHIR_RESPONSE_INVALID', `FHIR server answered ${res.status} to ${what} with a body that is not JSON`, { details: { http_status: res.status } });
        body = undefined;
      }
    }
    if (!res.ok) throw fhirHttpError(res.status, body, res.headers, what);
    return { status: res.status, headers: res.headers, body };
  }

  /** GET [base]/[type]/[id]. */
  async read(resourceType: string, id: string, signal?: AbortSignal): Promise<FhirRestResponse> {
    return this.request('GET', this.url(`${resourceType}/${encodeURIComponent(id)}`), `the ${resourceType} read`, signal ? { signal } : {});
  }

  /** A search page: `url` is a search URL under the base (the first page or a `next` link). */
  async searchPage(url: string, what: string, signal?: AbortSignal): Promise<SearchBundle> {
    if (!this.isUnderBase(url)) {
      throw new SwitchboardError('FHIR_RESPONSE_INVALID', `FHIR server gave a paging link for ${what} outside its base URL; not followed`, { disposition: 'permanent' });
    }
    const res = await this.request('GET', url, what, signal ? { signal } : {});
    const bundle = searchBundleSchema.safeParse(res.body);
    if (!bundle.success) throw new SwitchboardError('FHIR_RESPONSE_INVALID', `FHIR server answered ${what} without a Bundle`, { details: { http_status: res.status } });
    return bundle.data;
  }

  /** POST [base]/[type]. */
  async create<T extends { resourceType: string }>(resource: T, signal?: AbortSignal, headers: Record<string, string> = {}): Promise<FhirRestResponse> {
    return this.request('POST', this.url(resource.resourceType), `the ${resource.resourceType} create`, { body: resource, headers, ...(signal ? { signal } : {}) });
  }

  /** PUT [base]/[type]/[id], conditional on `ifMatchVersion` when given (If-Match: W/"<vid>"). */
  async update<T extends { resourceType: string; id: string }>(resource: T, ifMatchVersion: string | undefined, signal?: AbortSignal): Promise<FhirRestResponse> {
    return this.request('PUT', this.url(`${resource.resourceType}/${encodeURIComponent(resource.id)}`), `the ${resource.resourceType} update`, {
      body: resource,
      headers: ifMatchVersion !== undefined ? { 'if-match': `W/"${ifMatchVersion}"` } : {},
      ...(signal ? { signal } : {}),
    });
  }
}

/** The static ways to authenticate to a FHIR server (shared with the fhir_r4 destination, which adds SMART). */
export const staticFhirAuthVariants = [
  z.strictObject({ kind: z.literal('none').describe('No Authorization header.') }),
  z.strictObject({
    kind: z.literal('bearer').describe('A static bearer token: `Authorization: Bearer <token>`.'),
    token: z.string().min(1).describe('The access token. Use ${ENV_VAR}, never a literal.'),
  }),
  z.strictObject({
    kind: z.literal('basic').describe('HTTP Basic: `Authorization: Basic base64(username:password)`.'),
    username: z.string().min(1).describe('User name or client id.'),
    password: z.string().describe('Password or client secret. Use ${ENV_VAR}, never a literal.'),
  }),
] as const;

/** Authorization for the FHIR sources and write-back (static credentials). */
export const fhirClientAuthSchema = z
  .discriminatedUnion('kind', [...staticFhirAuthVariants])
  .default({ kind: 'none' })
  .describe('How requests authenticate to the FHIR server. Default: none.');
export type FhirClientAuth = z.infer<typeof fhirClientAuthSchema>;

/** The Authorization header of static credentials; none for anything else (e.g. SMART, set per request). */
export function fhirClientAuthHeaders(auth: { kind: string; token?: string; username?: string; password?: string }): Record<string, string> {
  switch (auth.kind) {
    case 'bearer':
      return { authorization: `Bearer ${auth.token ?? ''}` };
    case 'basic':
      return { authorization: `Basic ${Buffer.from(`${auth.username ?? ''}:${auth.password ?? ''}`, 'utf8').toString('base64')}` };
    default:
      return {};
  }
}
