/**
 * Finding the files analysts work on: mappings (`*.jsonata`), test files (`*.test.yaml`) and
 * channel files (other `*.yaml` at the top of a folder), and pairing a test file with what it tests.
 */
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

export interface ProjectFiles {
  channels: string[];
  mappings: string[];
  tests: string[];
  /** Paths given that do not exist. */
  missing: string[];
}

const TEST_FILE = /\.test\.ya?ml$/i;
const YAML_FILE = /\.ya?ml$/i;
const MAPPING_FILE = /\.jsonata$/i;
/** Folders that hold data, not files to check on their own. */
const SKIPPED_DIRS = new Set(['node_modules', 'tables', 'golden', 'samples']);

export function isTestFile(file: string): boolean {
  return TEST_FILE.test(file);
}

async function walk(dir: string, depth: number, out: ProjectFiles): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) await walk(full, depth + 1, out);
    } else if (MAPPING_FILE.test(entry.name)) {
      out.mappings.push(full);
    } else if (TEST_FILE.test(entry.name)) {
      out.tests.push(full);
    } else if (YAML_FILE.test(entry.name) && depth === 0) {
      out.channels.push(full);
    }
  }
}

/**
 * Collects files from `paths` (files or folders). In a folder: mappings and test files at any
 * depth (except under tables/, golden/, samples/ and dot-folders), channel files at its top level.
 */
export async function collectProjectFiles(paths: readonly string[]): Promise<ProjectFiles> {
  const out: ProjectFiles = { channels: [], mappings: [], tests: [], missing: [] };
  for (const given of paths) {
    let info;
    try {
      info = await stat(given);
    } catch {
      out.missing.push(given);
      continue;
    }
    if (info.isDirectory()) await walk(given, 0, out);
    else if (MAPPING_FILE.test(given)) out.mappings.push(given);
    else if (TEST_FILE.test(given)) out.tests.push(given);
    else if (YAML_FILE.test(given)) out.channels.push(given);
    else out.missing.push(given);
  }
  const unique = (files: string[]): string[] => [...new Set(files.map((f) => path.normalize(f)))];
  return { channels: unique(out.channels), mappings: unique(out.mappings), tests: unique(out.tests), missing: out.missing };
}

/** `mappings/x.jsonata` → `mappings/x.test.yaml` (the .yml spelling is accepted too when it exists). */
export function testFileCandidates(file: string): string[] {
  const base = file.replace(/\.(jsonata|ya?ml)$/i, '');
  return [`${base}.test.yaml`, `${base}.test.yml`];
}

/** `x.test.yaml` → the `x.jsonata` and `x.yaml` it may test. */
export function testedFileCandidates(testFile: string): { mapping: string; channels: string[] } {
  const base = testFile.replace(TEST_FILE, '');
  return { mapping: `${base}.jsonata`, channels: [`${base}.yaml`, `${base}.yml`] };
}
