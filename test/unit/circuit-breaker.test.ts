import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../src/pipeline/circuit-breaker.js';

const policy = { enabled: true, failure_threshold: 3, open_ms: 1000, max_open_ms: 3000 };

describe('circuit breaker', () => {
  it('stays closed below the threshold and opens on the threshold-th consecutive failure', () => {
    let now = 0;
    const b = new CircuitBreaker(policy, () => now);
    expect(b.onFailure()).toBeUndefined();
    expect(b.onFailure()).toBeUndefined();
    expect(b.admit()).toBe(0);
    expect(b.onFailure()).toBe(1000);
    expect(b.state()).toBe('open');
    now = 400;
    expect(b.admit()).toBe(600);
  });

  it('lets one probe through when half-open; a failed probe re-opens for longer, capped', () => {
    let now = 0;
    const b = new CircuitBreaker(policy, () => now);
    for (let i = 0; i < 3; i++) b.onFailure();
    now = 1000;
    expect(b.state()).toBe('half_open');
    expect(b.admit()).toBe(0); // the probe
    expect(b.admit()).toBeGreaterThan(0); // others wait while it runs
    expect(b.onFailure()).toBe(2000);
    now = 3000;
    b.admit();
    expect(b.onFailure()).toBe(3000); // 4000 capped at max_open_ms
  });

  it('closes and forgets on success', () => {
    let now = 0;
    const b = new CircuitBreaker(policy, () => now);
    for (let i = 0; i < 3; i++) b.onFailure();
    now = 1000;
    b.admit();
    b.onSuccess();
    expect(b.state()).toBe('closed');
    expect(b.snapshot()).toMatchObject({ consecutiveFailures: 0, trips: 0, openUntil: null });
    expect(b.onFailure()).toBeUndefined();
  });

  it('never opens when disabled', () => {
    const b = new CircuitBreaker({ ...policy, enabled: false });
    for (let i = 0; i < 10; i++) expect(b.onFailure()).toBeUndefined();
    expect(b.admit()).toBe(0);
  });
});
