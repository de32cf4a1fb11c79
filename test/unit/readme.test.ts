/** The README is part of the interface: it must list every error code and every env variable. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
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

  it('shows the two commands a new user runs', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toContain('npm test');
  });
});
