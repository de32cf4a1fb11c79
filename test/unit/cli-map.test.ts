/**
 * `switchboard map` as a new analyst runs it, on a copy of the shipped channels, mappings and
 * fixtures: a raw webhook is recognised (or refused with the flag to give), and the output is
 * rendered and checked as the channel destination that uses the mapping would, with the
 * mapping's file:line:column on a problem.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let project: string;

async function map(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(['map', ...argv], { stdout: (t) => (out += t), stderr: (t) => (err += t), cwd: project, env: {} });
  return { code, out, err };
}

beforeAll(async () => {
  project = await mkdtemp(path.join(os.tmpdir(), 'sb-map-'));
  await writeFile(path.join(project, 'package.json'), '{"name":"demo"}');
  for (const dir of ['channels', 'mappings', 'fixtures']) await cp(path.join(ROOT, dir), path.join(project, dir), { recursive: true });
});
afterAll(async () => {
  await rm(project, { recursive: true, force: true });
});

describe('switchboard map', () => {
  it('recognises a raw WhatsApp webhook and maps it as the channel destination would', async () => {
    const r = await map(['-m', 'mappings/whatsapp-to-communication.jsonata', '-i', 'fixtures/whatsapp/sample_text.json', '--now', '2025-06-08T21:00:00Z']);
    expect(r.err).toContain('input: a raw whatsapp_cloud webhook');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out) as { identifier: { system?: string; value?: string }[]; sent?: string; payload: { contentString?: string }[] };
    expect(out.identifier[0]?.value).toBe('wamid.SAMPLE-TEXT-0001');
    expect(out.identifier[0]?.system).toMatch(/^https:\/\//);
    expect(out.sent).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    expect(out.payload[0]?.contentString).toBe('Could I move my Thursday appointment to the afternoon?');
    expect(r.err).toMatch(/✓ valid for destination ehr \(fhir_r4\) of channels\/whatsapp-[a-z-]+\.yaml/);
  });

  it('exits 1 on output the destination would refuse, with the mapping line and column, and still shows the output', async () => {
    const file = path.join(project, 'mappings/whatsapp-to-communication.jsonata');
    const original = await readFile(file, 'utf8');
    const broken = original.replace("'status': 'completed'", "'status': 'done'");
    expect(broken).not.toBe(original);
    await writeFile(file, broken);
    try {
      const line = broken.split('\n').findIndex((l) => l.includes("'status': 'done'")) + 1;
      const r = await map(['-m', 'mappings/whatsapp-to-communication.jsonata', '-i', 'fixtures/whatsapp/sample_text.json']);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`mappings/whatsapp-to-communication.jsonata:${line}:`);
      expect(r.err).toContain('Communication.status: code is not in the required value set');
      expect(JSON.parse(r.out)).toMatchObject({ resourceType: 'Communication', status: 'done' });
    } finally {
      await writeFile(file, original);
    }
  });

  it('renders HL7 through the hl7v2_mllp destination that uses the mapping', async () => {
    const r = await map(['-m', 'mappings/lab-question-to-orm.jsonata', '-i', 'fixtures/whatsapp/sample_text.json']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^MSH\|\^~\\&\|/);
    expect(r.out).toMatch(/\nPID\|/);
    expect(r.err).toContain('✓ valid for destination lab (hl7v2_mllp) of channels/whatsapp-care-routing.yaml');
  });

  it('--channel takes the source and the destination (and its mapping) from a channel file', async () => {
    const r = await map(['--channel', 'channels/whatsapp-to-ehr.yaml', '-i', 'fixtures/whatsapp/sample_text.json']);
    expect(r.code).toBe(0);
    expect(r.err).toContain('(the source of channels/whatsapp-to-ehr.yaml)');
    expect(r.err).toContain('✓ valid for destination ehr (fhir_r4) of channels/whatsapp-to-ehr.yaml');
    const wrong = await map(['--channel', 'channels/whatsapp-care-routing.yaml', '--destination', 'nope', '-i', 'fixtures/whatsapp/sample_text.json']);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('has no destination "nope"');
  });

  it('refuses with exit 2, naming the flags, when it cannot tell what the input is', async () => {
    await writeFile(path.join(project, 'odd.json'), '{"hello": "world"}');
    const r = await map(['-m', 'mappings/whatsapp-to-communication.jsonata', '-i', 'odd.json']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain('cannot tell what odd.json is');
    expect(r.err).toContain('--source <kind>');
    expect(r.err).toContain('--channel <channel file>');
  });

  it('checks a FHIR resource by its type when no channel uses the mapping, and warns when it cannot check at all', async () => {
    await writeFile(path.join(project, 'mappings/loose.jsonata'), "{\n  'resourceType': 'Communication',\n  'status': 'done'\n}");
    const bad = await map(['-m', 'mappings/loose.jsonata', '-i', 'fixtures/whatsapp/sample_text.json']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('mappings/loose.jsonata:3:3: Communication.status');
    await writeFile(path.join(project, 'mappings/shape.jsonata'), "{ 'v': text.body }");
    const unchecked = await map(['-m', 'mappings/shape.jsonata', '-i', 'fixtures/whatsapp/sample_text.json']);
    expect(unchecked.code).toBe(0);
    expect(unchecked.err).toContain('output not validated');
  });

  it('suggests the mapping meant when the file does not exist', async () => {
    const r = await map(['-m', 'mappings/whatsapp-to-comunication.jsonata', '-i', 'fixtures/whatsapp/sample_text.json']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('mapping file not found (did you mean "whatsapp-to-communication.jsonata"?)');
  });
});
