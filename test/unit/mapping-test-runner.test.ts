/**
 * The mapping-test runner: expectations, diffs, inputs from raw webhooks, and the quality of
 * every error an analyst can cause (bad YAML, bad JSONata, a mapping that throws on a message,
 * output that is not valid FHIR or HL7), each with file:line:column and what to do.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import { runTestFile, type TestFileResult } from '../../src/mapping-tests/mapping-test-runner.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sb-runner-'));
  await mkdir(path.join(dir, 'fixtures'), { recursive: true });
  await cp(path.join(ROOT, 'fixtures/whatsapp'), path.join(dir, 'fixtures/whatsapp'), { recursive: true });
  await writeFile(path.join(dir, 'package.json'), '{}');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const MESSAGE = {
  schema_version: 1,
  source: { kind: 'whatsapp_cloud' },
  id: 'wamid.1',
  dedup_key: 'wamid.1',
  kind: 'text',
  sent_at: '2025-06-08T20:59:43Z',
  received_at: '2025-06-08T21:00:00Z',
  sender: { phone: '+16505551234', platform_id: '16505551234' },
  conversation_id: '16505551234',
  text: 'hello',
};

async function run(name: string, mapping: string, tests: string): Promise<TestFileResult> {
  const sub = await mkdtemp(path.join(dir, 'case-'));
  await writeFile(path.join(sub, `${name}.jsonata`), mapping);
  await writeFile(path.join(sub, `${name}.test.yaml`), tests);
  return runTestFile(path.join(sub, `${name}.test.yaml`), { registry: createConnectorRegistry(), fixturesDir: path.join(dir, 'fixtures') });
}

function reasons(result: TestFileResult): string {
  return result.cases.flatMap((c) => c.reasons).join('\n');
}

const inline = `input: { source: canonical, json: ${JSON.stringify(MESSAGE)} }`;

describe('expectations', () => {
  it('passes equals, contains, assert, dropped and fhir_valid', async () => {
    const result = await run(
      'm',
      "kind = 'text' ? { 'resourceType': 'Communication', 'status': 'completed', 'payload': [{ 'contentString': text }], 'n': $count(media) }",
      `
tests:
  - name: all
    ${inline}
    expect:
      equals: { n: 0, payload: [{ contentString: hello }], status: completed, resourceType: Communication }
      contains: { status: completed, subject: null }
      assert: ["payload[0].contentString = $input.text"]
  - name: dropped
    input: { source: canonical, json: ${JSON.stringify({ ...MESSAGE, kind: 'image' })} }
    expect: { dropped: true }
`,
    );
    expect(result.issues).toEqual([]);
    expect(result.cases.map((c) => c.status)).toEqual(['passed', 'passed']);
  });

  it('explains a difference path by path', async () => {
    const result = await run(
      'm',
      "{ 'status': 'done', 'payload': [{ 'contentString': 'hullo' }], 'extra': 1 }",
      `
tests:
  - name: diff
    ${inline}
    expect:
      equals: { status: completed, payload: [{ contentString: hello }] }
      contains: { payload: [{ contentString: hello }], subject: null, missing: { a: 1 } }
      assert: ["status = 'completed'", "status"]
`,
    );
    const text = reasons(result);
    expect(text).toContain('equals: 3 differences');
    expect(text).toContain('$.status: expected "completed", got "done"');
    expect(text).toContain('$.payload[0].contentString: expected "hello", got "hullo"');
    expect(text).toContain('$.extra: unexpected 1');
    expect(text).toContain('$.missing: missing (expected {"a":1})');
    expect(text).toMatch(/assert\[0\] \(.*m\.test\.yaml:8\) is false: status = 'completed'; status is "done"$/m);
    expect(text).toMatch(/assert\[1\] .* gave "done", not true or false/);
    expect(result.cases[0]?.line).toBe(3);
  });

  it('parses raw webhooks with the source parser and picks a message', async () => {
    const result = await run(
      'm',
      '{ "kind": kind, "sender": sender.platform_id }',
      `
defaults: { source: whatsapp_cloud, now: 2025-06-08T21:00:00Z }
tests:
  - name: one message
    input: { fixture: whatsapp/sample_text.json }
    expect: { equals: { kind: text, sender: "15551234567" } }
  - name: second of three
    input: { fixture: whatsapp/sample_batch_order_sticker_flow_status_call.json, message: 1 }
    expect: { contains: { kind: sticker } }
  - name: several, none chosen
    input: { fixture: whatsapp/sample_batch_order_sticker_flow_status_call.json }
    expect: { dropped: false }
  - name: a status holds no message
    input: { fixture: whatsapp/sample_status_delivered.json }
    expect: { dropped: true }
  - name: a missing fixture
    input: { fixture: whatsapp/nope.json }
    expect: { dropped: true }
`,
    );
    expect(result.cases.map((c) => c.status)).toEqual(['passed', 'passed', 'failed', 'passed', 'failed']);
    expect(result.cases[2]?.reasons[0]).toContain('the webhook holds 3 messages (order, sticker, interactive); 1 status, 1 ignored part: say which with input.message (0 to 2)');
    expect(result.cases[4]?.reasons[0]).toMatch(/input: input file not found: .*whatsapp\/nope\.json \(fixtures are looked up in/);
  });

  it('checks error expectations by Switchboard or JSONata code and message', async () => {
    const result = await run(
      'm',
      "text = 'boom' ? $error('refused on purpose') : { 'ok': true }",
      `
tests:
  - name: refused
    input: { source: canonical, json: ${JSON.stringify({ ...MESSAGE, text: 'boom' })} }
    expect: { error: { code: D3137, message_contains: refused on purpose } }
  - name: wrong code
    input: { source: canonical, json: ${JSON.stringify({ ...MESSAGE, text: 'boom' })} }
    expect: { error: { code: T2001 } }
  - name: expected an error, got output
    ${inline}
    expect: { error: { code: MAPPING_EVALUATE } }
`,
    );
    expect(result.cases.map((c) => c.status)).toEqual(['passed', 'failed', 'failed']);
    expect(result.cases[1]?.reasons[0]).toContain('error: expected code T2001, got MAPPING_EVALUATE / D3137');
    expect(result.cases[2]?.reasons[0]).toContain('error: expected a failure, but the output was {"ok":true}');
  });

  it('writes golden files with --update and compares them after', async () => {
    const sub = await mkdtemp(path.join(dir, 'golden-'));
    await writeFile(path.join(sub, 'g.jsonata'), "{ 'text': text }");
    await writeFile(path.join(sub, 'g.test.yaml'), `tests:\n  - name: golden\n    ${inline}\n    expect: { equals_file: golden/g.json }\n`);
    const options = { registry: createConnectorRegistry() };
    const missing = await runTestFile(path.join(sub, 'g.test.yaml'), options);
    expect(missing.cases[0]?.reasons[0]).toMatch(/golden\/g\.json does not exist; run `switchboard test --update`/);
    const updated = await runTestFile(path.join(sub, 'g.test.yaml'), { ...options, update: true });
    expect(updated.written).toEqual([path.join(sub, 'golden/g.json')]);
    expect(JSON.parse(await readFile(path.join(sub, 'golden/g.json'), 'utf8'))).toEqual({ text: 'hello' });
    await writeFile(path.join(sub, 'g.jsonata'), "{ 'text': $uppercase(text) }");
    const changed = await runTestFile(path.join(sub, 'g.test.yaml'), options);
    expect(changed.cases[0]?.reasons[0]).toContain('$.text: expected "hello", got "HELLO"');
  });

  it('checks HL7 text: MSH-9, blank segments from unescaped line breaks', async () => {
    const result = await run(
      'h',
      "'MSH|^~\\\\&|SB|CLINIC|LIS|LAB|20250608210000+0000||ORM^O01^ORM_O01|CTRL1|P|2.5.1\\rPID|1||123\\r' & text",
      `
tests:
  - name: valid
    input: { source: canonical, json: ${JSON.stringify({ ...MESSAGE, text: 'NTE|1||ok' })} }
    expect: { hl7_valid: ORM^O01, contains: "PID|1||123" }
  - name: wrong type and a broken segment
    input: { source: canonical, json: ${JSON.stringify({ ...MESSAGE, text: 'NTE|1||line one\nline two' })} }
    expect: { hl7_valid: ADT^A01 }
`,
    );
    expect(result.cases[0]?.status).toBe('passed');
    const text = reasons(result);
    expect(text).toContain('MSH-9 (message type) is "ORM^O01^ORM_O01", expected ADT^A01');
    expect(text).toContain('segment 4 starts with "line two", not a segment name such as PID: a line break inside a field? (escape text with $hl7Escape)');
  });
});

describe('error quality', () => {
  it('bad YAML in a test file: file:line:column', async () => {
    const result = await run('y', '$', 'tests:\n  - name: x\n    input: { json: 1 \n    expect: { dropped: true }\n');
    expect(result.issues[0]).toMatchObject({ line: expect.any(Number), column: expect.any(Number) });
    expect(result.issues[0]?.message).toMatch(/^YAML syntax error/);
  });

  it('an unknown key in a test file: its position and "did you mean"', async () => {
    const result = await run('k', '$', `tests:\n  - name: x\n    ${inline}\n    expcet: { dropped: true }\n`);
    expect(result.issues).toContainEqual(expect.objectContaining({ line: 4, column: 5, message: expect.stringContaining('unknown key "expcet" in tests[0] (did you mean "expect"?)') }));
  });

  it('two input forms and no expectation are refused at their position', async () => {
    const result = await run('f', '$', `tests:\n  - name: x\n    input: { json: 1, text: a }\n    expect: {}\n`);
    const messages = result.issues.map((i) => `${i.line}:${i.column}: ${i.message}`);
    expect(messages).toContain('3:12: tests[0].input: give one input form, not json and text');
    expect(messages.some((m) => m.startsWith('4:13: tests[0].expect: expect needs at least one of'))).toBe(true);
  });

  it('bad JSONata: the mapping file, line, column and what to do', async () => {
    const result = await run('b', "{\n  'a': (1 + ,\n}", `tests:\n  - name: x\n    ${inline}\n    expect: { dropped: true }\n`);
    expect(result.issues[0]).toMatchObject({ line: 2, column: 13 }); // the stray comma
    expect(result.issues[0]?.message).toMatch(/JSONata S0211: .* — an operator or name is misplaced here/);
  });

  it('a mapping that throws on a message: file:line:column of the expression and a hint', async () => {
    const result = await run('t', "{\n  'n': text + 1\n}", `tests:\n  - name: x\n    ${inline}\n    expect: { dropped: false }\n`);
    const text = reasons(result);
    expect(text).toMatch(/MAPPING_EVALUATE: .*t\.jsonata:2:13: JSONata T2001: The left side of the "\+" operator must evaluate to a number/);
    expect(text).toContain('what to do: a value used in arithmetic is not a number for this message');
  });

  it('output that is not valid FHIR: the element and the mapping line that builds it', async () => {
    const result = await run(
      'v',
      "{\n  'resourceType': 'Communication',\n  'status': 'done',\n  'sent': '2025-06-08T21:00:00'\n}",
      `tests:\n  - name: x\n    ${inline}\n    expect: { fhir_valid: Communication }\n`,
    );
    const text = reasons(result);
    expect(text).toMatch(/fhir_valid: the output is not a valid Communication \(2 issues\)/);
    expect(text).toMatch(/v\.jsonata:3:3: Communication\.status: code is not in the required value set event-status/);
    expect(text).toMatch(/v\.jsonata:4:3: Communication\.sent: a dateTime with a time SHALL carry a time zone/);
  });

  it('a test file without a mapping says so', async () => {
    const sub = await mkdtemp(path.join(dir, 'orphan-'));
    await writeFile(path.join(sub, 'lonely.test.yaml'), `tests:\n  - name: x\n    ${inline}\n    expect: { dropped: true }\n`);
    const result = await runTestFile(path.join(sub, 'lonely.test.yaml'), { registry: createConnectorRegistry() });
    expect(result.issues[0]?.message).toBe('test file without a mapping: there is no lonely.jsonata beside it; rename the test file or add "mapping: <file>.jsonata"');
  });

  it('a misspelt mapping: file is not found, with the file meant', async () => {
    const sub = await mkdtemp(path.join(dir, 'typo-'));
    await writeFile(path.join(sub, 'to-ehr.jsonata'), '{}');
    await writeFile(path.join(sub, 't.test.yaml'), `mapping: to-eht.jsonata\ntests:\n  - name: x\n    ${inline}\n    expect: { dropped: true }\n`);
    const result = await runTestFile(path.join(sub, 't.test.yaml'), { registry: createConnectorRegistry() });
    expect(result.issues[0]).toMatchObject({ line: 1, column: 10 });
    expect(result.issues[0]?.message).toMatch(/^mapping file not found: \S*to-eht\.jsonata \(did you mean "to-ehr\.jsonata"\?\) \(the path is relative to the test file\)$/);
  });
});
