/**
 * Delivery policies every destination shares, whatever its kind: the retry schedule and the
 * circuit breaker. Schemas only (they parse channel files and document them); the breaker's
 * runtime lives in the pipeline (src/pipeline/circuit-breaker.ts), backoff in src/pipeline/backoff.ts.
 */
import { z } from 'zod';

export const retryPolicySchema = z
  .object({
    attempts: z.number().int().min(1).max(100).default(10).describe('Total attempts, the first included.'),
    initial_delay_ms: z.number().int().min(0).default(1000).describe('Backoff before the second attempt; doubles each time (full jitter).'),
    max_delay_ms: z.number().int().min(0).default(300_000).describe('Cap on any single backoff, Retry-After included.'),
    max_age_ms: z
      .number()
      .int()
      .min(1000)
      .default(86_400_000)
      .describe('A message older than this (since it was received) is dead-lettered at its next failure instead of retried.'),
  })
  .strict();
export type RetryPolicy = z.infer<typeof retryPolicySchema>;

export const circuitBreakerSchema = z
  .object({
    enabled: z.boolean().default(true),
    failure_threshold: z.number().int().min(1).max(1000).default(5).describe('Consecutive retryable failures that open the circuit.'),
    open_ms: z.number().int().min(100).default(30_000).describe('First pause; doubles each time the probe fails.'),
    max_open_ms: z.number().int().min(100).default(600_000).describe('Longest pause.'),
  })
  .strict();
export type CircuitBreakerPolicy = z.infer<typeof circuitBreakerSchema>;
