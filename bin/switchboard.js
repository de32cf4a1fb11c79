#!/usr/bin/env node
// The `switchboard` command (npx switchboard, or installed). Runs the TypeScript sources through
// tsx's ESM loader when they are present (a checkout, so edits take effect at once), else the
// compiled dist/ (npm run build). SWITCHBOARD_CLI_DIST=1 prefers dist/ when both exist.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);
const preferDist = process.env.SWITCHBOARD_CLI_DIST === '1' && existsSync(compiled);

let entry;
if (existsSync(source) && !preferDist) {
  const { register } = await import('tsx/esm/api');
  register();
  entry = source;
} else if (existsSync(compiled)) {
  entry = compiled;
} else {
  process.stderr.write('switchboard: neither src/cli/main.ts nor dist/cli/main.js found; run npm run build\n');
  process.exit(2);
}

const { runCli } = await import(entry.href);
const { processIo } = await import(new URL('./io.' + (entry === source ? 'ts' : 'js'), entry).href);
const controller = new AbortController();
let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort();
});
process.exitCode = await runCli(process.argv.slice(2), processIo(controller.signal));
