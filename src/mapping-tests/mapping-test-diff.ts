/**
 * Readable differences between what a test expected and what a mapping produced: one line per
 * differing JSON path (`$.payload[0].contentString: expected "a", got "b"`), or per differing
 * line for text (HL7 ER7). Also the deep-subset match used by `contains`.
 */
import { isDeepStrictEqual } from 'node:util';

export interface Difference {
  /** JSON path, `$` for the root. */
  path: string;
  message: string;
}

const MAX_SHOWN = 100;

export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN - 1)}…` : text;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function child(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** Text normalised for comparison: CRLF and CR (HL7 segment ends) read as LF; no trailing line break. */
export function normaliseText(text: string): string {
  return text.replace(/\r\n|\r/g, '\n').replace(/\n+$/, '');
}

/** Differences for `equals`: deep equality, object key order ignored, array order kept. */
export function diffEquals(expected: unknown, actual: unknown, path = '$'): Difference[] {
  if (typeof expected === 'string' && typeof actual === 'string' && (expected.includes('\n') || actual.includes('\n') || actual.includes('\r'))) {
    return diffText(expected, actual, path);
  }
  if (isRecord(expected) && isRecord(actual)) {
    const out: Difference[] = [];
    for (const key of Object.keys(expected)) {
      if (!Object.hasOwn(actual, key)) out.push({ path: child(path, key), message: `missing (expected ${show(expected[key])})` });
      else out.push(...diffEquals(expected[key], actual[key], child(path, key)));
    }
    for (const key of Object.keys(actual)) {
      if (!Object.hasOwn(expected, key)) out.push({ path: child(path, key), message: `unexpected ${show(actual[key])}` });
    }
    return out;
  }
  if (Array.isArray(expected) && Array.isArray(actual)) {
    const out: Difference[] = [];
    const n = Math.max(expected.length, actual.length);
    for (let i = 0; i < n; i++) {
      if (i >= actual.length) out.push({ path: child(path, i), message: `missing (expected ${show(expected[i])})` });
      else if (i >= expected.length) out.push({ path: child(path, i), message: `unexpected ${show(actual[i])}` });
      else out.push(...diffEquals(expected[i], actual[i], child(path, i)));
    }
    return out;
  }
  if (isDeepStrictEqual(expected, actual)) return [];
  if (kind(expected) !== kind(actual) && !(typeof expected === typeof actual)) {
    return [{ path, message: `expected ${kind(expected)} ${show(expected)}, got ${kind(actual)} ${show(actual)}` }];
  }
  return [{ path, message: `expected ${show(expected)}, got ${show(actual)}` }];
}

/** Line-by-line differences of two texts (HL7 segments), after normalising line ends. */
export function diffText(expected: string, actual: string, path = '$'): Difference[] {
  const a = normaliseText(expected).split('\n');
  const b = normaliseText(actual).split('\n');
  const out: Difference[] = [];
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) continue;
    const where = `${path} line ${i + 1}`;
    if (b[i] === undefined) out.push({ path: where, message: `missing: ${a[i] ?? ''}` });
    else if (a[i] === undefined) out.push({ path: where, message: `unexpected: ${b[i]}` });
    else out.push({ path: where, message: `\n        - ${a[i]}\n        + ${b[i]}` });
  }
  return out;
}

/**
 * Differences for `contains` (deep subset): every key of an expected object must match in the
 * actual one (`null` means absent or null); every item of an expected list must be contained in
 * a distinct item of the actual list, in any order; at the root, a string is a substring of text
 * output; other values must be equal.
 */
export function diffContains(expected: unknown, actual: unknown, path = '$'): Difference[] {
  if (expected === null) return actual === undefined || actual === null ? [] : [{ path, message: `expected absent, got ${show(actual)}` }];
  if (path === '$' && typeof expected === 'string' && typeof actual === 'string') {
    return normaliseText(actual).includes(normaliseText(expected)) ? [] : [{ path, message: `the text does not contain ${show(expected)}` }];
  }
  if (isRecord(expected)) {
    if (!isRecord(actual)) return [{ path, message: `expected an object, got ${kind(actual)}${actual === undefined ? '' : ` ${show(actual)}`}` }];
    const out: Difference[] = [];
    for (const [key, value] of Object.entries(expected)) {
      if (value === null) {
        if (actual[key] !== undefined && actual[key] !== null) out.push({ path: child(path, key), message: `expected absent, got ${show(actual[key])}` });
      } else if (!Object.hasOwn(actual, key)) {
        out.push({ path: child(path, key), message: `missing (expected ${show(value)})` });
      } else {
        out.push(...diffContains(value, actual[key], child(path, key)));
      }
    }
    return out;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [{ path, message: `expected a list, got ${kind(actual)}${actual === undefined ? '' : ` ${show(actual)}`}` }];
    const used = new Set<number>();
    const out: Difference[] = [];
    expected.forEach((item, index) => {
      const match = actual.findIndex((candidate, i) => !used.has(i) && diffContains(item, candidate, '$item').length === 0);
      if (match >= 0) {
        used.add(match);
        return;
      }
      // Show why the item at the same index (or the only one) does not match, to guide the fix.
      const closest = actual.length === 1 ? 0 : index < actual.length ? index : -1;
      if (closest >= 0 && !used.has(closest)) out.push(...diffContains(item, actual[closest], child(path, closest)));
      else out.push({ path: child(path, index), message: `no item of the list contains ${show(item)}` });
    });
    return out;
  }
  if (isDeepStrictEqual(expected, actual)) return [];
  return [{ path, message: actual === undefined ? `missing (expected ${show(expected)})` : `expected ${show(expected)}, got ${show(actual)}` }];
}

/** Indented lines for a failure report, at most `limit` of them. */
export function formatDifferences(differences: readonly Difference[], indent = '      ', limit = 20): string {
  const lines = differences.slice(0, limit).map((d) => `${indent}${d.path}: ${d.message}`);
  if (differences.length > limit) lines.push(`${indent}… and ${differences.length - limit} more difference${differences.length - limit === 1 ? '' : 's'}`);
  return lines.join('\n');
}
