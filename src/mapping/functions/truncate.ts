/** `$truncate(text, maxChars, ellipsis?)`: text cut to at most maxChars characters, on a grapheme boundary. */
import { MappingFunctionError, functionErrorCodes } from './function-error.js';

const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** Length in Unicode code points (what most receivers count as characters; a surrogate pair is one). */
function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Returns `text` unchanged when it has at most `maxChars` code points; otherwise the longest
 * prefix of whole grapheme clusters (so emoji, flags, skin tones and accented letters are never
 * split) followed by `ellipsis` (default `…`), the whole at most `maxChars` code points.
 */
export function truncate(text: unknown, maxChars: unknown, ellipsis?: unknown): string | undefined {
  if (text === undefined || text === null) return undefined;
  if (typeof maxChars !== 'number' || !Number.isInteger(maxChars) || maxChars < 1) {
    throw new MappingFunctionError(functionErrorCodes.badArgument, `$truncate: maxChars must be a whole number of at least 1, not ${JSON.stringify(maxChars)}`);
  }
  const mark = ellipsis === undefined || ellipsis === null ? '…' : String(ellipsis);
  const source = typeof text === 'string' ? text : String(text);
  if (codePoints(source) <= maxChars) return source;
  const budget = maxChars - codePoints(mark);
  if (budget < 0) {
    throw new MappingFunctionError(functionErrorCodes.badArgument, `$truncate: the ellipsis is longer than maxChars (${maxChars})`);
  }
  let out = '';
  let used = 0;
  for (const { segment } of segmenter.segment(source)) {
    const size = codePoints(segment);
    if (used + size > budget) break;
    out += segment;
    used += size;
  }
  return out.trimEnd() + mark;
}
