/**
 * Writes `schemas/channel.schema.json` (JSON Schema draft 2020-12) from the connector registry,
 * for editor completion in channel files, e.g. with the YAML language server:
 *
 *   # yaml-language-server: $schema=../schemas/channel.schema.json
 *
 * Usage: `npm run schema` to write it, `npm run schema -- --check` to exit 1 when it is stale (CI).
 * Generated: do not edit the JSON by hand.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { channelJsonSchema, type ConnectorRegistry } from '../src/channels/channel-schema.js';
import { createConnectorRegistry } from '../src/connectors/registry.js';

/** The schema file's exact content for `registry`. */
export function renderChannelJsonSchema(registry: ConnectorRegistry): string {
  return `${JSON.stringify(channelJsonSchema(registry), null, 2)}\n`;
}

/** Writes the schema for `registry` to `outFile` when it differs; returns whether it changed. */
export async function writeChannelJsonSchema(registry: ConnectorRegistry, outFile: string): Promise<boolean> {
  const content = renderChannelJsonSchema(registry);
  if ((await readExisting(outFile)) === content) return false;
  await mkdir(path.dirname(outFile), { recursive: true });
  await writeFile(outFile, content);
  return true;
}

async function readExisting(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function main(args: readonly string[]): Promise<number> {
  const outFile = fileURLToPath(new URL('../schemas/channel.schema.json', import.meta.url));
  const shown = path.relative(process.cwd(), outFile);
  const registry = createConnectorRegistry();
  if (args.includes('--check')) {
    if ((await readExisting(outFile)) === renderChannelJsonSchema(registry)) return 0;
    process.stderr.write(`${shown} is out of date: run npm run schema\n`);
    return 1;
  }
  const changed = await writeChannelJsonSchema(registry, outFile);
  process.stdout.write(changed ? `wrote ${shown}\n` : `${shown} is up to date\n`);
  return 0;
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  process.exitCode = await main(process.argv.slice(2));
}
