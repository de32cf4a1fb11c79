/**
 * `switchboard validate [channels-dir]`: layered like `vector validate`: lint, then load and
 * build every channel as the gateway would, then (--environment) each destination's healthcheck.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { buildRuntimeChannel } from '../../channels/build-channel.js';
import { loadChannelDirectory, type LoadedChannel } from '../../channels/load-channel.js';
import { classify, ConfigError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { createConnectorRegistry } from '../../connectors/registry.js';
import { effectiveChannelEnv, gatewayProvided } from '../../mapping-tests/mapping-test-env.js';
import type { RuntimeChannel } from '../../pipeline/runtime-channel.js';
import { parseCommandArgs, UsageError } from '../args.js';
import { environmentFrom, modeFrom, plural, relative } from '../common.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';
import { envReferences, formatLintIssue, lintProject } from '../lint-project.js';
import { lintSummary, printLintReport } from './lint.js';


interface HealthResult {
  channel: string;
  destination: string;
  kind: string;
  status: 'ok' | 'failed' | 'skipped';
  detail: string;
  ms?: number;
}

/** unreachable / auth refused / failed, from the error's code. */
function healthVerdict(code: string): string {
  if (/_AUTH$/.test(code)) return 'reachable, but authentication was refused';
  if (/_NETWORK$|_TIMEOUT$|_CONNECT$|UNREACHABLE/.test(code)) return 'unreachable';
  return 'failed';
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    environment: { type: 'boolean' },
    'timeout-ms': { type: 'string', default: '5000' },
    'env-file': { type: 'string', multiple: true },
    production: { type: 'boolean' },
    format: { type: 'string', default: 'text' },
  });
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError(`--format must be text or json, not ${values.format}`);
  if (positionals.length > 1) throw new UsageError('give one channels folder');
  const timeoutMs = Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new UsageError(`--timeout-ms must be a whole number of milliseconds, not ${values['timeout-ms']}`);
  const channelsDir = path.resolve(io.cwd, positionals[0] ?? io.env['CHANNELS_DIR'] ?? 'channels');
  if (!existsSync(channelsDir)) throw new UsageError(`${relative(io, channelsDir)}: no such folder`);
  const json = values.format === 'json';
  const say = (text: string): void => {
    if (!json) io.stdout(text);
  };
  const registry = createConnectorRegistry();
  const given = environmentFrom(io, values['env-file']);
  const mode = modeFrom(given, values.production);
  const report: Record<string, unknown> = {};
  const finish = (ok: boolean): number => {
    if (json) io.stdout(`${JSON.stringify({ ok, ...report }, null, 2)}\n`);
    else io.stdout(`\nvalidate: ${ok ? 'ok' : 'FAILED'}\n`);
    return ok ? EXIT_OK : EXIT_FAILURES;
  };

  // 1. Lint.
  const mappingsDir = path.resolve(io.cwd, 'mappings');
  const lint = await lintProject([channelsDir, ...(existsSync(mappingsDir) ? [mappingsDir] : [])], { registry, env: given, mode, cwd: io.cwd });
  const summary = lintSummary(lint);
  report['lint'] = { issues: lint.issues.map((i) => formatLintIssue(i, io.cwd)), errors: summary.errors, warnings: summary.warnings };
  if (!json) printLintReport(lint, io);
  say(`\n1/3 ${summary.line}\n`);
  if (summary.errors > 0) return finish(false);

  // 2. Load all channels together and build them.
  const { env } = effectiveChannelEnv(given, mode);
  let loaded: LoadedChannel[];
  try {
    loaded = await loadChannelDirectory(channelsDir, { registry, env });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const issue of err.issues) say(`${relative(io, issue.file)}:${issue.line}:${issue.column}: error: ${issue.message}\n`);
    report['build'] = { errors: err.issues.map((i) => `${relative(io, i.file)}:${i.line}:${i.column}: ${i.message}`) };
    say('2/3 build: FAILED\n');
    return finish(false);
  }
  const logger = createLogger({ level: 'silent' });
  const built: { loaded: LoadedChannel; channel: RuntimeChannel }[] = [];
  const buildReport: { channel: string; ok: boolean; detail: string }[] = [];
  say('2/3 build:\n');
  for (const l of loaded) {
    try {
      const channel = await buildRuntimeChannel(l, registry, logger);
      built.push({ loaded: l, channel });
      const names = channel.destinations.map((d) => `${d.name} (mapping ${d.mapping.version})`).join(', ');
      const detail = `source ${l.config.source.kind}, ${plural(channel.destinations.length, 'destination')}: ${names}`;
      buildReport.push({ channel: l.id, ok: true, detail });
      say(`  ✓ ${l.id}: ${detail}\n`);
    } catch (err) {
      const c = classify(err);
      buildReport.push({ channel: l.id, ok: false, detail: `${c.code}: ${c.message}` });
      say(`  ✗ ${l.id} (${relative(io, l.file)}): ${c.code}: ${c.message}\n`);
    }
  }
  report['build'] = buildReport;
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(built.flatMap((b) => b.channel.destinations.map((d) => d.close())));
  };
  if (buildReport.some((b) => !b.ok)) {
    await closeAll();
    return finish(false);
  }

  // 3. Destinations' healthchecks.
  if (values.environment !== true) {
    say('3/3 environment: not checked (add --environment to check reachability and auth)\n');
    await closeAll();
    return finish(true);
  }
  const health: HealthResult[] = [];
  try {
    say('3/3 environment:\n');
    for (const { loaded: l, channel } of built) {
      const references = await envReferences(l.file);
      for (const [index, destination] of channel.destinations.entries()) {
        const kind = String(l.config.destinations[index]?.kind ?? '?');
        const label = `${l.id}/${destination.name} (${kind})`;
        const sandboxed = references.find(
          (r) => r.path[0] === 'destinations' && r.path[1] === index && gatewayProvided[r.name] !== undefined && (given[r.name] === undefined || given[r.name] === ''),
        );
        if (sandboxed !== undefined) {
          const detail = `skipped: ${sandboxed.name} is not set; ${gatewayProvided[sandboxed.name]?.why ?? ''}`;
          health.push({ channel: l.id, destination: destination.name, kind, status: 'skipped', detail });
          say(`  - ${label}: ${detail}\n`);
          continue;
        }
        const started = performance.now();
        try {
          const verified = await destination.healthcheck(AbortSignal.timeout(timeoutMs));
          const ms = Math.round(performance.now() - started);
          health.push({ channel: l.id, destination: destination.name, kind, status: 'ok', detail: verified, ms });
          say(`  ✓ ${label}: ${verified} (${ms} ms)\n`);
        } catch (err) {
          const c = classify(err);
          const detail = `${healthVerdict(c.code)}: ${c.code}: ${c.message}`;
          health.push({ channel: l.id, destination: destination.name, kind, status: 'failed', detail });
          say(`  ✗ ${label}: ${detail}\n`);
        }
      }
    }
  } finally {
    await closeAll();
  }
  report['environment'] = health;
  return finish(!health.some((h) => h.status === 'failed'));
}
