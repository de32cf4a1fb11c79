/**
 * Prints the plain closing line CI reads: `N passed, N failed, N skipped`.
 *
 * "failed" counts every failure vitest counts, not only failed tests: a file that fails to load
 * (syntax error, throwing import, failing beforeAll) counts once per error, an error of a suite
 * outside its tests (a failing beforeAll/afterAll) once per error, and each unhandled error once.
 * If vitest still ends the run as failed with none of those seen, the line says 1 failed rather
 * than 0, so the line can never read as a pass when the run was not one.
 */
import type { Reporter, TestModule, TestRunEndReason } from 'vitest/node';

interface SerializedErrorLike {
  readonly message?: string;
}

export interface Summary {
  passed: number;
  failed: number;
  skipped: number;
}

export function summarise(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedErrorLike>, reason: TestRunEndReason): Summary {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const m of modules) {
    failed += m.errors().length;
    for (const s of m.children.allSuites()) failed += s.errors().length;
    for (const t of m.children.allTests()) {
      const state = t.result().state;
      if (state === 'passed') passed++;
      else if (state === 'failed') failed++;
      else skipped++;
    }
  }
  failed += unhandledErrors.length;
  if (reason === 'failed' && failed === 0) failed = 1;
  return { passed, failed, skipped };
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedErrorLike>, reason: TestRunEndReason): void {
    const { passed, failed, skipped } = summarise(modules, unhandledErrors, reason);
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
