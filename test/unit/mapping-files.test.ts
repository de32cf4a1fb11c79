/**
 * Every shipped test file (mappings/*.test.yaml and channels/*.test.yaml) runs through the
 * test runner in `npm test`, so a mapping change that breaks its tests fails CI.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import { runTestFile } from '../../src/mapping-tests/mapping-test-runner.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// channels/sandbox/: the zero-config run's reply channel.
const testFiles = ['mappings', 'channels', 'channels/sandbox'].flatMap((dir) =>
  readdirSync(path.join(ROOT, dir))
    .filter((name) => /\.test\.ya?ml$/.test(name))
    .map((name) => path.join(dir, name)),
);

describe('shipped test files', () => {
  it('every shipped mapping has a test file', () => {
    const mappings = readdirSync(path.join(ROOT, 'mappings')).filter((n) => n.endsWith('.jsonata'));
    const missing = mappings.filter((m) => !testFiles.includes(path.join('mappings', m.replace(/\.jsonata$/, '.test.yaml'))));
    expect(missing, 'mappings without mappings/<name>.test.yaml').toEqual([]);
  });

  for (const file of testFiles) {
    it(file, async () => {
      // A clean environment: channel ${VAR}s resolve to the development defaults and sandboxes.
      const result = await runTestFile(path.join(ROOT, file), { registry: createConnectorRegistry(), env: {} });
      const problems = [
        ...result.issues.map((i) => `${path.relative(ROOT, i.file)}:${i.line}:${i.column}: ${i.message}`),
        ...result.cases.filter((c) => c.status === 'failed').map((c) => `✗ ${c.name} [${file}:${c.line}]: ${c.reasons.join('\n')}`),
      ];
      expect(problems.join('\n\n')).toBe('');
      expect(result.cases.filter((c) => c.status === 'passed').length).toBeGreaterThan(0);
    });
  }
});
