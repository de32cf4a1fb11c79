/** `switchboard test [paths]`: runs mapping tests and channel tests. */
import path from 'node:path';
import { existsSync } from 'node:fs';
import { createConnectorRegistry } from '../../connectors/registry.js';
import { collectProjectFiles, testFileCandidates } from '../../mapping-tests/mapping-test-files.js';
import { runTestFile, summarise, type TestFileResult } from '../../mapping-tests/mapping-test-runner.js';
import { parseCommandArgs, UsageError } from '../args.js';
import { environmentFrom, givenPaths, relative } from '../common.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';


function formatDuration(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function printTestResult(result: TestFileResult, io: CliIo): void {
  const target = result.target !== undefined ? ` (${result.kind}: ${relative(io, result.target)})` : '';
  io.stdout(`${relative(io, result.file)}${target}\n`);
  if (result.issues.length > 0) {
    io.stdout(`  ✗ ${relative(io, result.file)}: cannot run:\n`);
    for (const issue of result.issues) io.stdout(`      ${relative(io, issue.file)}:${issue.line}:${issue.column}: error: ${issue.message}\n`);
  }
  for (const c of result.cases) {
    if (c.status === 'passed') io.stdout(`  ✓ ${c.name} (${formatDuration(c.durationMs)})\n`);
    else if (c.status === 'skipped') io.stdout(`  - ${c.name} (skipped)\n`);
    else {
      const [first, ...others] = c.reasons;
      io.stdout(`  ✗ ${c.name} [${relative(io, result.file)}:${c.line}]: ${first ?? 'failed'}\n`);
      for (const reason of others) io.stdout(`    ${reason}\n`);
    }
  }
  for (const file of result.written) io.stdout(`  wrote ${relative(io, file)}\n`);
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    update: { type: 'boolean' },
    filter: { type: 'string' },
    fixtures: { type: 'string' },
    'env-file': { type: 'string', multiple: true },
    format: { type: 'string', default: 'text' },
  });
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError(`--format must be text or json, not ${values.format}`);
  const paths = givenPaths(io, positionals).map((p) => path.resolve(io.cwd, p));
  // A mapping or channel file given by name stands for its test file.
  const direct = paths.flatMap((p) => (/\.(jsonata|ya?ml)$/i.test(p) && !/\.test\.ya?ml$/i.test(p) ? [p] : []));
  const files = await collectProjectFiles(paths.filter((p) => !direct.includes(p)));
  const testFiles = [...files.tests];
  for (const file of direct) {
    const test = testFileCandidates(file).find((t) => existsSync(t));
    if (test === undefined) throw new UsageError(`${relative(io, file)} has no test file: create ${relative(io, testFileCandidates(file)[0] ?? '')}`);
    testFiles.push(test);
  }
  const registry = createConnectorRegistry();
  const env = environmentFrom(io, values['env-file']);
  const results: TestFileResult[] = [];
  for (const file of [...new Set(testFiles)]) {
    const result = await runTestFile(file, {
      registry,
      env,
      update: values.update === true,
      ...(values.filter === undefined ? {} : { filter: values.filter }),
      ...(values.fixtures === undefined ? {} : { fixturesDir: path.resolve(io.cwd, values.fixtures) }),
    });
    results.push(result);
    if (values.format === 'text') printTestResult(result, io);
  }
  const totals = summarise(results);
  if (values.format === 'json') {
    io.stdout(`${JSON.stringify({ ok: totals.failed === 0, ...totals, files: results.map((r) => ({ ...r, file: relative(io, r.file), target: r.target === undefined ? undefined : relative(io, r.target) })) }, null, 2)}\n`);
  } else {
    if (results.length === 0) io.stdout('no test files found\n');
    io.stdout(`\n${totals.passed} passed, ${totals.failed} failed${totals.skipped > 0 ? `, ${totals.skipped} skipped` : ''}\n`);
  }
  return totals.failed > 0 ? EXIT_FAILURES : EXIT_OK;
}
