/**
 * Exponential backoff with full jitter, capped; a server's Retry-After wins when it asks for
 * longer (still capped, so a broken server cannot park a delivery indefinitely).
 */
import type { RetryPolicy } from '../core/policies.js';

export function backoffDelay(policy: RetryPolicy, attemptsMade: number, retryAfterMs: number | undefined, random: () => number = Math.random): number {
  const exp = policy.initial_delay_ms * 2 ** Math.max(0, attemptsMade - 1);
  const ceiling = Math.min(policy.max_delay_ms, exp);
  const jittered = Math.floor(random() * ceiling);
  if (retryAfterMs !== undefined) return Math.min(Math.max(retryAfterMs, jittered), policy.max_delay_ms);
  return jittered;
}
