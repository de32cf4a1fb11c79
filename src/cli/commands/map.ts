/** `switchboard map -m <mapping> -i <input>`: evaluates a mapping on a sample, optionally on every save. */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createConnectorRegistry } from '../../connectors/registry.js';
import { ConfigError } from '../../core/errors.js';
import { validateFhirResource } from '../../fhir/validate-resource.js';
import { compileMapping } from '../../mapping/jsonata-mapping.js';
import { describeFailure } from '../../mapping/mapping-test-expect.js';
import { checkHl7Message } from '../../mapping/mapping-test-hl7.js';
import { compileHint } from '../../mapping/mapping-test-hints.js';
import { InputError, checkCanonical, pickMessage, resolveBody, sourceForParsing } from '../../mapping/mapping-test-input.js';
import { locateOutputElement } from '../../mapping/mapping-test-locate.js';
import { parseBindings, parseCommandArgs, parseNow, UsageError } from '../args.js';
import { relative } from '../common.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';


interface MapOptions {
  mapping: string;
  input: string;
  source?: string | undefined;
  message?: number | undefined;
  now?: Date | undefined;
  bindings: Record<string, unknown>;
  fhir?: string | undefined;
  hl7?: string | undefined;
}

interface RunResult {
  ok: boolean;
  /** Extra files the mapping read (code tables), to watch too. */
  dependencies: readonly string[];
}

/** One evaluation: prints the output (stdout) or the problem (stderr). */
async function evaluateOnce(options: MapOptions, io: CliIo): Promise<RunResult> {
  let source: string;
  try {
    source = await readFile(options.mapping, 'utf8');
  } catch {
    io.stderr(`${relative(io, options.mapping)}: mapping file not found\n`);
    return { ok: false, dependencies: [] };
  }
  let mapping;
  try {
    mapping = compileMapping(options.mapping, source);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const issue of err.issues) {
      const hint = /JSONata S0/.test(issue.message) ? ` — ${compileHint(issue.message)}` : '';
      io.stderr(`${relative(io, issue.file)}:${issue.line}:${issue.column}: error: ${issue.message}${hint}\n`);
    }
    return { ok: false, dependencies: [] };
  }
  const dependencies = mapping.dependencies ?? [];
  const now = options.now ?? new Date();
  let input: unknown;
  try {
    const body = await resolveBody({ file: options.input }, { testFile: path.join(io.cwd, 'input'), fixturesDir: io.cwd });
    if (options.source !== undefined) {
      const picked = pickMessage(await sourceForParsing(createConnectorRegistry(), options.source).parse(body.raw, { channelId: 'map', receivedAt: now }), options.message, body.origin);
      if (picked.kind === 'no_message') {
        io.stderr(`nothing to map: ${picked.reason}\n`);
        return { ok: true, dependencies };
      }
      input = picked.value;
    } else {
      input = checkCanonical(body.value, body.origin);
    }
  } catch (err) {
    if (err instanceof InputError) {
      io.stderr(`input: ${err.message}\n`);
      return { ok: false, dependencies };
    }
    throw err;
  }
  let output: unknown;
  try {
    output = await mapping.evaluate(input, { now, bindings: options.bindings });
  } catch (err) {
    io.stderr(`${describeFailure(err, { file: options.mapping, source })}\n`);
    return { ok: false, dependencies };
  }
  if (output === undefined) {
    io.stderr('(nothing: the mapping returned no value, so this message is dropped)\n');
    return { ok: true, dependencies };
  }
  const json = JSON.stringify(output, null, 2);
  const plain = typeof output === 'string' ? output : json === undefined ? undefined : (JSON.parse(json) as unknown);
  io.stdout(typeof output === 'string' ? `${output.replace(/\r/g, '\n').replace(/\n+$/, '')}\n` : `${json ?? 'undefined'}\n`);
  let ok = true;
  if (options.fhir !== undefined) {
    const verdict = validateFhirResource(plain, options.fhir);
    if (verdict.ok) io.stderr(`✓ valid FHIR R4 ${options.fhir}\n`);
    else {
      ok = false;
      io.stderr(`✗ not a valid FHIR R4 ${options.fhir}:\n`);
      for (const issue of verdict.issues) {
        const at = locateOutputElement(source, issue.split(':')[0] ?? '');
        io.stderr(`  ${at === undefined ? '' : `${relative(io, options.mapping)}:${at.line}:${at.column}: `}${issue}\n`);
      }
    }
  }
  if (options.hl7 !== undefined) {
    const issues = checkHl7Message(plain, options.hl7);
    if (issues.length === 0) io.stderr(`✓ valid HL7 v2 ${options.hl7}\n`);
    else {
      ok = false;
      io.stderr(`✗ not a valid HL7 v2 ${options.hl7}:\n${issues.map((i) => `  ${i}\n`).join('')}`);
    }
  }
  return { ok, dependencies };
}

