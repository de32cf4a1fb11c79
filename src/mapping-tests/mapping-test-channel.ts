/**
 * Channel tests (`channels/<name>.test.yaml`): a raw webhook (body and headers) goes through a
 * whole channel with its destinations captured — authenticate → envelope check → parse →
 * filter → `when` routing → each destination's render() — and the test asserts what each
 * destination would receive, or that it never receives the message.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { buildRuntimeChannel } from '../channels/build-channel.js';
import { loadChannelFile, type LoadedChannel } from '../channels/load-channel.js';
import type { CanonicalMessage } from '../core/canonical-message.js';
import { ConfigError, SwitchboardError, classify } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import type { InboundRequest, SourceInstance } from '../connectors/types.js';
import { whatsappSignature } from '../connectors/sources/whatsapp-cloud.js';
import type { RuntimeChannel } from '../pipeline/runtime-channel.js';
import { checkExpectation, describeFailure, type MappingSource, type Outcome } from './mapping-test-expect.js';
import { effectiveChannelEnv, envMode } from './mapping-test-env.js';
import { testedFileCandidates } from './mapping-test-files.js';
import { InputError, decodeRawBody, describeParse, resolveBody, type InputContext } from './mapping-test-input.js';
import { defaultFixturesDir, shown, type TestFileResult, type TestRunOptions } from './mapping-test-runner.js';
import { channelTestFileSchema, type ChannelTestCase, type ChannelTestFile } from './mapping-test-schema.js';
import { describeSchemaIssues, type PositionedYaml } from './mapping-test-yaml.js';

/** How the runner signs a request for a source kind (`sign: true`), from the channel's resolved source config. */
const signers: Record<string, (config: Record<string, unknown>, raw: Buffer) => Record<string, string>> = {
  whatsapp_cloud: (config, raw) => ({ 'x-hub-signature-256': whatsappSignature(String(config['app_secret']), raw) }),
};

export async function runChannelTests(file: string, yaml: PositionedYaml, options: TestRunOptions): Promise<TestFileResult> {
  const result: TestFileResult = { file, kind: 'channel', issues: [], cases: [], written: [] };
  const checked = channelTestFileSchema.safeParse(yaml.data);
  if (!checked.success) {
    result.issues = describeSchemaIssues(yaml, channelTestFileSchema, checked.error, 'the test file');
    return result;
  }
  const spec: ChannelTestFile = checked.data;
  const channelFile =
    spec.channel !== undefined
      ? path.resolve(path.dirname(file), spec.channel)
      : (testedFileCandidates(file).channels.find((c) => existsSync(c)) ?? testedFileCandidates(file).channels[0] ?? file);
  result.target = channelFile;
  if (!existsSync(channelFile)) {
    result.issues.push({
      file,
      ...yaml.at(spec.channel !== undefined ? ['channel'] : []),
      message:
        spec.channel !== undefined
          ? `channel file not found: ${shown(channelFile)} (the path is relative to the test file)`
          : `test file without a channel: there is no ${path.basename(channelFile)} beside it; rename the test file or add "channel: <file>.yaml"`,
    });
    return result;
  }

  // Load and build the channel as the gateway would, with the test's environment.
  const given = { ...(options.env ?? process.env), ...spec.env };
  const { env } = effectiveChannelEnv(given, envMode(given));
  let loaded: LoadedChannel;
  let channel: RuntimeChannel;
  try {
    loaded = await loadChannelFile(channelFile, { registry: options.registry, env });
    channel = await buildRuntimeChannel(loaded, options.registry, createLogger({ level: 'silent' }));
  } catch (err) {
    if (err instanceof ConfigError) {
      result.issues.push(...err.issues, { file, ...yaml.at(spec.channel !== undefined ? ['channel'] : []), message: `the channel under test does not load (${err.issues.length} problem${err.issues.length === 1 ? '' : 's'} above)` });
      return result;
    }
    throw err;
  }

  const mappingSources = new Map<string, MappingSource>();
  for (const destination of channel.destinations) {
    try {
      mappingSources.set(destination.name, { file: destination.mapping.file, source: await readFile(destination.mapping.file, 'utf8') });
    } catch {
      // Only used to point at lines; the mapping was loaded already.
    }
  }

  const inputCtx: InputContext = { testFile: file, fixturesDir: options.fixturesDir ?? defaultFixturesDir(file) };
  try {
    for (const [index, testCase] of spec.tests.entries()) {
      if (options.filter !== undefined && !testCase.name.includes(options.filter)) continue;
      const line = yaml.at(['tests', index]).line;
      if (testCase.skip === true) {
        result.cases.push({ name: testCase.name, line, status: 'skipped', reasons: [], durationMs: 0 });
        continue;
      }
      const started = performance.now();
      let reasons: string[];
      try {
        reasons = await runChannelCase(testCase, index, { spec, yaml, loaded, channel, inputCtx, mappingSources, options, written: result.written });
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        reasons = [`input: ${err.message}`];
      }
      result.cases.push({ name: testCase.name, line, status: reasons.length === 0 ? 'passed' : 'failed', reasons, durationMs: performance.now() - started });
    }
  } finally {
    await Promise.allSettled(channel.destinations.map((d) => d.close()));
  }
  return result;
}

