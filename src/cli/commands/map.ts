/** `switchboard map -m <mapping> -i <input>`: evaluates a mapping on a sample, optionally on every save. */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createConnectorRegistry } from '../../connectors/registry.js';
import type { CanonicalMessage } from '../../core/canonical-message.js';
import { missingFileHint } from '../../core/did-you-mean.js';
import { ConfigError, SwitchboardError } from '../../core/errors.js';
import type { SourceInstance } from '../../connectors/types.js';
import { validateFhirResource } from '../../fhir/validate-resource.js';
import { compileMapping, type CompiledMapping } from '../../mapping/jsonata-mapping.js';
import { locateIssues } from '../../mapping/mapping-output-error.js';
import { describeFailure } from '../../mapping-tests/mapping-test-expect.js';
import { checkHl7Message } from '../../mapping-tests/mapping-test-hl7.js';
import { compileHint } from '../../mapping-tests/mapping-test-hints.js';
import {
  InputError,
  checkCanonical,
  decodeRawBody,
  detectSources,
  pickMessage,
  resolveBody,
  sourceForParsing,
} from '../../mapping-tests/mapping-test-input.js';
import { parseBindings, parseCommandArgs, parseNow, UsageError } from '../args.js';
import { relative } from '../common.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';
import { buildMapTarget, channelsUsing, MapTargetError, type MapTarget } from '../map-target.js';


interface MapOptions {
  /** Unset only with --channel (the destination's mapping is used). */
  mapping: string | undefined;
  input: string;
  source?: string | undefined;
  channel?: string | undefined;
  destination?: string | undefined;
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
  /** The mapping file in use (from --channel when -m is not given). */
  mapping?: string;
}

/** Prints a rendered or raw output: JSON, or text (HL7 segments one per line). */
function printOutput(io: CliIo, output: unknown): void {
  if (typeof output === 'string') io.stdout(`${output.replace(/\r\n?/g, '\n').replace(/\n+$/, '')}\n`);
  else io.stdout(`${JSON.stringify(output, null, 2) ?? 'undefined'}\n`);
}

/** Output problems, each with the mapping position of the key that builds the element. */
function printIssues(io: CliIo, mapping: CompiledMapping, heading: string, issues: readonly string[]): void {
  io.stderr(`✗ ${heading}:\n`);
  for (const { issue, at } of locateIssues(mapping, issues)) {
    io.stderr(`  ${at === undefined ? '' : `${relative(io, mapping.file)}:${at.line}:${at.column}: `}${issue}\n`);
  }
}

/** The channel destination to map for: --channel, else the first channel file that uses the mapping. */
async function chooseTarget(options: MapOptions, io: CliIo, notes: string[]): Promise<MapTarget | 'failed' | undefined> {
  const ctx = { registry: createConnectorRegistry(), env: io.env, shown: (f: string) => relative(io, f) };
  if (options.channel !== undefined) {
    try {
      return await buildMapTarget(options.channel, options.mapping, options.destination, ctx);
    } catch (err) {
      if (!(err instanceof MapTargetError)) throw err;
      for (const issue of err.issues) io.stderr(`${relative(io, issue.file)}:${issue.line}:${issue.column}: error: ${issue.message}\n`);
      io.stderr(`--channel: ${err.message}\n`);
      return 'failed';
    }
  }
  if (options.fhir !== undefined || options.hl7 !== undefined || options.mapping === undefined) return undefined;
  const channelsDir = path.resolve(io.cwd, io.env['CHANNELS_DIR'] ?? 'channels');
  const uses = channelsUsing(channelsDir, options.mapping);
  const first = uses[0];
  if (first === undefined) return undefined;
  try {
    const target = await buildMapTarget(first.file, options.mapping, first.destination, ctx);
    if (uses.length > 1) notes.push(`also used by ${uses.slice(1).map((u) => `${u.destination} of ${relative(io, u.file)}`).join(', ')}; --channel to map for another`);
    return target;
  } catch (err) {
    if (!(err instanceof MapTargetError)) throw err;
    notes.push(`${err.message}${err.issues.length > 0 ? ` (switchboard lint shows why)` : ''}: the output is checked by its shape only`);
    return undefined;
  }
}

type PickedInput = { kind: 'message'; value: unknown; from: string } | { kind: 'none'; reason: string };

