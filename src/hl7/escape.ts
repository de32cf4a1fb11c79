/**
 * Turning chat text into ER7 leaves: sanitising, line breaks per field type, escaping, charset
 * folding and length splitting. Nothing here ever lets a delimiter, a segment separator or an
 * MLLP frame byte through: the result of `escapeLeaf` contains no character below 0x20 at all.
 *
 * Order matters (HL7 v2 chapter 2, escape sequences): `\` becomes `\E\` **first**, then `|` `^` `&` `~`.
 */

/** MSH-18 values Switchboard supports, and how each is written on the wire. */
export const charsets = ['UNICODE UTF-8', 'ASCII', '8859/1'] as const;
export type Charset = (typeof charsets)[number];

export function wireEncoding(charset: Charset): BufferEncoding {
  switch (charset) {
    case 'UNICODE UTF-8':
      return 'utf8';
    case 'ASCII':
      return 'ascii';
    case '8859/1':
      return 'latin1';
  }
}

/** How a line break in chat text is written in a field of type FT (formatted text, e.g. NTE-3). */
export const ftLineBreaks = ['br', 'hex', 'space', 'split_segments'] as const;
/** … in a field of type TX (text data, e.g. OBX-5 with OBX-2 = TX). */
export const txLineBreaks = ['repetition', 'br', 'hex', 'space', 'split_segments'] as const;
/** … in any other field (ST, CWE text, names...), where HL7 has no line break at all. */
export const otherLineBreaks = ['space', 'hex'] as const;

export type FtLineBreak = (typeof ftLineBreaks)[number];
export type TxLineBreak = (typeof txLineBreaks)[number];
export type OtherLineBreak = (typeof otherLineBreaks)[number];
export type LineBreakStyle = FtLineBreak | TxLineBreak | OtherLineBreak;

/** The data type family of a field, as far as line breaks are concerned. */
export type TextKind = 'FT' | 'TX' | 'other';

const BR = '\\.br\\';
const HEX_CRLF = '\\X0D\\\\X0A\\';

/**
 * Normalises text before escaping: every line break form (`\r\n`, `\r`, U+2028, U+2029, U+0085)
 * becomes `\n`, a tab becomes a space, every other C0 control (0x00–0x1F, including the MLLP
 * frame bytes 0x0B and 0x1C), DEL and the C1 controls are removed, lone surrogates become
 * U+FFFD. Then the text is folded to what the charset can carry.
 */
export function sanitizeText(text: string, charset: Charset = 'UNICODE UTF-8'): string {
  let out = text
    .replace(/\r\n|[\r\u2028\u2029\u0085]/g, '\n')
    .replace(/\t/g, ' ')
    .replace(/[\u0000-\u0009\u000B-\u001F\u007F-\u009F]/g, '')
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD')
    .normalize('NFC');
  if (charset === 'ASCII') out = foldTo(out, 0x7f);
  else if (charset === '8859/1') out = foldTo(out, 0xff);
  return out;
}

/**
 * Keeps characters up to `max`; others lose their diacritics when that makes them fit
 * (`é` → `e` for ASCII), otherwise become `?`. Lossy by design: the partner cannot take more.
 */
function foldTo(text: string, max: number): string {
  let out = '';
  for (const ch of text) {
    if (ch.codePointAt(0)! <= max) {
      out += ch;
      continue;
    }
    const stripped = ch.normalize('NFKD').replace(/\p{M}/gu, '');
    out += [...stripped].every((c) => c.codePointAt(0)! <= max) && stripped !== '' ? stripped : '?';
  }
  return out;
}

/** Escapes the delimiters of one line (no line breaks left): `\` first, then `| ^ & ~`. */
export function escapeDelimiters(line: string): string {
  return line.replace(/\\/g, '\\E\\').replace(/\|/g, '\\F\\').replace(/\^/g, '\\S\\').replace(/&/g, '\\T\\').replace(/~/g, '\\R\\');
}

/** Escaped tokens of a line: one per character (a code point), so splitting never cuts an escape. */
function tokens(line: string): string[] {
  return [...line].map(escapeDelimiters);
}

/**
 * Splits escaped tokens into pieces of at most `max` characters (code points of the escaped
 * text), never inside a token. A token longer than `max` (only with absurdly small limits) gets
 * a piece of its own.
 */
function chunk(toks: readonly string[], max: number): string[] {
  const pieces: string[] = [];
  let current = '';
  let length = 0;
  for (const t of toks) {
    const l = [...t].length;
    if (length > 0 && length + l > max) {
      pieces.push(current);
      current = '';
      length = 0;
    }
    current += t;
    length += l;
  }
  if (length > 0 || pieces.length === 0) pieces.push(current);
  return pieces;
}

export interface TextLeafResult {
  /**
   * The escaped text as field repetitions (one, unless the text was split for length or the
   * style is `repetition`).
   */
  repetitions: string[];
  /** For `split_segments`: one entry per segment to emit, each with its repetitions. */
  segments?: string[][];
}

/**
 * Escapes one text value for a field of the given kind. `max` is the longest repetition
 * allowed (escaped characters); longer text is split into several repetitions.
 */
export function escapeText(text: string, kind: TextKind, style: LineBreakStyle, max: number, charset: Charset): TextLeafResult {
  const lines = sanitizeText(text, charset).split('\n');
  const joinWith = (sep: string): string[] => {
    const toks: string[] = [];
    lines.forEach((line, i) => {
      if (i > 0) toks.push(sep);
      toks.push(...tokens(line));
    });
    return chunk(toks, max);
  };
  if (kind === 'other') {
    // No line breaks exist in these types: a space, or (by agreement) hex CR LF.
    return { repetitions: [joinWith(style === 'hex' ? HEX_CRLF : ' ').join('')] };
  }
  switch (style) {
    case 'br':
      return { repetitions: joinWith(BR) };
    case 'hex':
      return { repetitions: joinWith(HEX_CRLF) };
    case 'space':
      return { repetitions: joinWith(' ') };
    case 'repetition':
      return { repetitions: lines.flatMap((line) => chunk(tokens(line), max)) };
    case 'split_segments': {
      const segments = lines.map((line) => chunk(tokens(line), max));
      return { repetitions: segments.flat(), segments };
    }
  }
}

/** Escapes a value that is not free text (an id, a code, a name): one line, no splitting. */
export function escapeValue(text: string, charset: Charset): string {
  return escapeDelimiters(sanitizeText(text, charset).replace(/\n/g, ' '));
}
