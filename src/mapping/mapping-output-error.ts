/**
 * The one error for "the mapping built something the destination will not send", created where
 * the output is checked (fhir_r4, hl7v2_mllp). Its message is the reason in one line, led by the
 * mapping's file:line:column of the key that builds the first bad element, so that every view of
 * a dead letter (CLI, admin API, console) can show it as it is:
 *   mappings/whatsapp-to-communication.jsonata:133:5: Communication.status: code is not in the required value set (and 1 more)
 */
import path from 'node:path';
import { SwitchboardError, type ErrorCode, type SourcePosition } from '../core/errors.js';
import type { CompiledMapping } from './jsonata-mapping.js';

/** A path relative to the working directory when it is below it (how analysts name files). */
export function shownFile(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/** Each issue with the mapping position it points at (the text before its first ':' is the element path). */
export function locateIssues(mapping: Pick<CompiledMapping, 'locate'>, issues: readonly string[]): { issue: string; at: SourcePosition | undefined }[] {
  return issues.map((issue) => ({ issue, at: mapping.locate?.(issue.split(':')[0] ?? '') }));
}

/** "file:line:column: " for a position, "file: " without one. */
export function positionPrefix(file: string, at: Omit<SourcePosition, 'file'> | undefined): string {
  return at === undefined ? `${shownFile(file)}: ` : `${shownFile(file)}:${at.line}:${at.column}: `;
}

export function mappingOutputInvalid(
  mapping: Pick<CompiledMapping, 'file' | 'version' | 'locate'>,
  issues: readonly string[],
  options: { what: string; code?: ErrorCode; output?: unknown; details?: Record<string, unknown> },
): SwitchboardError {
  const located = locateIssues(mapping, issues);
  const first = located.find((l) => l.at !== undefined) ?? located[0];
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  const message =
    first === undefined
      ? `${shownFile(mapping.file)}: the mapping output is not a valid ${options.what}`
      : `${positionPrefix(mapping.file, first.at)}${first.issue}${more}`;
  return new SwitchboardError(options.code ?? 'MAPPING_OUTPUT_INVALID', message, {
    details: {
      ...options.details,
      issues: [...issues],
      positions: located.map((l) => (l.at === undefined ? null : { line: l.at.line, column: l.at.column })),
      mapping_file: mapping.file,
      mapping_version: mapping.version,
      invalid: options.what,
    },
    ...(options.output === undefined ? {} : { rejectedOutput: options.output }),
  });
}
