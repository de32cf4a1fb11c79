// Builds the operator console (console/ -> console/dist) with Vite.
//
// Run by the `prepare` script, which npm runs on a plain `npm install` and on `npm ci`: that is
// how the README's two commands (`npm install && npm start`) leave the built assets in place on a
// fresh clone without a build step anyone has to remember, and without committing built files.
// Where the sources or Vite are absent (a production image installed with --omit=dev, which
// copies the assets built in an earlier stage), it says so and leaves the install alone; the
// gateway then answers /console with the command to run.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const config = path.join(root, 'console', 'vite.config.ts');
if (!existsSync(config)) {
  console.log('console: no sources here (console/vite.config.ts); not building');
  process.exit(0);
}
let vite;
try {
  vite = await import('vite');
} catch {
  console.log('console: Vite is not installed (dev dependencies omitted?); not building. Run `npm install` then `npm run build:console`.');
  process.exit(0);
}
try {
  await vite.build({ configFile: config, logLevel: 'warn' });
  console.log(`console: built into ${path.relative(process.cwd(), path.join(root, 'console', 'dist')) || '.'}`);
} catch (err) {
  console.error(`console: build failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
