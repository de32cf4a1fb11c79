/**
 * A circuit breaker per destination: after `failure_threshold` consecutive retryable failures the
 * destination is paused for `open_ms` (doubling on every re-trip, capped), so an outage does not
 * burn every message's attempts. After the pause one probe delivery runs (half-open): success
 * closes the circuit, failure opens it again for longer.
 */
import type { CircuitBreakerPolicy } from '../core/policies.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitSnapshot {
  state: CircuitState;
  consecutiveFailures: number;
  trips: number;
  openUntil: string | null;
}

export class CircuitBreaker {
  private failures = 0;
  private trips = 0;
  private openUntil = 0;
  private probing = false;

  constructor(
    private readonly policy: CircuitBreakerPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  state(): CircuitState {
    if (!this.policy.enabled || this.trips === 0) return 'closed';
    return this.now() < this.openUntil ? 'open' : 'half_open';
  }

  /**
   * Whether a delivery may run now. Returns 0 when it may, else how long to wait. In half-open
   * state only one probe runs at a time.
   */
  admit(): number {
    const s = this.state();
    if (s === 'closed') return 0;
    if (s === 'open') return this.openUntil - this.now();
    if (this.probing) return 1000;
    this.probing = true;
    return 0;
  }

  onSuccess(): void {
    this.failures = 0;
    this.trips = 0;
    this.openUntil = 0;
    this.probing = false;
  }

  /** Records a retryable failure; returns the pause in ms when this failure opened the circuit. */
  onFailure(): number | undefined {
    if (!this.policy.enabled) return undefined;
    const wasProbe = this.probing;
    this.probing = false;
    this.failures++;
    if (!wasProbe && this.failures < this.policy.failure_threshold) return undefined;
    this.trips++;
    const pause = Math.min(this.policy.open_ms * 2 ** (this.trips - 1), this.policy.max_open_ms);
    this.openUntil = this.now() + pause;
    return pause;
  }

  snapshot(): CircuitSnapshot {
    return {
      state: this.state(),
      consecutiveFailures: this.failures,
      trips: this.trips,
      openUntil: this.trips > 0 ? new Date(this.openUntil).toISOString() : null,
    };
  }
}