/** The canonical message to map: parsed from a raw webhook (given, detected, or by the channel's source), or as written. */
async function pickInput(options: MapOptions, io: CliIo, target: MapTarget | undefined, now: Date): Promise<PickedInput> {
  const registry = createConnectorRegistry();
  const body = await resolveBody({ file: options.input }, { testFile: path.join(io.cwd, 'input'), fixturesDir: io.cwd });
  const fromSource = async (source: SourceInstance, label: string): Promise<PickedInput> => {
    const picked = pickMessage(await source.parse(body.raw, { channelId: target?.channel.id ?? 'map', receivedAt: now }), options.message, body.origin);
    return picked.kind === 'no_message' ? { kind: 'none', reason: picked.reason } : { kind: 'message', value: picked.value, from: `${label}, ${picked.origin}` };
  };
  if (options.source !== undefined) return fromSource(sourceForParsing(registry, options.source), `a raw ${options.source} webhook (--source)`);
  const value = body.value;
  if (typeof value === 'object' && value !== null && 'schema_version' in value) {
    if (options.message !== undefined) throw new UsageError('--message picks a message of a raw webhook; the input is a canonical message');
    return { kind: 'message', value: checkCanonical(value, body.origin), from: `a canonical message, ${body.origin}` };
  }
  const detected = detectSources(registry, body.raw);
  if (target !== undefined && (detected.length === 0 || detected.some((d) => d.kind === target.sourceKind))) {
    const decoded = decodeRawBody(target.channel.source, body.raw);
    const refusal = decoded.ok ? target.channel.source.checkEnvelope(decoded.value) : decoded.reason;
    if (refusal !== null) {
      throw new UsageError(
        `cannot tell what ${relative(io, options.input)} is: it is not a canonical message (no schema_version), and the ${target.sourceKind} source of ${relative(io, target.channel.file)} ` +
          `would refuse it (400: ${refusal}). Give --source <kind> for another source's webhook, or --channel <channel file> for another channel`,
      );
    }
    return fromSource(target.channel.source, `a raw ${target.sourceKind} webhook (the source of ${relative(io, target.channel.file)})`);
  }
  const only = detected.length === 1 ? detected[0] : undefined;
  if (only !== undefined) return fromSource(only.source, `a raw ${only.kind} webhook (detected; --source to say otherwise)`);
  const kinds = registry.sources
    .filter((s) => {
      try {
        return sourceForParsing(registry, s.kind).path !== undefined;
      } catch {
        return false;
      }
    })
    .map((s) => s.kind)
    .join(', ');
  throw new UsageError(
    detected.length > 1
      ? `${relative(io, options.input)} could be a webhook of ${detected.map((d) => d.kind).join(' or ')}: say which with --source <kind>`
      : `cannot tell what ${relative(io, options.input)} is: it is not a canonical message (no schema_version) and not a webhook body Switchboard recognises. ` +
        `Give --source <kind> (${kinds}) for a raw webhook, or --channel <channel file> to parse it with that channel's source (chat_webhook needs its channel's extract)`,
  );
}

/** One evaluation: prints the output (stdout) or the problem (stderr). */
async function evaluateOnce(options: MapOptions, io: CliIo): Promise<RunResult> {
  const notes: string[] = [];
  const target = await chooseTarget(options, io, notes);
  if (target === 'failed') return { ok: false, dependencies: [] };
  try {
    return await evaluateWith(options, io, target, notes);
  } finally {
    await target?.close();
  }
}

