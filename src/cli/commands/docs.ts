/** `switchboard docs [--check]`: writes (or checks) the generated reference docs and JSON Schemas. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createConnectorRegistry } from '../../connectors/registry.js';
import { parseCommandArgs, UsageError } from '../args.js';
import { projectRoot, relative } from '../common.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';
import { generatedFiles, updateGuide } from '../reference-docs.js';


async function readExisting(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** File → wanted content, for every generated file under `root`. */
export async function wantedDocs(root: string): Promise<Map<string, string>> {
  const wanted = new Map<string, string>();
  for (const [file, content] of Object.entries(generatedFiles(createConnectorRegistry()))) wanted.set(path.join(root, file), content);
  const guide = path.join(root, 'docs/analyst-guide.md');
  const current = await readExisting(guide);
  const updated = current === undefined ? undefined : updateGuide(current);
  if (updated !== undefined) wanted.set(guide, updated);
  return wanted;
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { check: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0] ?? ''}`);
  const root = projectRoot(io.cwd);
  const stale: string[] = [];
  for (const [file, content] of await wantedDocs(root)) {
    if ((await readExisting(file)) === content) {
      if (values.check !== true) io.stdout(`${relative(io, file)} is up to date\n`);
      continue;
    }
    if (values.check === true) {
      stale.push(file);
      continue;
    }
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
    io.stdout(`wrote ${relative(io, file)}\n`);
  }
  if (stale.length > 0) {
    for (const file of stale) io.stderr(`${relative(io, file)} is out of date\n`);
    io.stderr('run `npm run docs` (switchboard docs) and commit the result\n');
    return EXIT_FAILURES;
  }
  if (values.check === true) io.stdout('generated docs and schemas are up to date\n');
  return EXIT_OK;
}
