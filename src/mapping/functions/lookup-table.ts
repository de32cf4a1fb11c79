/**
 * `$lookupTable(table, key, default?)`: code tables kept beside the mappings.
 *
 * A mapping at `mappings/x.jsonata` names a table by its base name; the table is the one file
 * `mappings/tables/<name>.yaml` (or `.yml`, `.json`, `.csv`). YAML and JSON tables are one flat
 * map of key → value (any JSON value); a CSV table has a header row, the key in its first column,
 * and the value in the second (two columns) or an object of the other columns (more). Tables are
 * read once per compiled mapping: names written as string literals at compile time (so a missing
 * or broken table is a compile error with file:line:column), other names on first use.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument, type Pair } from 'yaml';
import type { ConfigIssue } from '../../core/errors.js';
import { MappingFunctionError, functionErrorCodes } from './function-error.js';

export const TABLE_DIRECTORY = 'tables';
export const TABLE_EXTENSIONS = ['.yaml', '.yml', '.json', '.csv'] as const;
const TABLE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;

export interface CodeTable {
  name: string;
  /** Absolute path of the table file. */
  file: string;
  /** The file content (part of the mapping version). */
  content: string;
  entries: ReadonlyMap<string, unknown>;
}

/** A table that could not be loaded, with the issues to report. */
export class TableError extends Error {
  constructor(
    readonly code: string,
    readonly issues: ConfigIssue[],
  ) {
    super(issues.map((i) => `${i.file}:${i.line}:${i.column}: ${i.message}`).join('\n'));
    this.name = 'TableError';
  }
}

/** The table directory for a mapping file (`#filter` style suffixes ignored). */
export function tableDirectoryFor(mappingFile: string): string {
  return path.resolve(path.dirname(mappingFile.replace(/#.*$/, '')), TABLE_DIRECTORY);
}

/** Finds and parses table `name` for the mapping; throws TableError. */
export function loadTable(mappingFile: string, name: string): CodeTable {
  const dir = tableDirectoryFor(mappingFile);
  const shownDir = path.relative(process.cwd(), dir) || '.';
  if (!TABLE_NAME.test(name)) {
    throw new TableError(functionErrorCodes.badArgument, [
      { file: mappingFile, line: 1, column: 1, message: `table name ${JSON.stringify(name)} is not a plain file name (letters, digits, _ and -, no folders or extension)` },
    ]);
  }
  const candidates = TABLE_EXTENSIONS.map((ext) => path.join(dir, `${name}${ext}`)).filter((f) => existsSync(f));
  if (candidates.length === 0) {
    throw new TableError(functionErrorCodes.tableNotFound, [
      {
        file: mappingFile,
        line: 1,
        column: 1,
        message: `table "${name}" not found: create ${path.join(shownDir, `${name}.yaml`)} (or .json or .csv) beside the mapping`,
      },
    ]);
  }
  if (candidates.length > 1) {
    throw new TableError(functionErrorCodes.tableInvalid, [
      { file: mappingFile, line: 1, column: 1, message: `table "${name}" is ambiguous: ${candidates.map((c) => path.basename(c)).join(' and ')} both exist; keep one` },
    ]);
  }
  const file = candidates[0] as string;
  const content = readFileSync(file, 'utf8');
  const entries = file.endsWith('.csv') ? parseCsvTable(file, content) : parseYamlTable(file, content);
  return { name, file, content, entries };
}

function parseYamlTable(file: string, content: string): Map<string, unknown> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(content, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number | undefined): { line: number; column: number } => {
    const { line, col } = lineCounter.linePos(offset ?? 0);
    return { line, column: col };
  };
  const fail = (offset: number | undefined, message: string): never => {
    throw new TableError(functionErrorCodes.tableInvalid, [{ file, ...at(offset), message }]);
  };
  const [first] = doc.errors;
  if (first !== undefined) {
    const message = first.code === 'DUPLICATE_KEY' ? 'duplicate key: each key may appear once in a table' : `not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${first.message.split('\n')[0] ?? ''}`;
    fail(first.pos[0], message);
  }
  if (!isMap(doc.contents)) {
    fail(doc.contents?.range?.[0], 'a table is one map of key → value, e.g. "CBC: 58410-2" on each line');
  }
  const entries = new Map<string, unknown>();
  const js = doc.toJS() as Record<string, unknown>;
  for (const pair of (doc.contents as { items: Pair[] }).items) {
    const key = isScalar(pair.key) ? pair.key.value : undefined;
    if (typeof key !== 'string' && typeof key !== 'number' && typeof key !== 'boolean') {
      fail((pair.key as { range?: [number] } | null)?.range?.[0], 'table keys are plain strings or numbers');
    }
    const text = String(key);
    if (entries.has(text)) fail((pair.key as { range?: [number] }).range?.[0], `duplicate key "${text}"`);
    entries.set(text, js[text]);
  }
  return entries;
}

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks. */
function parseCsvRows(file: string, content: string): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let fieldStarted = false;
  const text = content.replace(/^\uFEFF/, '');
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"' && !fieldStarted) {
      quoted = true;
      fieldStarted = true;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
      fieldStarted = false;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      fields.push(field);
      if (!(fields.length === 1 && fields[0] === '')) rows.push({ line: rowLine, fields });
      fields = [];
      field = '';
      fieldStarted = false;
      line++;
      rowLine = line;
    } else {
      field += ch;
      fieldStarted = true;
    }
  }
  if (quoted) throw new TableError(functionErrorCodes.tableInvalid, [{ file, line: rowLine, column: 1, message: 'a quoted field is never closed: add the closing "' }]);
  fields.push(field);
  if (!(fields.length === 1 && fields[0] === '')) rows.push({ line: rowLine, fields });
  return rows;
}

