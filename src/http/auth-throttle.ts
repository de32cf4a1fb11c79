/**
 * Slows down guessing: an address that sends `limit` bad credentials within `windowMs` is refused
 * (429 with Retry-After) for `lockoutMs`, doubling for each further lockout in a row up to
 * `maxLockoutMs`. The decision to throttle is returned once, so the caller audits it once, not
 * once per request of a flood. In memory, per process; bounded in size.
 */

export interface AuthThrottleOptions {
  limit: number;
  windowMs: number;
  lockoutMs: number;
  maxLockoutMs: number;
  /** Addresses tracked at most (the oldest is forgotten first). */
  maxAddresses?: number;
  now?: () => number;
}

interface AddressState {
  /** Times of the recent failures, oldest first, at most `limit`. */
  failures: number[];
  blockedUntil: number;
  /** Lockouts in a row (reset by a success or a quiet period). */
  strikes: number;
}

export interface ThrottleDecision {
  /** Milliseconds until the address may try again. */
  retryAfterMs: number;
  failures: number;
  lockoutNumber: number;
}

export class AuthThrottle {
  private readonly states = new Map<string, AddressState>();
  private readonly now: () => number;

  constructor(private readonly o: AuthThrottleOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Milliseconds the address must still wait, or 0. */
  blockedFor(address: string): number {
    const s = this.states.get(address);
    return s ? Math.max(0, s.blockedUntil - this.now()) : 0;
  }

  /** Records a failed attempt; returns a decision when this attempt starts a lockout. */
  failure(address: string): ThrottleDecision | null {
    const now = this.now();
    let s = this.states.get(address);
    if (s) this.states.delete(address); // re-inserted below: the map stays ordered by last activity
    else s = { failures: [], blockedUntil: 0, strikes: 0 };
    // A long quiet period after the last lockout forgives the earlier ones.
    if (s.strikes > 0 && now - s.blockedUntil > this.o.maxLockoutMs) s.strikes = 0;
    s.failures = s.failures.filter((t) => now - t < this.o.windowMs);
    s.failures.push(now);
    let decision: ThrottleDecision | null = null;
    if (s.failures.length >= this.o.limit) {
      s.strikes += 1;
      const lockout = Math.min(this.o.lockoutMs * 2 ** (s.strikes - 1), this.o.maxLockoutMs);
      s.blockedUntil = now + lockout;
      decision = { retryAfterMs: lockout, failures: s.failures.length, lockoutNumber: s.strikes };
      s.failures = [];
    }
    this.states.set(address, s);
    const max = this.o.maxAddresses ?? 10_000;
    while (this.states.size > max) this.states.delete(this.states.keys().next().value!);
    return decision;
  }

  /** A valid credential from the address: its failures are forgotten. */
  success(address: string): void {
    const s = this.states.get(address);
    if (s && s.blockedUntil <= this.now()) this.states.delete(address);
  }
}
