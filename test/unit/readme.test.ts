/**
 * The README is part of the interface: it must list every error code, every env variable and,
 * in the channel guide, every connector kind.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import { envSchema } from '../../src/config/env.js';
import { errorCatalogue } from '../../src/core/errors.js';
import { permissionTableRows } from '../../src/http/permissions.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('lists every error code with its retry class', () => {
    for (const [code, e] of Object.entries(errorCatalogue)) {
      expect(readme, `README lacks ${code} (run: npx tsx scripts/error-table.ts)`).toContain(`| \`${code}\` | ${e.disposition === 'retryable' ? 'yes' : 'no'} |`);
    }
  });

  it('shows the permission table as the code has it', () => {
    for (const row of permissionTableRows()) expect(readme, `README's permission table is stale (run: npx tsx scripts/permission-table.ts)`).toContain(row);
  });

  it('documents every environment variable', () => {
    for (const name of Object.keys(envSchema.shape)) {
      expect(readme, `README lacks ${name}`).toMatch(new RegExp(`\\| \`${name}\` \\|`));
    }
  });

  it('has a channel guide section for every connector kind', () => {
    const { sources, destinations } = createConnectorRegistry();
    const headings = readme.split('\n').filter((l) => /^#{2,4} /.test(l));
    for (const { kind } of [...sources, ...destinations]) {
      expect(headings.some((h) => h.includes(`\`${kind}\``)), `README's channel guide lacks a section for ${kind}`).toBe(true);
    }
  });

  it('shows the two commands a new user runs', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toContain('npm test');
  });
});
