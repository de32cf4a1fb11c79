/**
 * YAML and schema errors in plain words at the offending line: indentation mistakes (the parser
 * itself reports the line above), and `auth` blocks and rocketchat_poll rooms that now name their
 * variant with `kind` like every other block, the old `type` still loading with a warning.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadChannelFile } from '../../src/channels/load-channel.js';
import { channelJsonSchema } from '../../src/channels/channel-schema.js';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import { ConfigError } from '../../src/core/errors.js';
import { parseYamlWithPositions } from '../../src/mapping-tests/mapping-test-yaml.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-yaml-'));
  await writeFile(path.join(dir, 'm.jsonata'), "{ 'resourceType': 'Communication' }");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const env = { WHATSAPP_APP_SECRET: 'a'.repeat(20), WHATSAPP_VERIFY_TOKEN: 'b'.repeat(20), FHIR_BASE_URL: 'http://127.0.0.1:1/fhir', EHR_TOKEN: 't'.repeat(20) };

function channel(sourceBlock: string, auth = ''): string {
  return `id: c
source:
${sourceBlock}
destinations:
  - name: ehr
    kind: fhir_r4
    base_url: \${FHIR_BASE_URL}
    mapping: m.jsonata
${auth}`;
}

async function load(text: string) {
  const file = path.join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, text);
  try {
    return { channel: await loadChannelFile(file, { registry: createConnectorRegistry(), env }), issues: [] };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { channel: undefined, issues: err.issues };
  }
}

describe('indentation errors', () => {
  it('a key indented deeper than its siblings is reported at its own line, in plain words', async () => {
    const r = await load(channel('  kind: whatsapp_cloud\n  path: /webhooks/c\n   app_secret: ${WHATSAPP_APP_SECRET}\n  verify_token: ${WHATSAPP_VERIFY_TOKEN}'));
    expect(r.issues).toHaveLength(1);
    expect(r.issues[0]).toMatchObject({ line: 5, column: 4 });
    expect(r.issues[0]!.message).toBe(
      'indentation: "app_secret" is indented 3 spaces, deeper than "path" on line 4 (2 spaces), which already has a value; keys of the same block start in the same column: indent it 2 spaces',
    );
  });

  it('a key indented less than its siblings, and a tab', async () => {
    const less = await load(channel('  kind: whatsapp_cloud\n path: /webhooks/c'));
    expect(less.issues[0]).toMatchObject({ line: 4 });
    expect(less.issues[0]!.message).toContain('indentation: "path" is indented 1 space, but the keys of its block above are indented 2 spaces');
    const tab = await load(channel('\tkind: whatsapp_cloud'));
    expect(tab.issues[0]).toMatchObject({ line: 3 });
    expect(tab.issues[0]!.message).toContain('indented with a tab; YAML indents with spaces only');
  });

  it('the same wording in test files', () => {
    const parsed = parseYamlWithPositions('x.test.yaml', 'tests:\n  - name: a\n     input: { json: 1 }\n');
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.issues[0]).toMatchObject({ line: 3 });
    expect(parsed.issues[0]!.message).toContain('indentation: "input" is indented 5 spaces, deeper than "name" on line 2 (4 spaces)');
  });
});

describe('auth blocks name their variant with kind', () => {
  it('kind: bearer loads', async () => {
    const r = await load(channel('  kind: whatsapp_cloud\n  app_secret: ${WHATSAPP_APP_SECRET}\n  verify_token: ${WHATSAPP_VERIFY_TOKEN}', '    auth: { kind: bearer, token: "${EHR_TOKEN}" }\n'));
    expect(r.issues).toEqual([]);
    expect(r.channel?.config.destinations[0]).toMatchObject({ auth: { kind: 'bearer' } });
    expect(r.channel?.warnings).toEqual([]);
  });

  it('the old spelling type: bearer still loads, with a warning at the key that says what to write', async () => {
    const r = await load(channel('  kind: whatsapp_cloud\n  app_secret: ${WHATSAPP_APP_SECRET}\n  verify_token: ${WHATSAPP_VERIFY_TOKEN}', '    auth:\n      type: bearer\n      token: ${EHR_TOKEN}\n'));
    expect(r.issues).toEqual([]);
    expect(r.channel?.config.destinations[0]).toMatchObject({ auth: { kind: 'bearer' } });
    expect(r.channel?.warnings?.[0]).toMatchObject({ line: 12 });
    expect(r.channel?.warnings?.[0]?.message).toContain('destinations[0].auth: "type" is the old spelling; write "kind"');
  });

  it('rocketchat_poll rooms name their kind too; the old type: channel still loads, with a warning at the key', async () => {
    const poll = (room: string) =>
      channel(`  kind: rocketchat_poll\n  server_url: https://chat.clinic.example\n  auth_token: \${EHR_TOKEN}\n  user_id: u1\n  rooms:\n    - ${room}`);
    const now = await load(poll('{ id: GENERAL, kind: group }'));
    expect(now.issues).toEqual([]);
    expect(now.channel?.config.source).toMatchObject({ rooms: [{ id: 'GENERAL', kind: 'group' }] });
    expect(now.channel?.warnings).toEqual([]);
    const old = await load(poll('{ id: GENERAL, type: group }'));
    expect(old.issues).toEqual([]);
    expect(old.channel?.config.source).toMatchObject({ rooms: [{ id: 'GENERAL', kind: 'group' }] });
    expect(old.channel?.warnings?.[0]).toMatchObject({ line: 8 });
    expect(old.channel?.warnings?.[0]?.message).toContain('source.rooms[0]: "type" is the old spelling; write "kind"');
  });

  it('no block of the channel schema names its variant with another word than kind', () => {
    // Every property that picks one of a closed set of variants (a const or an enum of words).
    const variantKeys = new Set<string>();
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (typeof node !== 'object' || node === null) return;
      const props = (node as { properties?: Record<string, { const?: unknown; enum?: unknown[] }> }).properties;
      for (const [key, value] of Object.entries(props ?? {})) {
        if (/^(type|kind|variant|mode|style)$/.test(key) && (value.const !== undefined || value.enum !== undefined)) variantKeys.add(key);
      }
      Object.values(node).forEach(walk);
    };
    walk(channelJsonSchema(createConnectorRegistry()));
    expect([...variantKeys]).toEqual(['kind']);
  });

  it('a missing kind lists the kinds to choose from', async () => {
    const r = await load(channel('  kind: whatsapp_cloud\n  app_secret: ${WHATSAPP_APP_SECRET}\n  verify_token: ${WHATSAPP_VERIFY_TOKEN}', '    auth: { token: "${EHR_TOKEN}" }\n'));
    expect(r.issues[0]?.message).toMatch(/missing required key "kind" in destinations\[0\]\.auth.*none, bearer, basic/);
  });
});
