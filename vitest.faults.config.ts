import { defineConfig } from 'vitest/config';

/**
 * The fault-injection suite (`npm run test:faults`): real processes, a real redis-server and
 * PostgreSQL that the suite itself stops and starts. Files end in `.faults.ts` so the normal
 * `npm test` (test/**\/*.test.ts) never picks them up. One file at a time: scenarios kill and
 * restart processes and measure recovery, so they must not compete for the CPU.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.faults.ts'],
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 240_000,
    hookTimeout: 120_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
