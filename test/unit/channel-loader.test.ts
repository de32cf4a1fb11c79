import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildChannelSchema, channelJsonSchema, channelRetention } from '../../src/channels/channel-schema.js';
import { interpolateString } from '../../src/channels/interpolate.js';
import { loadChannelDirectory, loadChannelFile } from '../../src/channels/load-channel.js';
import { destinationBaseShape, type ConnectorRegistry, type DestinationConnector, type SourceConnector } from '../../src/connectors/types.js';
import { ConfigError, formatIssue } from '../../src/core/errors.js';

// ---------------------------------------------------------------------------------------------
// A small fake registry: one source, one destination.
// ---------------------------------------------------------------------------------------------

const testSource: SourceConnector = {
  kind: 'test_source',
  summary: 'A source for tests.',
  status: 'experimental',
  since: '0.1.0',
  configSchema: z
    .object({
      kind: z.literal('test_source'),
      path: z.string().startsWith('/').optional().describe('Webhook path. Default: /webhooks/<channel id>.'),
      app_secret: z.string().min(1),
      max_body_bytes: z.number().int().min(1).default(1_048_576),
    })
    .strict(),
  create() {
    throw new Error('not used in these tests');
  },
};

const testDest: DestinationConnector = {
  kind: 'test_dest',
  summary: 'A destination for tests.',
  status: 'experimental',
  since: '0.1.0',
  configSchema: z
    .object({
      kind: z.literal('test_dest'),
      ...destinationBaseShape,
      url: z.string(),
      port: z.number().int().min(1).max(65_535).default(2575),
      tls: z.boolean().default(false),
    })
    .strict(),
  create() {
    throw new Error('not used in these tests');
  },
};

const registry: ConnectorRegistry = { sources: [testSource], destinations: [testDest] };
const env = { APP_SECRET: 's3cret-value', DEST_URL: 'http://ehr.example' };

// ---------------------------------------------------------------------------------------------
// Temp dirs and helpers
// ---------------------------------------------------------------------------------------------

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-channels-'));
  await write('mappings/to-ehr.jsonata', '{ "resourceType": "Communication", "id": id }\n');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  return file;
}

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

