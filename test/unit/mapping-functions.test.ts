/**
 * The helper-function library: every documented example runs (from the function table and
 * from the analyst guide's generated section), plus the edge cases each function promises.
 */
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, SwitchboardError } from '../../src/core/errors.js';
import { documentedResult, parseDocumentedExamples, GUIDE_BEGIN, GUIDE_END } from '../../src/cli/reference-docs.js';
import { EXAMPLE_MAPPING_PATH, EXAMPLE_NOW, mappingFunctions } from '../../src/mapping/functions/library.js';
import { truncate } from '../../src/mapping/functions/truncate.js';
import { hl7Escape } from '../../src/mapping/functions/hl7.js';
import { compileMapping } from '../../src/mapping/jsonata-mapping.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const exampleFile = path.join(ROOT, EXAMPLE_MAPPING_PATH);

async function evaluate(expression: string, input: unknown = {}, file = exampleFile): Promise<unknown> {
  const out = await compileMapping(file, expression).evaluate(input, { now: new Date(EXAMPLE_NOW) });
  return out === undefined ? undefined : (JSON.parse(JSON.stringify(out)) as unknown);
}

describe('documented examples', () => {
  for (const fn of mappingFunctions) {
    describe(`$${fn.name}`, () => {
      for (const example of fn.examples) {
        it(`${example.expression}`, async () => {
          if (example.error !== undefined) {
            await expect(evaluate(example.expression, example.input)).rejects.toThrow(example.error);
          } else {
            expect(await evaluate(example.expression, example.input)).toEqual(example.result);
          }
        });
      }
    });
  }

  it('the analyst guide shows every example, and each gives what the guide says', async () => {
    const guide = await readFile(path.join(ROOT, 'docs/analyst-guide.md'), 'utf8');
    const section = guide.slice(guide.indexOf(GUIDE_BEGIN), guide.indexOf(GUIDE_END));
    const examples = parseDocumentedExamples(section);
    expect(examples.length).toBe(mappingFunctions.reduce((n, f) => n + f.examples.length, 0));
    for (const example of examples) {
      const documented = documentedResult(example.result);
      if ('error' in documented) {
        await expect(evaluate(example.expression, example.input), example.expression).rejects.toThrow(documented.error);
      } else {
        expect(await evaluate(example.expression, example.input), example.expression).toEqual(documented.value);
      }
    }
  });

  it('the built-in $lookup(object, key) still works beside $lookupTable', async () => {
    expect(await evaluate("$lookup({'a': 1}, 'a')")).toBe(1);
  });
});

describe('$truncate', () => {
  const codePoints = (s: string): number => [...s].length;

  it('never splits a surrogate pair or a grapheme cluster, and never exceeds maxChars', () => {
    const pieces = ['a', 'é', 'e\u0301', '👍', '👍🏽', '🇳🇱', '👩‍👩‍👧', ' ', '中'];
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 500; round++) {
      const text = Array.from({ length: 1 + random(30) }, () => pieces[random(pieces.length)]).join('');
      const max = 1 + random(20);
      const out = truncate(text, max) as string;
      expect(codePoints(out)).toBeLessThanOrEqual(Math.max(max, 1));
      expect(out).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
      if (codePoints(text) <= max) expect(out).toBe(text);
      else {
        expect(out.endsWith('…')).toBe(true);
        // The kept part is a prefix made of whole graphemes of the text.
        expect(text.startsWith(out.slice(0, -1).trimEnd())).toBe(true);
      }
    }
  });

  it('keeps a family emoji whole or drops it whole', () => {
    expect(truncate('ok 👩‍👩‍👧 fine', 5)).toBe('ok…');
    expect(truncate('👩‍👩‍👧👩‍👩‍👧', 6)).toBe('👩‍👩‍👧…');
  });

  it('refuses a maxChars below 1 with SB0101 at the call', async () => {
    await expect(evaluate("(\n  $x := 'abc';\n  $truncate($x, 0)\n)")).rejects.toThrow(/example\.jsonata:3:3: JSONata SB0101: \$truncate: maxChars/);
  });
});