async function evaluateWith(options: MapOptions, io: CliIo, target: MapTarget | undefined, notes: string[]): Promise<RunResult> {
  const mappingFile = options.mapping ?? target?.destination.mapping.file;
  if (mappingFile === undefined) throw new UsageError('give the mapping with -m, or --channel with one destination');
  let source: string;
  try {
    source = await readFile(mappingFile, 'utf8');
  } catch {
    io.stderr(`${relative(io, mappingFile)}: mapping file not found${missingFileHint(mappingFile)}\n`);
    return { ok: false, dependencies: [] };
  }
  let mapping;
  try {
    mapping = compileMapping(mappingFile, source);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const issue of err.issues) {
      const hint = /JSONata S0/.test(issue.message) ? ` — ${compileHint(issue.message)}` : '';
      io.stderr(`${relative(io, issue.file)}:${issue.line}:${issue.column}: error: ${issue.message}${hint}\n`);
    }
    return { ok: false, dependencies: [], mapping: mappingFile };
  }
  const dependencies = mapping.dependencies ?? [];
  const result = (ok: boolean): RunResult => ({ ok, dependencies, mapping: mappingFile });
  const now = options.now ?? new Date();
  let input: unknown;
  try {
    const picked = await pickInput(options, io, target, now);
    if (picked.kind === 'none') {
      io.stderr(`nothing to map: ${picked.reason}\n`);
      return result(true);
    }
    io.stderr(`input: ${picked.from}\n`);
    input = picked.value;
  } catch (err) {
    if (err instanceof InputError) {
      io.stderr(`input: ${err.message}\n`);
      return result(false);
    }
    throw err;
  }
  for (const note of notes) io.stderr(`note: ${note}\n`);

  if (target !== undefined) {
    // As the gateway would: the destination's own bindings, rendering and checks.
    try {
      const rendered = await target.destination.render(input as CanonicalMessage, { now, bindings: options.bindings, deliveryId: 'switchboard-map' });
      if (rendered.dropped) {
        io.stderr(`(nothing: the mapping returned no value, so ${target.destination.name} is not sent this message)\n`);
        return result(true);
      }
      printOutput(io, rendered.body);
      io.stderr(`✓ valid for ${target.label}\n`);
      return result(true);
    } catch (err) {
      if (err instanceof SwitchboardError && (err.code === 'MAPPING_OUTPUT_INVALID' || err.code === 'HL7_BUILD_INVALID')) {
        if (err.rejectedOutput !== undefined) printOutput(io, err.rejectedOutput);
        const issues = Array.isArray(err.details['issues']) ? (err.details['issues'] as unknown[]).map(String) : [err.message];
        printIssues(io, mapping, `not valid for ${target.label} (${err.code})`, issues);
        return result(false);
      }
      io.stderr(`${describeFailure(err, { file: mappingFile, source })}\n`);
      return result(false);
    }
  }

  let output: unknown;
  try {
    output = await mapping.evaluate(input, { now, bindings: options.bindings });
  } catch (err) {
    io.stderr(`${describeFailure(err, { file: mappingFile, source })}\n`);
    return result(false);
  }
  if (output === undefined) {
    io.stderr('(nothing: the mapping returned no value, so this message is dropped)\n');
    return result(true);
  }
  const json = JSON.stringify(output);
  const plain = typeof output === 'string' || json === undefined ? output : (JSON.parse(json) as unknown);
  printOutput(io, plain);
  const resourceType = (plain as { resourceType?: unknown } | null)?.resourceType;
  const fhirType = options.fhir ?? (options.hl7 === undefined && typeof resourceType === 'string' ? resourceType : undefined);
  let ok = true;
  if (fhirType !== undefined) {
    const verdict = validateFhirResource(plain, fhirType);
    if (verdict.ok) io.stderr(`✓ valid FHIR R4 ${fhirType}\n`);
    else {
      ok = false;
      printIssues(io, mapping, `not a valid FHIR R4 ${fhirType}`, verdict.issues);
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
  if (fhirType === undefined && options.hl7 === undefined) {
    io.stderr(
      '⚠ output not validated: no channel in the channels folder uses this mapping and the output is not a FHIR resource; ' +
        'give --channel <channel file> to render it as its destination would, or --fhir <type> / --hl7 <type>\n',
    );
  }
  return result(ok);
}

/** " (did you mean mappings/x.jsonata?)" for a mapping file that does not exist. */
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
  const watched = (r: RunResult): string[] => [
    ...(r.mapping === undefined ? [] : [r.mapping]),
    options.input,
    ...(options.channel === undefined ? [] : [options.channel]),
    ...r.dependencies,
  ];
  const rerun = (): void => {
    running = running.then(async () => {
      const names = [...changed].map((f) => relative(io, f)).join(', ');
      changed.clear();
      const started = performance.now();
      io.stderr(`\n── ${new Date().toLocaleTimeString()} ${names} changed\n`);
      let result: RunResult = first;
      try {
        result = await evaluateOnce(options, io);
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        io.stderr(`${err.message}\n`);
      }
      io.stderr(`── ${Math.round(performance.now() - started)} ms · watching (Ctrl-C to stop)\n`);
      watchFiles(watched(result));
    });
  };

  watchFiles(watched(first));
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
    channel: { type: 'string' },
    destination: { type: 'string' },
    message: { type: 'string' },
    now: { type: 'string' },
    binding: { type: 'string', multiple: true },
    fhir: { type: 'string' },
    hl7: { type: 'string' },
    watch: { type: 'boolean', short: 'w' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0] ?? ''}: give the files with -m and -i`);
  if (values.input === undefined) throw new UsageError('-i <input> is required (a canonical message, or a raw webhook)');
  if (values.mapping === undefined && values.channel === undefined) throw new UsageError('-m <mapping> is required (or --channel <channel file> to use its destination\'s mapping)');
  if (values.destination !== undefined && values.channel === undefined) throw new UsageError('--destination needs --channel (it picks a destination of that channel)');
  if (values.channel !== undefined && (values.fhir !== undefined || values.hl7 !== undefined)) {
    throw new UsageError('--channel checks the output as its destination does; leave out --fhir / --hl7');
  }
  let message: number | undefined;
  if (values.message !== undefined) {
    if (!/^\d+$/.test(values.message)) throw new UsageError(`--message ${values.message}: a message number, 0 or more`);
    message = Number(values.message);
  }
  const options: MapOptions = {
    mapping: values.mapping === undefined ? undefined : path.resolve(io.cwd, values.mapping),
    input: path.resolve(io.cwd, values.input),
    source: values.source,
    channel: values.channel === undefined ? undefined : path.resolve(io.cwd, values.channel),
    destination: values.destination,
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