interface ChannelCaseContext {
  spec: ChannelTestFile;
  yaml: PositionedYaml;
  loaded: LoadedChannel;
  channel: RuntimeChannel;
  inputCtx: InputContext;
  mappingSources: Map<string, MappingSource>;
  options: TestRunOptions;
  written: string[];
}

function lowerCaseHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

function responseReason(status: number, body: string | undefined): string {
  return `${status}${body !== undefined && body !== '' ? ` ${body.length > 200 ? `${body.slice(0, 200)}…` : body}` : ''}`;
}

async function runChannelCase(testCase: ChannelTestCase, index: number, ctx: ChannelCaseContext): Promise<string[]> {
  const { channel, loaded, spec } = ctx;
  const source = channel.source;
  const nowText = testCase.now ?? spec.defaults?.now;
  const now = nowText !== undefined ? new Date(nowText) : new Date();
  const expect = testCase.expect;
  const reasons: string[] = [];

  // 1. The request, signed when asked.
  const body = await resolveBody(testCase.request.body, ctx.inputCtx);
  const headers: Record<string, string> = {
    'content-type': source.bodyFormat === 'form' ? 'application/x-www-form-urlencoded' : 'application/json',
    ...lowerCaseHeaders(spec.defaults?.headers),
    ...lowerCaseHeaders(testCase.request.headers),
  };
  if (testCase.request.sign ?? spec.defaults?.sign ?? false) {
    const signer = signers[loaded.config.source.kind];
    if (signer === undefined) {
      return [`request.sign: the test runner cannot sign ${loaded.config.source.kind} requests; give the signature header in request.headers`];
    }
    Object.assign(headers, signer(loaded.config.source, body.raw));
  }
  const query = new URLSearchParams(testCase.request.query ?? {});
  const sourcePath = source.path ?? `/webhooks/${channel.id}`;
  const request: InboundRequest = {
    method: testCase.request.method,
    url: `${sourcePath}${query.size > 0 ? `?${query.toString()}` : ''}`,
    headers,
    query,
    rawBody: body.raw,
  };

  // 2. The edge: authenticity, then the envelope.
  let refusal: { status: number; body?: string | undefined } | undefined;
  if (body.raw.length > source.maxBodyBytes) refusal = { status: 413, body: `the body is larger than max_body_bytes (${source.maxBodyBytes})` };
  refusal ??= source.authenticate(request) ?? undefined;
  if (refusal === undefined) {
    const decoded = decodeRawBody(source, body.raw);
    const reason = decoded.ok ? source.checkEnvelope(decoded.value) : decoded.reason;
    if (reason !== null) refusal = { status: 400, body: reason };
  }
  if (expect.rejected !== undefined) {
    if (refusal === undefined) return [`rejected: expected the edge to refuse the request, but it was accepted (${source.acceptedResponse.status})`];
    if (expect.rejected.status !== undefined && refusal.status !== expect.rejected.status) {
      reasons.push(`rejected: expected status ${expect.rejected.status}, got ${responseReason(refusal.status, refusal.body)}`);
    }
    if (expect.rejected.message_contains !== undefined && !(refusal.body ?? '').includes(expect.rejected.message_contains)) {
      reasons.push(`rejected: the answer does not contain ${JSON.stringify(expect.rejected.message_contains)}: ${responseReason(refusal.status, refusal.body)}`);
    }
    return reasons;
  }
  if (refusal !== undefined) {
    const hint = refusal.status === 401 || refusal.status === 403 ? ' (sign: true signs the body with the channel\'s secret)' : '';
    return [`the edge refused the request: ${responseReason(refusal.status, refusal.body)}${hint}`];
  }

  // 3. Parse.
  const parsed = await source.parse(body.raw, { channelId: channel.id, receivedAt: now });
  if (expect.messages !== undefined && parsed.messages.length !== expect.messages) {
    reasons.push(`messages: expected ${expect.messages}, the webhook holds ${describeParse(parsed)}`);
  }
  const needsMessage = expect.filtered !== undefined || expect.not_routed !== undefined || expect.destinations !== undefined;
  if (!needsMessage) return reasons;
  let message: CanonicalMessage | undefined;
  if (testCase.message !== undefined) {
    message = parsed.messages[testCase.message];
    if (message === undefined) return [...reasons, `message: ${testCase.message} is out of range; the webhook holds ${describeParse(parsed)}`];
  } else if (parsed.messages.length === 1) {
    message = parsed.messages[0];
  } else if (parsed.messages.length > 1) {
    return [...reasons, `the webhook holds ${describeParse(parsed)}: say which one the expectations are about with message: <0 to ${parsed.messages.length - 1}>`];
  }

  // 4. Filter.
  let filtered = false;
  if (message !== undefined && channel.filter !== undefined) {
    try {
      filtered = !(await channel.filter.evaluate(message, { now }));
    } catch (err) {
      return [...reasons, `the channel filter failed on this message (the gateway would deliver it unfiltered and log a warning): ${describeFailure(err)}`];
    }
  }
  if (expect.filtered !== undefined && message !== undefined && filtered !== expect.filtered) {
    reasons.push(expect.filtered ? 'filtered: expected the channel filter to drop the message, but it passes' : 'filtered: the channel filter drops the message');
  }

  // 5. Routing and each destination's output.
  const known = new Set(channel.destinations.map((d) => d.name));
  for (const name of [...(expect.not_routed ?? []), ...Object.keys(expect.destinations ?? {})]) {
    if (!known.has(name)) reasons.push(`destination "${name}" is not in the channel; its destinations: ${[...known].join(', ')}`);
  }
  for (const destination of channel.destinations) {
    let routed = message !== undefined && !filtered;
    let whyNot = message === undefined ? `the webhook holds ${describeParse(parsed)}` : 'the channel filter drops the message';
    const when = channel.routing.get(destination.name);
    if (routed && when !== undefined && message !== undefined) {
      try {
        routed = Boolean(await when.evaluate(message, { now }));
        whyNot = 'its `when` is false for this message';
      } catch (err) {
        reasons.push(`destinations[${destination.name}].when failed on this message (the gateway would route it anyway and log a warning): ${describeFailure(err)}`);
        routed = true;
      }
    }
    const mustNotReach = expect.not_routed?.includes(destination.name) === true;
    if (mustNotReach && routed) reasons.push(`not_routed: the message reaches ${destination.name}`);
    const expectation = expect.destinations?.[destination.name];
    if (expectation === undefined) continue;
    const label = `${destination.name}: `;
    let outcome: Outcome;
    if (!routed) {
      outcome = { kind: 'dropped', reason: `it never reaches ${destination.name}: ${whyNot}` };
    } else {
      const bindings = { ...spec.defaults?.bindings?.[destination.name], ...testCase.bindings?.[destination.name] };
      try {
        const rendered = await destination.render(message as CanonicalMessage, { now, bindings, deliveryId: `test-${index}` });
        outcome = rendered.dropped
          ? { kind: 'dropped', reason: `the ${destination.name} mapping returned nothing` }
          : { kind: 'output', value: typeof rendered.body === 'string' ? rendered.body : (JSON.parse(JSON.stringify(rendered.body) ?? 'null') as unknown) };
      } catch (err) {
        outcome = { kind: 'error', error: err instanceof SwitchboardError ? err : new SwitchboardError(classify(err).code, classify(err).message) };
      }
    }
    const found = await checkExpectation(expectation, outcome, {
      testFile: ctx.yaml.file,
      at: (p) => ctx.yaml.at(p),
      expectPath: ['tests', index, 'expect', 'destinations', destination.name],
      input: message,
      mapping: ctx.mappingSources.get(destination.name),
      update: ctx.options.update === true,
      written: ctx.written,
    });
    reasons.push(...found.map((r) => label + r));
  }
  return reasons;
}

