/**
 * The admin API as the console uses it: every call carries the signed-in token; an answer of 401
 * ends the session; 403 is reported to the access rules (role-awareness lives in access.ts).
 */
import type { ApiErrorBody } from './api-types.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface ApiClient {
  get<T>(path: string, query?: Record<string, string | number | undefined>): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  /** A file the gateway sends as an attachment (e.g. an audit export), with its file name. */
  download(path: string, query?: Record<string, string | number | undefined>): Promise<{ blob: Blob; filename: string }>;
}

export interface ApiHooks {
  /** The token was refused (expired, revoked): sign out. */
  onUnauthenticated(message: string): void;
  /** The server refused an action for this principal. */
  onForbidden(path: string): void;
  /** Any successful call: the session is in use. */
  onActivity(): void;
}

export function queryString(query: Record<string, string | number | undefined> = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = `HTTP_${res.status}`;
  let message = res.statusText || `the server answered ${res.status}`;
  try {
    const body = (await res.json()) as Partial<ApiErrorBody>;
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, code, message);
}

export function createApiClient(token: string, hooks: ApiHooks): ApiClient {
  async function send(method: 'GET' | 'POST', path: string, body?: unknown, accept = 'application/json'): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`/admin${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, accept, ...(body !== undefined && { 'content-type': 'application/json' }) },
        ...(body !== undefined && { body: JSON.stringify(body) }),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'NETWORK', 'cannot reach the gateway');
    }
    if (res.status === 401) {
      const e = await errorOf(res);
      hooks.onUnauthenticated(e.message);
      throw e;
    }
    if (res.status === 403) {
      hooks.onForbidden(path);
      throw await errorOf(res);
    }
    if (!res.ok) throw await errorOf(res);
    hooks.onActivity();
    return res;
  }
  const call = async <T,>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => (await (await send(method, path, body)).json()) as T;
  return {
    get: (path, query) => call('GET', `${path}${queryString(query)}`),
    post: (path, body) => call('POST', path, body ?? {}),
    download: async (path, query) => {
      const res = await send('GET', `${path}${queryString(query)}`, undefined, '*/*');
      const filename = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? 'download';
      return { blob: await res.blob(), filename };
    },
  };
}