/** Re-runs on every save of the watched files (debounced) until io.signal aborts. */
async function watchLoop(options: MapOptions, io: CliIo, first: RunResult): Promise<number> {
  const signal = io.signal;
  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();
  const changed = new Set<string>();

  const watchFiles = (files: readonly string[]): void => {
    for (const w of watchers) w.close();
    // Watch folders, not files: editors save by writing a new file and renaming it over the old one.
    const byDir = new Map<string, Set<string>>();
    for (const f of files) {
      const dir = path.dirname(f);
      byDir.set(dir, (byDir.get(dir) ?? new Set()).add(path.basename(f)));
    }
    watchers = [...byDir].map(([dir, names]) =>
      watch(dir, (_event, name) => {
        if (name === null || !names.has(name.toString())) return;
        changed.add(path.join(dir, name.toString()));
        clearTimeout(timer);
        timer = setTimeout(rerun, 30);
      }),
    );
  };
  const rerun = (): void => {
    running = running.then(async () => {
      const names = [...changed].map((f) => relative(io, f)).join(', ');
      changed.clear();
      const started = performance.now();
      io.stderr(`\n── ${new Date().toLocaleTimeString()} ${names} changed\n`);
      const result = await evaluateOnce(options, io);
      io.stderr(`── ${Math.round(performance.now() - started)} ms · watching (Ctrl-C to stop)\n`);
      watchFiles([options.mapping, options.input, ...result.dependencies]);
    });
  };

  watchFiles([options.mapping, options.input, ...first.dependencies]);
  io.stderr('── watching the mapping, the input and code tables (Ctrl-C to stop)\n');
  await new Promise<void>((resolve) => {
    if (signal === undefined) return; // runs until the process ends
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearTimeout(timer);
  for (const w of watchers) w.close();
  await running;
  return EXIT_OK;
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    mapping: { type: 'string', short: 'm' },
    input: { type: 'string', short: 'i' },
    source: { type: 'string' },
    message: { type: 'string' },
    now: { type: 'string' },
    binding: { type: 'string', multiple: true },
    fhir: { type: 'string' },
    hl7: { type: 'string' },
    watch: { type: 'boolean', short: 'w' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0] ?? ''}: give the files with -m and -i`);
  if (values.mapping === undefined || values.input === undefined) throw new UsageError('both -m <mapping> and -i <input> are required');
  let message: number | undefined;
  if (values.message !== undefined) {
    if (!/^\d+$/.test(values.message)) throw new UsageError(`--message ${values.message}: a message number, 0 or more`);
    if (values.source === undefined) throw new UsageError('--message needs --source (it picks a message of a raw webhook)');
    message = Number(values.message);
  }
  const options: MapOptions = {
    mapping: path.resolve(io.cwd, values.mapping),
    input: path.resolve(io.cwd, values.input),
    source: values.source,
    message,
    now: parseNow(values.now),
    bindings: parseBindings(values.binding),
    fhir: values.fhir,
    hl7: values.hl7,
  };
  const first = await evaluateOnce(options, io);
  if (values.watch === true) return watchLoop(options, io, first);
  return first.ok ? EXIT_OK : EXIT_FAILURES;
}