function parseCsvTable(file: string, content: string): Map<string, unknown> {
  const rows = parseCsvRows(file, content);
  const [header, ...body] = rows;
  if (header === undefined || header.fields.length < 2) {
    throw new TableError(functionErrorCodes.tableInvalid, [
      { file, line: header?.line ?? 1, column: 1, message: 'a CSV table starts with a header row of at least two columns: key,value' },
    ]);
  }
  const names = header.fields.map((f) => f.trim());
  const entries = new Map<string, unknown>();
  const firstLine = new Map<string, number>();
  for (const row of body) {
    if (row.fields.length !== names.length) {
      throw new TableError(functionErrorCodes.tableInvalid, [
        { file, line: row.line, column: 1, message: `this row has ${row.fields.length} fields, the header has ${names.length}; quote fields that contain commas` },
      ]);
    }
    const key = row.fields[0] as string;
    const seen = firstLine.get(key);
    if (seen !== undefined) {
      throw new TableError(functionErrorCodes.tableInvalid, [{ file, line: row.line, column: 1, message: `duplicate key "${key}" (first at line ${seen})` }]);
    }
    firstLine.set(key, row.line);
    entries.set(
      key,
      names.length === 2 ? row.fields[1] : Object.fromEntries(names.slice(1).map((n, i) => [n, row.fields[i + 1] as string])),
    );
  }
  return entries;
}

/** The tables one compiled mapping has read, by name. */
export class TableCache {
  private readonly tables = new Map<string, CodeTable>();
  constructor(private readonly mappingFile: string) {}

  /** Loads (once) and returns table `name`; throws TableError. */
  get(name: string): CodeTable {
    let table = this.tables.get(name);
    if (table === undefined) {
      table = loadTable(this.mappingFile, name);
      this.tables.set(name, table);
    }
    return table;
  }

  /** Tables read so far, in name order. */
  loaded(): CodeTable[] {
    return [...this.tables.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** The function bound to one compiled mapping's table cache. */
export function lookupTableFunction(cache: TableCache): (table: unknown, key: unknown, fallback?: unknown) => unknown {
  return (table, key, fallback) => {
    if (typeof table !== 'string') {
      throw new MappingFunctionError(functionErrorCodes.badArgument, `$lookupTable: the table name must be a string such as 'lab-codes'`);
    }
    let loaded: CodeTable;
    try {
      loaded = cache.get(table);
    } catch (err) {
      if (err instanceof TableError) throw new MappingFunctionError(err.code, `$lookupTable: ${err.issues.map((i) => (i.line > 1 ? `${i.file}:${i.line}:${i.column}: ${i.message}` : i.message)).join('; ')}`);
      throw err;
    }
    if (key === undefined || key === null) return fallback;
    const value = loaded.entries.get(typeof key === 'string' ? key : String(key));
    return value === undefined ? fallback : value;
  };
}
