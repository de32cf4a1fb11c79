import { describe, expect, it } from 'vitest';
import { AuthThrottle } from '../../src/http/auth-throttle.js';

function throttle(o: Partial<ConstructorParameters<typeof AuthThrottle>[0]> = {}) {
  const clock = { t: 1_000_000 };
  const t = new AuthThrottle({ limit: 3, windowMs: 60_000, lockoutMs: 10_000, maxLockoutMs: 40_000, now: () => clock.t, ...o });
  return { t, clock };
}

describe('AuthThrottle', () => {
  it('locks an address out at the limit within the window, once per decision', () => {
    const { t, clock } = throttle();
    expect(t.failure('a')).toBeNull();
    expect(t.failure('a')).toBeNull();
    expect(t.blockedFor('a')).toBe(0);
    expect(t.failure('a')).toEqual({ retryAfterMs: 10_000, failures: 3, lockoutNumber: 1 });
    expect(t.blockedFor('a')).toBe(10_000);
    expect(t.blockedFor('b')).toBe(0);
    clock.t += 4_000;
    expect(t.blockedFor('a')).toBe(6_000);
    clock.t += 6_000;
    expect(t.blockedFor('a')).toBe(0);
  });

  it('forgets failures older than the window', () => {
    const { t, clock } = throttle();
    t.failure('a');
    t.failure('a');
    clock.t += 60_001;
    expect(t.failure('a')).toBeNull();
    expect(t.failure('a')).toBeNull();
    expect(t.failure('a')).not.toBeNull();
  });

  it('doubles the lockout for each one in a row, up to the cap; a success or a quiet period forgives', () => {
    const { t, clock } = throttle();
    const lockout = () => {
      t.failure('a');
      t.failure('a');
      const d = t.failure('a')!;
      clock.t += d.retryAfterMs;
      return d.retryAfterMs;
    };
    expect([lockout(), lockout(), lockout(), lockout()]).toEqual([10_000, 20_000, 40_000, 40_000]);
    t.success('a');
    expect(lockout()).toBe(10_000);
    clock.t += 40_001;
    expect(lockout()).toBe(10_000);
  });

  it('a success while locked out does not lift the lockout', () => {
    const { t } = throttle();
    for (let i = 0; i < 3; i++) t.failure('a');
    t.success('a');
    expect(t.blockedFor('a')).toBe(10_000);
  });

  it('tracks a bounded number of addresses', () => {
    const { t } = throttle({ maxAddresses: 2 });
    for (let i = 0; i < 3; i++) t.failure('a');
    t.failure('b');
    t.failure('c');
    expect(t.blockedFor('a')).toBe(0);
  });
});
