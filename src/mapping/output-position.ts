/**
 * Points an output problem back at the mapping: `Communication.payload[0].contentAttachment.contentType`
 * → the line and column of the `'contentType':` key in the object constructor that builds it.
 * A heuristic over the JSONata syntax tree (keys of nested object constructors); when nothing
 * fits, there is no position and the element path alone is reported.
 */
import jsonata from 'jsonata';

/** 1-based line and column of a character offset. */
export function lineColumnAt(text: string, offset: number): { line: number; column: number } {
  const clamped = Math.max(0, Math.min(offset, text.length));
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < clamped; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: clamped - lineStart + 1 };
}

interface KeyedPair {
  chain: string[];
  start: number;
}

function collectKeys(ast: unknown): KeyedPair[] {
  const pairs: KeyedPair[] = [];
  const visit = (node: unknown, chain: string[]): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item, chain);
      return;
    }
    if (typeof node !== 'object' || node === null) return;
    const n = node as { type?: unknown; value?: unknown; lhs?: unknown };
    if (n.type === 'unary' && n.value === '{' && Array.isArray(n.lhs)) {
      for (const pair of n.lhs as unknown[]) {
        if (!Array.isArray(pair)) continue;
        const [key, value] = pair as [{ type?: unknown; value?: unknown; position?: unknown } | undefined, unknown];
        if (key?.type === 'string' && typeof key.value === 'string' && typeof key.position === 'number') {
          const next = [...chain, key.value];
          pairs.push({ chain: next, start: Math.max(0, key.position - key.value.length - 2) });
          visit(value, next);
        } else {
          visit(value, chain);
        }
      }
      return;
    }
    for (const value of Object.values(node)) if (typeof value === 'object') visit(value, chain);
  };
  visit(ast, []);
  return pairs;
}

/** Element names of a FHIR path, without the resource type and indexes: `a.b[0].c` → [a, b, c]. */
function elementNames(path: string): string[] {
  const names = path
    .replace(/\[[^\]]*\]/g, '')
    .split('.')
    .filter((s) => s !== '');
  return /^[A-Z]/.test(names[0] ?? '') ? names.slice(1) : names;
}

/** The position of the mapping key that produces `elementPath`, when one fits. */
export function locateOutputElement(source: string, elementPath: string): { line: number; column: number } | undefined {
  const names = elementNames(elementPath);
  const last = names[names.length - 1];
  if (last === undefined) return undefined;
  let ast: unknown;
  try {
    ast = jsonata(source).ast();
  } catch {
    return undefined;
  }
  let best: KeyedPair | undefined;
  let bestScore = 0;
  for (const pair of collectKeys(ast)) {
    if (pair.chain[pair.chain.length - 1] !== last) continue;
    // Score: how many trailing names of the path the key chain matches.
    let score = 0;
    while (score < pair.chain.length && score < names.length && pair.chain[pair.chain.length - 1 - score] === names[names.length - 1 - score]) score++;
    if (score > bestScore) {
      best = pair;
      bestScore = score;
    }
  }
  return best === undefined ? undefined : lineColumnAt(source, best.start);
}
