/** Helpers shared by the commands: environment files, default paths, the project root. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { UsageError } from './args.js';
import type { CliIo } from './io.js';
import { envMode, type EnvMode } from '../mapping-tests/mapping-test-env.js';

/** The environment: the process's, with the variables of each --env-file over it (in order). */
export function environmentFrom(io: CliIo, envFiles: readonly string[] | undefined): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...io.env };
  for (const file of envFiles ?? []) {
    const full = path.resolve(io.cwd, file);
    let text: string;
    try {
      text = readFileSync(full, 'utf8');
    } catch {
      throw new UsageError(`--env-file ${file}: file not found`);
    }
    Object.assign(env, parseEnv(text));
  }
  return env;
}

export function modeFrom(env: Readonly<Record<string, string | undefined>>, production: boolean | undefined): EnvMode {
  return production === true ? 'production' : envMode(env);
}

/** The folder with the nearest package.json at or above `from`, else `from`. */
export function projectRoot(from: string): string {
  let dir = path.resolve(from);
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return path.resolve(from);
    dir = parent;
  }
}

/** `channels/` (or CHANNELS_DIR) and `mappings/` under the working directory, those that exist. */
export function defaultPaths(io: CliIo): string[] {
  const candidates = [io.env['CHANNELS_DIR'] ?? 'channels', 'mappings'];
  const found = candidates.filter((p) => existsSync(path.resolve(io.cwd, p)));
  if (found.length === 0) {
    throw new UsageError(`no ${candidates.join('/ or ')}/ folder here: run in the project folder or name the files or folders to check`);
  }
  return found;
}

/** Paths as given, resolved against the working directory; missing ones are a usage error. */
export function givenPaths(io: CliIo, positionals: readonly string[]): string[] {
  if (positionals.length === 0) return defaultPaths(io);
  for (const p of positionals) if (!existsSync(path.resolve(io.cwd, p))) throw new UsageError(`${p}: no such file or folder`);
  return [...positionals];
}

export function relative(io: CliIo, file: string): string {
  return path.isAbsolute(file) ? path.relative(io.cwd, file) || file : file;
}

export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}
