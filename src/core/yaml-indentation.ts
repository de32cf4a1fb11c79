/**
 * YAML indentation mistakes in plain words, at the line that is wrong. The yaml parser reports
 * most of them as "Nested mappings are not allowed in compact mappings" at the line above the
 * bad one (the key whose value it then tries to continue); this finds the line the analyst must
 * fix and says what is wrong with its indentation.
 */

export interface YamlErrorLike {
  code: string;
  /** 1-based line and column where the parser noticed the problem. */
  linePos?: readonly { line: number; col: number }[] | undefined;
}

export interface IndentationIssue {
  line: number;
  column: number;
  message: string;
}

const indentOf = (text: string): number => /^ */.exec(text)?.[0].length ?? 0;
const isContent = (text: string): boolean => text.trim() !== '' && !text.trimStart().startsWith('#');
const spaces = (n: number): string => `${n} space${n === 1 ? '' : 's'}`;

/** The first line after `from` (1-based) with content, with its number. */
function nextContentLine(lines: readonly string[], from: number): { no: number; text: string } | undefined {
  for (let i = from; i < lines.length; i++) if (isContent(lines[i] ?? '')) return { no: i + 1, text: lines[i] ?? '' };
  return undefined;
}

function previousContentLine(lines: readonly string[], before: number): { no: number; text: string } | undefined {
  for (let i = before - 2; i >= 0; i--) if (isContent(lines[i] ?? '')) return { no: i + 1, text: lines[i] ?? '' };
  return undefined;
}

/** Where the keys of a line's mapping start: after "- " for a list item. */
function keyColumn(text: string): number {
  const m = /^( *)(- +)?/.exec(text);
  return (m?.[1]?.length ?? 0) + (m?.[2]?.length ?? 0);
}

const keyName = (text: string): string => /^[ -]*([^:#]+?)\s*:/.exec(text)?.[1] ?? text.trim();

/** A plain-words description of an indentation error, or undefined when it is not one. */
export function describeIndentation(err: YamlErrorLike, source: string): IndentationIssue | undefined {
  const at = err.linePos?.[0];
  if (at === undefined) return undefined;
  const lines = source.split(/\r?\n/);
  const here = lines[at.line - 1] ?? '';
  switch (err.code) {
    case 'TAB_AS_INDENT':
      return { line: at.line, column: 1, message: 'indentation: this line is indented with a tab; YAML indents with spaces only' };
    case 'BLOCK_AS_IMPLICIT_KEY':
    case 'MULTILINE_IMPLICIT_KEY': {
      // The key on `here` has a value on its own line; the next line is indented deeper, so the
      // parser reads it as a continuation. That deeper line is the one to fix.
      const next = nextContentLine(lines, at.line);
      if (next === undefined || indentOf(next.text) <= keyColumn(here)) return undefined;
      const want = keyColumn(here);
      return {
        line: next.no,
        column: indentOf(next.text) + 1,
        message:
          `indentation: "${keyName(next.text)}" is indented ${spaces(indentOf(next.text))}, deeper than "${keyName(here)}" on line ${at.line} ` +
          `(${spaces(want)}), which already has a value; keys of the same block start in the same column: indent it ${spaces(want)}`,
      };
    }
    case 'BAD_INDENT': {
      const previous = previousContentLine(lines, at.line);
      const want = previous === undefined ? 0 : keyColumn(previous.text);
      // Also raised for an unclosed { or [ above: only an actual difference in indentation is one.
      if (indentOf(here) === want || !/^ *[^ :#]+?\s*:/.test(here) || /[[{]/.test(previous?.text ?? '')) return undefined;
      return {
        line: at.line,
        column: indentOf(here) + 1,
        message:
          `indentation: "${keyName(here)}" is indented ${spaces(indentOf(here))}, but the keys of its block above are indented ${spaces(want)}; ` +
          'line the keys of one block up in the same column',
      };
    }
    case 'MISSING_CHAR': {
      const previous = previousContentLine(lines, at.line);
      if (previous === undefined || !/^ *- /.test(previous.text)) return undefined;
      const want = keyColumn(previous.text);
      return {
        line: at.line,
        column: indentOf(here) + 1,
        message:
          `indentation: "${keyName(here)}" is indented ${spaces(indentOf(here))}; inside a list item the keys line up with the first key after "- " ` +
          `on line ${previous.no} (${spaces(want)})`,
      };
    }
    default:
      return undefined;
  }
}
