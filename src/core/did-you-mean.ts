/** Suggestions for misspelt keys, kinds and file names in error messages: ` (did you mean "x"?)` or ''. */
import { readdirSync } from 'node:fs';
import path from 'node:path';

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] ?? 0;
      row[j] = Math.min(above + 1, (row[j - 1] ?? 0) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] ?? 0;
}

export function didYouMean(value: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(value.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? ` (did you mean "${best}"?)` : '';
}

/**
 * For a file that does not exist: ` (did you mean "x.jsonata"?)` for a near name in its folder,
 * else the files of that kind that are there (when few), else that the folder does not exist.
 */
export function missingFileHint(file: string, extension = '.jsonata'): string {
  let names: string[];
  try {
    names = readdirSync(path.dirname(file)).filter((n) => n.endsWith(extension));
  } catch {
    return ' (and its folder does not exist)';
  }
  // Names compared without the extension, which every candidate shares.
  const stem = (name: string) => name.slice(0, name.length - extension.length);
  const near = didYouMean(stem(path.basename(file)), names.map(stem));
  const hint = near === '' ? '' : near.replace(/"\?\)$/, `${extension}"?)`);
  if (hint !== '' || names.length === 0) return hint;
  return names.length <= 8 ? ` (${extension} files there: ${names.sort().join(', ')})` : ` (none of the ${names.length} ${extension} files there is close)`;
}