describe('$hl7Escape', () => {
  it('leaves no segment terminator and escapes every encoding character', () => {
    const text = 'a|b^c~d\\e&f\r\ng\rh\ni\u0007';
    const out = hl7Escape(text) as string;
    expect(out).toBe('a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\.br\\g\\.br\\h\\.br\\i\\X07\\');
    expect(out).not.toMatch(/[\r\n|^~&]/);
    expect(hl7Escape('x\r\ny', 'hex')).toBe('x\\X0D\\\\X0A\\y');
  });

  it('refuses an unknown line-break mode', async () => {
    await expect(evaluate("$hl7Escape('x', 'tabs')")).rejects.toThrow(/SB0101: \$hl7Escape: lineBreaks must be/);
  });
});

describe('$hl7Ts and $e164 edge cases', () => {
  it('refuses dates that do not exist', async () => {
    await expect(evaluate("$hl7Ts('2025-02-30T10:00:00Z')")).rejects.toThrow(/not a calendar date/);
  });
  it('keeps negative offsets', async () => {
    expect(await evaluate("$hl7Ts('2025-03-04T04:15:00-05:00')")).toBe('20250304041500-0500');
  });
  it('reads numbers and refuses a bad country code', async () => {
    expect(await evaluate('$e164(16505551234)')).toBe('+16505551234');
    await expect(evaluate("$e164('0612345678', 'Netherlands')")).rejects.toThrow(/SB0101: \$e164: defaultCountry/);
  });
});

describe('$lookupTable', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sb-tables-'));
    await mkdir(path.join(dir, 'tables'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function compileIn(name: string, source: string): Promise<ReturnType<typeof compileMapping>> {
    const file = path.join(dir, name);
    await writeFile(file, source);
    return compileMapping(file, source);
  }

  it('a missing table is a compile error at the name, with what to create', async () => {
    const error = await compileIn('a.jsonata', "{\n  'code': $lookupTable('nope', x)\n}").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    const issue = (error as ConfigError).issues[0];
    expect(issue).toMatchObject({ file: path.join(dir, 'a.jsonata'), line: 2, column: 24 });
    expect(issue?.message).toMatch(/table "nope" not found: create .*tables\/nope\.yaml \(or \.json or \.csv\) beside the mapping/);
    expect((error as ConfigError).code).toBe('MAPPING_COMPILE');
  });

  it('a broken CSV row is reported at its own line', async () => {
    await writeFile(path.join(dir, 'tables', 'bad.csv'), 'code,value\nA,1\nB,2,3\n');
    const error = (await compileIn('b.jsonata', "$lookupTable('bad', 'A')").catch((e: unknown) => e)) as ConfigError;
    expect(error.issues[0]).toMatchObject({ file: path.join(dir, 'tables', 'bad.csv'), line: 3, column: 1 });
    expect(error.issues[0]?.message).toMatch(/this row has 3 fields, the header has 2/);
  });

  it('duplicate YAML keys are reported at the duplicate', async () => {
    await writeFile(path.join(dir, 'tables', 'dup.yaml'), 'A: 1\nB: 2\nA: 3\n');
    const error = (await compileIn('c.jsonata', "$lookupTable('dup', 'A')").catch((e: unknown) => e)) as ConfigError;
    expect(error.issues[0]).toMatchObject({ file: path.join(dir, 'tables', 'dup.yaml'), line: 3 });
  });

  it('CSV with quoted commas, multi-column rows as objects; the table is part of the mapping version', async () => {
    await writeFile(path.join(dir, 'tables', 'wide.csv'), 'code,name,unit\nGLU,"Glucose, fasting",mg/dL\n');
    const mapping = await compileIn('d.jsonata', "$lookupTable('wide', code)");
    expect(await mapping.evaluate({ code: 'GLU' })).toEqual({ name: 'Glucose, fasting', unit: 'mg/dL' });
    expect(mapping.dependencies).toEqual([path.join(dir, 'tables', 'wide.csv')]);
    await writeFile(path.join(dir, 'tables', 'wide.csv'), 'code,name,unit\nGLU,Glucose,mmol/L\n');
    const again = await compileIn('d.jsonata', "$lookupTable('wide', code)");
    expect(again.version).not.toBe(mapping.version);
  });

  it('a table named at run time that does not exist fails the evaluation with SB0102', async () => {
    const mapping = await compileIn('e.jsonata', '$lookupTable(name, 1)');
    const error = await mapping.evaluate({ name: 'ghost' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SwitchboardError);
    expect((error as SwitchboardError).message).toMatch(/e\.jsonata:1:1: JSONata SB0102: \$lookupTable: table "ghost" not found/);
  });
});
