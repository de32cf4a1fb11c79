import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/pipeline/backoff.js';
import { SwitchboardError, classify, errorCatalogue, parseRetryAfter } from '../../src/core/errors.js';

const policy = { attempts: 10, initial_delay_ms: 1000, max_delay_ms: 60_000, max_age_ms: 86_400_000 };

describe('backoff', () => {
  it('grows exponentially with full jitter and never exceeds the cap', () => {
    expect(backoffDelay(policy, 1, undefined, () => 0.999)).toBe(999);
    expect(backoffDelay(policy, 4, undefined, () => 0.999)).toBe(7992);
    expect(backoffDelay(policy, 30, undefined, () => 0.999)).toBe(59_940);
    expect(backoffDelay(policy, 3, undefined, () => 0)).toBe(0);
  });

  it('waits at least as long as Retry-After asks, capped by max_delay_ms', () => {
    expect(backoffDelay(policy, 1, 5000, () => 0.1)).toBe(5000);
    expect(backoffDelay(policy, 1, 3_600_000, () => 0.1)).toBe(60_000);
  });
});

describe('errors', () => {
  it('parses Retry-After as seconds or an HTTP date, and caps it', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Thu, 01 Jan 2025 00:00:30 GMT', now)).toBe(0);
    expect(parseRetryAfter('999999', now)).toBe(3_600_000);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it('classifies in one place: catalogue disposition, overrides, and unknown errors as retryable INTERNAL', () => {
    expect(classify(new SwitchboardError('FHIR_HTTP_PERMANENT', 'x')).disposition).toBe('permanent');
    expect(classify(new SwitchboardError('FHIR_HTTP_PERMANENT', 'x', { disposition: 'retryable' })).disposition).toBe('retryable');
    expect(classify(new Error('boom'))).toMatchObject({ code: 'INTERNAL', disposition: 'retryable', pauseDestination: false });
    expect(classify(new SwitchboardError('FHIR_HTTP_RETRYABLE', 'x', { retryAfterMs: 2000 })).retryAfterMs).toBe(2000);
  });

  it('every catalogue code has a disposition and a summary', () => {
    for (const [code, e] of Object.entries(errorCatalogue)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
      expect(['retryable', 'permanent']).toContain(e.disposition);
      expect(e.summary.length).toBeGreaterThan(10);
    }
  });
});