/** A valid channel, with lines replaceable by the tests. */
const validChannel = (overrides: { source?: string[]; destination?: string[]; top?: string[] } = {}): string =>
  lines(
    ...(overrides.top ?? ['id: lab-orders']),
    'source:',
    ...(overrides.source ?? ['  kind: test_source', '  path: /webhooks/test', '  app_secret: ${APP_SECRET}']),
    'destinations:',
    ...(overrides.destination ?? ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/to-ehr.jsonata', '    url: ${DEST_URL}']),
  );

async function failure(load: Promise<unknown>): Promise<ConfigError> {
  try {
    await load;
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

async function issues(load: Promise<unknown>): Promise<string[]> {
  return (await failure(load)).issues.map(formatIssue);
}

async function fileIssues(name: string, text: string, environment: Record<string, string | undefined> = env): Promise<[string, string[]]> {
  const file = await write(name, text);
  return [file, await issues(loadChannelFile(file, { registry, env: environment }))];
}

// ---------------------------------------------------------------------------------------------
// Valid channels
// ---------------------------------------------------------------------------------------------

describe('loadChannelFile: valid channels', () => {
  it('loads, interpolates, applies defaults and resolves mapping paths', async () => {
    const file = await write(
      'channels/lab-orders.yaml',
      lines(
        'id: lab-orders',
        'description: costs $${PRICE} per ${UNIT:-message}',
        'source:',
        '  kind: test_source',
        '  path: /webhooks/test',
        '  app_secret: ${APP_SECRET}',
        "filter: kind = 'text'",
        'destinations:',
        '  - name: ehr',
        '    kind: test_dest',
        '    mapping: ../mappings/to-ehr.jsonata',
        '    url: ${FHIR_URL:-http://localhost:8103/fhir/R4}',
      ),
    );
    const channel = await loadChannelFile(file, { registry, env });
    expect(channel.id).toBe('lab-orders');
    expect(channel.file).toBe(file);
    expect(channel.mappingFiles).toEqual({ ehr: path.join(dir, 'mappings/to-ehr.jsonata') });
    expect(channel.config).toEqual({
      id: 'lab-orders',
      description: 'costs ${PRICE} per message',
      source: { kind: 'test_source', path: '/webhooks/test', app_secret: 's3cret-value', max_body_bytes: 1_048_576 },
      filter: "kind = 'text'",
      destinations: [
        {
          name: 'ehr',
          kind: 'test_dest',
          mapping: '../mappings/to-ehr.jsonata',
          url: 'http://localhost:8103/fhir/R4',
          port: 2575,
          tls: false,
          retry: { attempts: 10, initial_delay_ms: 1000, max_delay_ms: 300_000, max_age_ms: 86_400_000 },
          circuit_breaker: { enabled: true, failure_threshold: 5, open_ms: 30_000, max_open_ms: 600_000 },
          ordering: 'none',
          ordering_window_ms: 2000,
          concurrency: 8,
        },
      ],
    });
  });

  it('defaults the id to the file name', async () => {
    const file = await write('channels/whatsapp-to-ehr.yaml', validChannel({ top: ['description: no id'] }));
    const channel = await loadChannelFile(file, { registry, env });
    expect(channel.id).toBe('whatsapp-to-ehr');
    expect(channel.config.id).toBe('whatsapp-to-ehr');
  });

  it('gives an unquoted bare ${VAR} the type the schema expects; quoted stays a string', async () => {
    const file = await write(
      'channels/typed.yaml',
      validChannel({
        destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/to-ehr.jsonata', '    url: ${DEST_URL}', '    port: ${LIS_PORT}', '    tls: ${LIS_TLS}'],
      }),
    );
    const channel = await loadChannelFile(file, { registry, env: { ...env, LIS_PORT: '6661', LIS_TLS: 'true' } });
    expect(channel.config.destinations[0]).toMatchObject({ port: 6661, tls: true });

    const quoted = await write('channels/quoted.yaml', validChannel({ destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/to-ehr.jsonata', '    url: x', '    port: "${LIS_PORT}"'] }));
    expect(await issues(loadChannelFile(quoted, { registry, env: { ...env, LIS_PORT: '6661' } }))).toEqual([
      `${quoted}:11:11: destinations[0].port must be a number, not a string (from \${LIS_PORT})`,
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Problems, each at file:line:column
// ---------------------------------------------------------------------------------------------

describe('loadChannelFile: problems with positions', () => {
  it('reports YAML syntax errors', async () => {
    const [file, found] = await fileIssues('channels/broken.yaml', lines('id: broken', 'source: { kind: test_source', 'destinations: []'));
    expect(found).toEqual([`${file}:3:1: YAML syntax error: Flow map in block collection must be sufficiently indented and end with a }`]);
  });

  it('reports duplicate keys', async () => {
    const [file, found] = await fileIssues('channels/dup.yaml', validChannel({ top: ['id: one', 'id: two'] }));
    expect(found).toEqual([`${file}:2:1: duplicate key "id": a key may appear only once in a mapping; remove or merge the repeated one`]);
  });

  it('reports an unknown top-level key at the key, with the allowed keys', async () => {
    const [file, found] = await fileIssues('channels/unknown.yaml', validChannel({ top: ['id: lab', 'filtre: "true"'] }));
    expect(found).toEqual([
      `${file}:2:1: unknown key "filtre" in the channel (did you mean "filter"?); allowed keys: id, description, source, media, retention, filter, destinations`,
    ]);
  });

  it('reports unknown nested keys at the key, with the connector’s allowed keys', async () => {
    const [file, found] = await fileIssues(
      'channels/nested.yaml',
      validChannel({
        source: ['  kind: test_source', '  path: /webhooks/test', '  app_secret: ${APP_SECRET}', '  verbose: true'],
        destination: [
          '  - name: ehr',
          '    kind: test_dest',
          '    mapping: ../mappings/to-ehr.jsonata',
          '    url: x',
          '    retry: { attempts: 3, max_delay: 10 }',
        ],
      }),
    );
    expect(found).toEqual([
      `${file}:6:3: unknown key "verbose" in source (test_source); allowed keys: kind, path, app_secret, max_body_bytes`,
      `${file}:12:27: unknown key "max_delay" in destinations[0].retry (did you mean "max_delay_ms"?); allowed keys: attempts, initial_delay_ms, max_delay_ms, max_age_ms`,
    ]);
  });

  it('reports a wrong type at the value', async () => {
    const [file, found] = await fileIssues(
      'channels/types.yaml',
      validChannel({
        destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/to-ehr.jsonata', '    url: x', '    concurrency: eight', '    retry:', '      attempts: 0'],
      }),
    );
    expect(found).toEqual([
      `${file}:11:18: destinations[0].concurrency must be a number, not the string "eight"`,
      `${file}:13:17: destinations[0].retry.attempts must be at least 1 (got 0)`,
    ]);
  });

  it('reports a missing required key at the parent mapping', async () => {
    const [file, found] = await fileIssues(
      'channels/missing.yaml',
      validChannel({
        source: ['  kind: test_source', '  path: /webhooks/test'],
        destination: ['  - name: ehr', '    kind: test_dest', '    url: x'],
      }),
    );
    expect(found).toEqual([
      `${file}:3:3: missing required key "app_secret" (a string) in source (test_source)`,
      `${file}:6:5: missing required key "mapping" (a string) in destinations[0] (test_dest)`,
    ]);
  });

  it('reports a missing top-level key at the top mapping', async () => {
    const [file, found] = await fileIssues('channels/nodest.yaml', lines('id: nodest', 'source:', '  kind: test_source', '  path: /p', '  app_secret: ${APP_SECRET}'));
    expect(found).toEqual([`${file}:1:1: missing required key "destinations" (a list) in the channel`]);
  });

  it('reports payload retention longer than metadata retention at the payloads key, and a retention that is not a duration', async () => {
    const [file, found] = await fileIssues('channels/keep.yaml', validChannel({ top: ['id: keep', 'retention:', '  payloads: 90d', '  metadata: 4w'] }));
    expect(found).toEqual([`${file}:3:13: payloads are kept 90d (90 days), longer than the metadata that describes them (4w, 28 days); make payloads at most metadata`]);
    const [file2, found2] = await fileIssues('channels/keep2.yaml', validChannel({ top: ['id: keep2', 'retention: { payloads: 30 days }'] }));
    expect(found2).toHaveLength(1);
    expect(found2[0]).toMatch(new RegExp(`^${file2.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:24: .*30d, 8w or 1y`));
  });

  it('gives a channel without retention the defaults, and one with retention its days', async () => {
    const plain = await loadChannelFile(await write('channels/plain.yaml', validChannel({ top: ['id: plain'] })), { registry, env });
    expect(channelRetention(plain.config.retention)).toEqual({ payloadDays: 30, metadataDays: 365 });
    const short = await loadChannelFile(await write('channels/short.yaml', validChannel({ top: ['id: short', 'retention: { payloads: 2w, metadata: 1y }'] })), { registry, env });
    expect(channelRetention(short.config.retention)).toEqual({ payloadDays: 14, metadataDays: 365 });
  });

  it('reports an empty destinations list', async () => {
    const [file, found] = await fileIssues('channels/empty.yaml', validChannel({ destination: [] }).replace('destinations:', 'destinations: []'));
    expect(found).toEqual([`${file}:6:15: a channel needs at least one destination: add one under "destinations"`]);
  });

  it('reports an unknown kind with the known kinds, and a missing kind', async () => {
    const [file, found] = await fileIssues(
      'channels/kinds.yaml',
      validChannel({
        source: ['  kind: test_sourse', '  path: /webhooks/test'],
        destination: ['  - name: ehr', '    mapping: ../mappings/to-ehr.jsonata'],
      }),
    );
    expect(found).toEqual([
      `${file}:3:9: unknown source kind "test_sourse" (did you mean "test_source"?); known source kinds: test_source`,
      `${file}:6:5: missing required key "kind" in destinations[0]; known destination kinds: test_dest`,
    ]);
  });

  it('reports a missing environment variable at the reference, under CONFIG_ENV_MISSING', async () => {
    const file = await write('channels/env.yaml', validChannel({ top: ['id: env', 'description: "sent to ${WHO}"'] }));
    const error = await failure(loadChannelFile(file, { registry, env: { DEST_URL: 'x' } }));
    expect(error.code).toBe('CONFIG_ENV_MISSING');
    expect(error.issues.map(formatIssue)).toEqual([
      `${file}:2:23: environment variable WHO is not set`,
      `${file}:6:15: environment variable APP_SECRET is not set`,
    ]);
  });

  it('reports literal secrets', async () => {
    const [file, found] = await fileIssues(
      'channels/secret.yaml',
      validChannel({ source: ['  kind: test_source', '  path: /webhooks/test', '  app_secret: hunter2'] }).replace('    url: ${DEST_URL}', '    url: x\n    api_token: ${TOKEN:-abc}'),
    );
    expect(found).toEqual([
      `${file}:5:15: "app_secret" is a secret: write secrets as \${VAR}; secrets are read from the environment only`,
      `${file}:11:5: unknown key "api_token" in destinations[0] (test_dest); allowed keys: kind, name, mapping, when, retry, circuit_breaker, ordering, ordering_window_ms, concurrency, url, port, tls`,
      `${file}:11:16: "api_token" is a secret and cannot have a default in the file: write secrets as \${VAR}; secrets are read from the environment only`,
    ]);
  });

  it('reports bad ${} syntax at the reference', async () => {
    const [file, found] = await fileIssues(
      'channels/syntax.yaml',
      validChannel({ top: ['id: syntax', 'description: a ${lower} b ${HOST:8080} c ${} d ${OPEN'] }),
    );
    expect(found).toEqual([
      `${file}:2:16: "\${lower}" is not a valid reference: variable names are upper-case letters, digits and _ (e.g. \${FHIR_BASE_URL}); write "$\${" for a literal "\${"`,
      `${file}:2:27: "\${HOST:8080}" is not a valid reference: write \${HOST:-8080} for a default value`,
      `${file}:2:42: "\${}" names no variable: write \${NAME} or \${NAME:-default}, or "$\${" for a literal "\${"`,
      `${file}:2:48: unclosed "\${": end the reference with "}", or write "$\${" for a literal "\${"`,
    ]);
  });

  it('reports a missing mapping at the mapping key of the channel, with the file meant or the files there', async () => {
    const [file, found] = await fileIssues(
      'channels/nomap.yaml',
      validChannel({ destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/nope.jsonata', '    url: x'] }),
    );
    expect(found).toEqual([
      `${file}:9:14: mapping file not found: ${path.join(dir, 'mappings/nope.jsonata')} (.jsonata files there: to-ehr.jsonata) (paths are relative to the channel file)`,
    ]);
    const [typo, misspelt] = await fileIssues(
      'channels/typo.yaml',
      validChannel({ destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/to-ehrr.jsonata', '    url: x'] }),
    );
    expect(misspelt).toEqual([
      `${typo}:9:14: mapping file not found: ${path.join(dir, 'mappings/to-ehrr.jsonata')} (did you mean "to-ehr.jsonata"?) (paths are relative to the channel file)`,
    ]);
    const [folder, noFolder] = await fileIssues(
      'channels/folder.yaml',
      validChannel({ destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mapings/to-ehr.jsonata', '    url: x'] }),
    );
    expect(noFolder).toEqual([
      `${folder}:9:14: mapping file not found: ${path.join(dir, 'mapings/to-ehr.jsonata')} (and its folder does not exist) (paths are relative to the channel file)`,
    ]);
  });

  it('reports a mapping that does not compile at its own line:column', async () => {
    const mapping = await write('mappings/bad.jsonata', '{\n  "a": id,\n  "b": (1 + )\n}\n');
    const [, found] = await fileIssues(
      'channels/badmap.yaml',
      validChannel({ destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/bad.jsonata', '    url: x'] }),
    );
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(new RegExp(`^${escapeRegExp(mapping)}:3:13: JSONata S0211: `));
  });

  it('reports a filter that does not compile inside the YAML scalar', async () => {
    const [file, found] = await fileIssues('channels/filter.yaml', validChannel({ top: ['id: filter', "filter: kind = = 'text'"] }));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(new RegExp(`^${escapeRegExp(file)}:2:16: filter does not compile: JSONata S0211: `));
  });

  it('reports duplicate destination names at the second name', async () => {
    const [file, found] = await fileIssues(
      'channels/dupdest.yaml',
      validChannel({
        destination: [
          '  - name: ehr',
          '    kind: test_dest',
          '    mapping: ../mappings/to-ehr.jsonata',
          '    url: x',
          '  - name: ehr',
          '    kind: test_dest',
          '    mapping: ../mappings/to-ehr.jsonata',
          '    url: y',
        ],
      }),
    );
    expect(found).toEqual([`${file}:11:11: destination name "ehr" is already used by destinations[0]; give each destination of a channel its own name`]);
  });

  it('still checks mappings when the schema fails', async () => {
    const [file, found] = await fileIssues(
      'channels/both.yaml',
      validChannel({ destination: ['  - name: ehr', '    kind: test_dest', '    mapping: ../mappings/nope.jsonata', '    concurrency: 0'] }),
    );
    expect(found).toEqual([
      `${file}:7:5: missing required key "url" (a string) in destinations[0] (test_dest)`,
      `${file}:9:14: mapping file not found: ${path.join(dir, 'mappings/nope.jsonata')} (.jsonata files there: to-ehr.jsonata) (paths are relative to the channel file)`,
      `${file}:10:18: destinations[0].concurrency must be at least 1 (got 0)`,
    ]);
  });

  it('reports every problem of a file at once, in position order', async () => {
    const [file, found] = await fileIssues(
      'channels/many.yaml',
      lines('id: Many', 'source:', '  kind: test_source', '  path: webhooks', '  app_secret: ${NOPE}', 'destinations:', '  - name: ehr', '    kind: test_dest', '    mapping: m.jsonata', '    url: 1'),
    );
    expect(found).toEqual([
      `${file}:1:5: id "Many" is not valid: it must be lower-case letters, digits and -, starting with a letter, at most 63 characters`,
      `${file}:4:9: source.path "webhooks" is not valid: it must start with "/"`,
      `${file}:5:15: environment variable NOPE is not set`,
      `${file}:9:14: mapping file not found: ${path.join(dir, 'channels/m.jsonata')} (paths are relative to the channel file)`,
      `${file}:10:10: destinations[0].url must be a string, not the integer 1`,
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------------------------

describe('loadChannelDirectory', () => {
  it('loads every .yaml/.yml file in name order', async () => {
    await write('channels/b.yml', validChannel({ top: [], source: ['  kind: test_source', '  path: /b', '  app_secret: ${APP_SECRET}'] }));
    await write('channels/a.yaml', validChannel({ top: [], source: ['  kind: test_source', '  path: /a', '  app_secret: ${APP_SECRET}'] }));
    await write('channels/notes.txt', 'not a channel');
    const channels = await loadChannelDirectory(path.join(dir, 'channels'), { registry, env });
    expect(channels.map((c) => c.id)).toEqual(['a', 'b']);
  });

  it('collects the issues of all files, with duplicate ids and source paths', async () => {
    const channels = path.join(dir, 'channels');
    const a = await write('channels/a.yaml', validChannel({ top: ['id: same'] }));
    const b = await write('channels/b.yaml', validChannel({ top: ['id: same'] }));
    const c = await write('channels/c.yaml', lines('id: [broken'));
    const found = await issues(loadChannelDirectory(channels, { registry, env }));
    expect(found).toEqual([
      `${b}:1:5: channel id "same" is already used by ${a}; give each channel its own id`,
      `${b}:4:9: source path "/webhooks/test" is already served by channel "same" (${a}); give each channel its own path`,
      expect.stringMatching(new RegExp(`^${escapeRegExp(c)}:2:1: YAML syntax error: `)),
    ]);
  });

  it('counts a source without a path as serving /webhooks/<channel id>', async () => {
    await write('channels/a.yaml', validChannel({ top: ['id: alpha'], source: ['  kind: test_source', '  path: /webhooks/beta', '  app_secret: ${APP_SECRET}'] }));
    const b = await write('channels/b.yaml', validChannel({ top: ['id: beta'], source: ['  kind: test_source', '  app_secret: ${APP_SECRET}'] }));
    expect(await issues(loadChannelDirectory(path.join(dir, 'channels'), { registry, env }))).toEqual([
      `${b}:3:3: source path "/webhooks/beta" (the default for this channel) is already served by channel "alpha" (${path.join(dir, 'channels/a.yaml')}); give each channel its own path`,
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Interpolation, schema, JSON Schema
// ---------------------------------------------------------------------------------------------

describe('interpolateString', () => {
  it('substitutes, defaults (unset or empty) and escapes', () => {
    expect(interpolateString('${A}/${B:-b}/${C:-c}/$${A}/$$/${D:-}', { A: 'a', C: '' })).toEqual({
      value: 'a/b/c/${A}/$$/',
      problems: [],
      references: ['A', 'B', 'C', 'D'],
    });
  });
});

describe('buildChannelSchema', () => {
  it('rejects a connector whose schema does not carry its kind literal', () => {
    const wrong: SourceConnector = { ...testSource, kind: 'other_source' };
    expect(() => buildChannelSchema({ sources: [wrong], destinations: [testDest] })).toThrow(/kind: z.literal\('other_source'\)/);
  });
});

describe('channelJsonSchema', () => {
  it('is strict everywhere and lists the kinds', () => {
    const schema = channelJsonSchema(registry) as Record<string, unknown> & {
      properties: Record<string, { oneOf?: { properties: { kind: { const: string } }; additionalProperties: boolean }[]; items?: { oneOf: { properties: Record<string, unknown>; additionalProperties: boolean; required: string[] }[] } }>;
    };
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['source', 'destinations']);
    expect(Object.keys(schema.properties)).toEqual(['id', 'description', 'source', 'media', 'retention', 'filter', 'destinations']);

    const sources = schema.properties['source']?.oneOf ?? [];
    expect(sources.map((s) => s.properties.kind.const)).toEqual(['test_source']);
    expect(sources.every((s) => s.additionalProperties === false)).toBe(true);

    const destinations = schema.properties['destinations']?.items?.oneOf ?? [];
    expect(destinations.map((d) => (d.properties['kind'] as { const: string }).const)).toEqual(['test_dest']);
    expect(destinations[0]?.additionalProperties).toBe(false);
    // io: 'input' — fields with defaults are optional for the editor.
    expect(destinations[0]?.required).toEqual(['kind', 'name', 'mapping', 'url']);
    expect((destinations[0]?.properties['retry'] as { additionalProperties: boolean }).additionalProperties).toBe(false);
    // An unquoted ${VAR} is accepted where a number or boolean is expected.
    expect(destinations[0]?.properties['port']).toEqual({
      default: 2575,
      anyOf: [
        { type: 'integer', minimum: 1, maximum: 65_535 },
        { type: 'string', pattern: '^\\$\\{[A-Z_][A-Z0-9_]*(:-[^}]*)?\\}$', description: 'An environment variable, e.g. ${LIS_PORT}.' },
      ],
    });
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

