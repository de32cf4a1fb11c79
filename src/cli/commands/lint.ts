/** `switchboard lint [paths]`: offline checks of channel files, mappings and test files. */
import { createConnectorRegistry } from '../../connectors/registry.js';
import { parseCommandArgs, UsageError } from '../args.js';
import { environmentFrom, givenPaths, modeFrom, plural } from '../common.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';
import { displayFile, formatLintIssue, lintProject, type LintReport } from '../lint-project.js';


export function printLintReport(report: LintReport, io: CliIo): void {
  for (const issue of report.issues) io.stdout(`${formatLintIssue(issue, io.cwd)}\n`);
  if (report.environment.length > 0) {
    const width = Math.max(...report.environment.map((v) => v.name.length));
    io.stdout(`\nenvironment variables the channels need:\n`);
    for (const v of report.environment) {
      const state = v.status === 'set' ? 'set' : v.status === 'missing' ? 'NOT SET' : `not set: ${v.note ?? ''}`;
      io.stdout(`  ${v.name.padEnd(width)}  ${state}\n`);
    }
  }
}

export function lintSummary(report: LintReport): { errors: number; warnings: number; infos: number; line: string } {
  const count = (level: string): number => report.issues.filter((i) => i.level === level).length;
  const errors = count('error');
  const warnings = count('warning');
  const infos = count('info');
  const files = `${plural(report.counts.channels, 'channel')}, ${plural(report.counts.mappings, 'mapping')}, ${plural(report.counts.tests, 'test file')}`;
  return { errors, warnings, infos, line: `lint: ${files}: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}` };
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    format: { type: 'string', default: 'text' },
    'env-file': { type: 'string', multiple: true },
    production: { type: 'boolean' },
    strict: { type: 'boolean' },
    fixtures: { type: 'string' },
  });
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError(`--format must be text or json, not ${values.format}`);
  const env = environmentFrom(io, values['env-file']);
  const report = await lintProject(givenPaths(io, positionals), {
    registry: createConnectorRegistry(),
    env,
    mode: modeFrom(env, values.production),
    cwd: io.cwd,
    ...(values.fixtures === undefined ? {} : { fixturesDir: values.fixtures }),
  });
  const summary = lintSummary(report);
  const failed = summary.errors > 0 || (values.strict === true && summary.warnings > 0);
  if (values.format === 'json') {
    io.stdout(
      `${JSON.stringify(
        {
          ok: !failed,
          issues: report.issues.map((i) => ({ file: displayFile(i.file, io.cwd), line: i.line, column: i.column, level: i.level, message: i.message })),
          environment: report.environment,
          summary: { errors: summary.errors, warnings: summary.warnings, infos: summary.infos, ...report.counts },
        },
        null,
        2,
      )}\n`,
    );
  } else {
    printLintReport(report, io);
    io.stdout(`\n${summary.line}\n`);
  }
  return failed ? EXIT_FAILURES : EXIT_OK;
}
