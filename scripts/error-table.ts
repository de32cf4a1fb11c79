/** Prints the README's error-code table from the catalogue (`npx tsx scripts/error-table.ts`). */
import { errorCatalogue } from '../src/core/errors.js';

for (const [code, e] of Object.entries(errorCatalogue)) {
  console.log(`| \`${code}\` | ${e.disposition === 'retryable' ? 'yes' : 'no'} | ${e.summary} |`);
}
