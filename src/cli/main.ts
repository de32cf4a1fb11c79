/**
 * `switchboard <command>`: the integration analyst's tools. Exit codes: 0 ok, 1 failures found,
 * 2 usage. Each command is a function of its arguments and a CliIo, so tests run them in-process.
 * Commands are loaded when run, so `--help` answers at once.
 */
import { readFileSync } from 'node:fs';
import { CommandFailure, UsageError } from './args.js';
import { EXIT_FAILURES, EXIT_OK, EXIT_USAGE, type CliIo } from './io.js';
import { auditUsage, dlqUsage, docsUsage, keysUsage, storeUsage, lintUsage, mapUsage, testUsage, tokensUsage, validateUsage } from './usage.js';

export interface Command {
  name: string;
  summary: string;
  usage: string;
  load(): Promise<{ run(argv: readonly string[], io: CliIo): Promise<number> }>;
}

export const commands: readonly Command[] = [
  { name: 'lint', summary: 'check channel files, mappings and test files offline', usage: lintUsage, load: () => import('./commands/lint.js') },
  { name: 'test', summary: 'run mapping tests and channel tests (*.test.yaml)', usage: testUsage, load: () => import('./commands/test.js') },
  { name: 'map', summary: 'evaluate a mapping on a sample (--watch: on every save)', usage: mapUsage, load: () => import('./commands/map.js') },
  {
    name: 'validate',
    summary: 'lint, build every channel, and (--environment) check every destination',
    usage: validateUsage,
    load: () => import('./commands/validate.js'),
  },
  { name: 'dlq', summary: 'list, inspect, replay and discard dead letters of a running gateway', usage: dlqUsage, load: () => import('./commands/dlq.js') },
  { name: 'audit', summary: 'verify the audit trail\'s hash chain; export it as NDJSON or FHIR AuditEvents', usage: auditUsage, load: () => import('./commands/audit.js') },
  { name: 'keys', summary: 'encryption keys: status, rotate, reencrypt older values online', usage: keysUsage, load: () => import('./commands/keys.js') },
  { name: 'tokens', summary: 'named API tokens with a role: create (shown once), list, revoke', usage: tokensUsage, load: () => import('./commands/tokens.js') },
  { name: 'store', summary: 'retention: drop time partitions past their retention (--dry-run shows what would go)', usage: storeUsage, load: () => import('./commands/store.js') },
  { name: 'docs', summary: 'generate the connector and function reference and the JSON Schemas', usage: docsUsage, load: () => import('./commands/docs.js') },
];

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: switchboard <command> [options]',
    '',
    'Tools for channel files (channels/*.yaml) and JSONata mappings (mappings/*.jsonata).',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options:',
    '  -h, --help     show help (also: switchboard <command> --help)',
    '  -v, --version  show the version',
    '',
    'Exit codes: 0 ok, 1 failures found, 2 usage error.',
    'Guide: docs/analyst-guide.md',
    '',
  ].join('\n');
}

/** Runs the CLI; resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    if (first === 'help' && rest[0] !== undefined) return runCli([rest[0], '--help'], io);
    (first === undefined ? io.stderr : io.stdout)(mainHelp());
    return first === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (first === '-v' || first === '--version') {
    io.stdout(`switchboard ${version()}\n`);
    return EXIT_OK;
  }
  const command = commands.find((c) => c.name === first);
  if (command === undefined) {
    io.stderr(`switchboard: unknown command "${first}"\n\n${mainHelp()}`);
    return EXIT_USAGE;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    io.stdout(command.usage);
    return EXIT_OK;
  }
  try {
    const { run } = await command.load();
    return await run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`switchboard ${command.name}: ${err.message}\n\n${command.usage}`);
      return EXIT_USAGE;
    }
    if (err instanceof CommandFailure) {
      io.stderr(`switchboard ${command.name}: ${err.message}\n`);
      return EXIT_FAILURES;
    }
    io.stderr(`switchboard ${command.name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT_FAILURES;
  }
}
