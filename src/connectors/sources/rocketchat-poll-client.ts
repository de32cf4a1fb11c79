/**
 * A small Rocket.Chat REST client for the poller: X-Auth-Token/X-User-Id, a per-endpoint call
 * budget (Rocket.Chat's default limiter: 10 calls per 60 s per endpoint), and 429 handling that
 * waits for `X-RateLimit-Reset` (epoch ms) or `Retry-After` before trying again.
 *
 * Errors carry the endpoint and HTTP status only: response bodies may hold PHI and are never kept.
 */
import { parseRetryAfter } from '../../core/errors.js';
import { abortableSleep } from './poll-cursor.js';

export interface RateBudget {
  calls: number;
  perMs: number;
}

export interface RocketChatClientOptions {
  baseUrl: string;
  authToken: string;
  userId: string;
  budget: RateBudget;
  timeoutMs: number;
  /** Longest wait honoured for one 429 (a broken or hostile server cannot park the poller). */
  maxRateLimitWaitMs?: number;
  /** 429 answers in a row before giving up on the request. */
  maxRateLimitRetries?: number;
  fetch?: typeof fetch;
}

export class RocketChatApiError extends Error {
  constructor(
    readonly endpoint: string,
    readonly status: number | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'RocketChatApiError';
  }
}

export { abortableSleep };

/** Milliseconds to wait after a 429, from X-RateLimit-Reset (epoch ms or s) or Retry-After. */
export function rateLimitWaitMs(headers: Headers, now: number, fallbackMs: number): number {
  const reset = headers.get('x-ratelimit-reset');
  if (reset !== null && /^\d+$/.test(reset.trim())) {
    const n = Number(reset.trim());
    const at = n < 1e11 ? n * 1000 : n;
    return Math.max(0, at - now);
  }
  return parseRetryAfter(headers.get('retry-after'), now) ?? fallbackMs;
}

export class RocketChatClient {
  private readonly calls = new Map<string, number[]>();
  /** Endpoint -> time before which no call is made (after a 429 or Remaining: 0). */
  private readonly blockedUntil = new Map<string, number>();
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly o: RocketChatClientOptions) {
    this.fetchImpl = o.fetch ?? fetch;
  }

  /** Waits until the endpoint's budget allows a call, then records it. */
  private async takeBudget(endpoint: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (signal.aborted) throw new RocketChatApiError(endpoint, undefined, 'aborted');
      const now = Date.now();
      const blocked = this.blockedUntil.get(endpoint) ?? 0;
      const recent = (this.calls.get(endpoint) ?? []).filter((t) => t > now - this.o.budget.perMs);
      this.calls.set(endpoint, recent);
      let waitMs = Math.max(0, blocked - now);
      if (waitMs === 0 && recent.length >= this.o.budget.calls) waitMs = (recent[0] ?? now) + this.o.budget.perMs - now;
      if (waitMs <= 0) {
        recent.push(now);
        return;
      }
      await abortableSleep(waitMs, signal);
    }
  }

  /** GET /api/v1/<endpoint>?params -> the decoded JSON body. */
  async get(endpoint: string, params: Record<string, string>, signal: AbortSignal): Promise<unknown> {
    const url = new URL(`api/v1/${endpoint}`, this.o.baseUrl.endsWith('/') ? this.o.baseUrl : `${this.o.baseUrl}/`);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    const maxRetries = this.o.maxRateLimitRetries ?? 5;
    for (let attempt = 0; ; attempt++) {
      await this.takeBudget(endpoint, signal);
      const timeout = AbortSignal.timeout(this.o.timeoutMs);
      let res: Response;
      try {
        res = await this.fetchImpl(url, {
          headers: { 'x-auth-token': this.o.authToken, 'x-user-id': this.o.userId, accept: 'application/json' },
          signal: AbortSignal.any([signal, timeout]),
        });
      } catch (err) {
        const why = timeout.aborted ? `timed out after ${this.o.timeoutMs} ms` : signal.aborted ? 'aborted' : `network error: ${(err as Error).message}`;
        throw new RocketChatApiError(endpoint, undefined, `GET ${endpoint}: ${why}`);
      }
      const remaining = res.headers.get('x-ratelimit-remaining');
      if (res.status === 429) {
        await res.body?.cancel().catch(() => undefined);
        const wait = Math.min(rateLimitWaitMs(res.headers, Date.now(), this.o.budget.perMs), this.o.maxRateLimitWaitMs ?? 300_000);
        this.blockedUntil.set(endpoint, Date.now() + wait);
        if (attempt >= maxRetries) throw new RocketChatApiError(endpoint, 429, `GET ${endpoint}: still rate limited after ${attempt + 1} attempts`);
        continue;
      }
      if (remaining !== null && remaining.trim() === '0') {
        this.blockedUntil.set(endpoint, Date.now() + Math.min(rateLimitWaitMs(res.headers, Date.now(), this.o.budget.perMs), this.o.maxRateLimitWaitMs ?? 300_000));
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new RocketChatApiError(endpoint, res.status, `GET ${endpoint}: HTTP ${res.status}`);
      }
      try {
        return await res.json();
      } catch {
        throw new RocketChatApiError(endpoint, res.status, `GET ${endpoint}: the answer is not JSON`);
      }
    }
  }
}
