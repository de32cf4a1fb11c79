/**
 * The structural check every built message passes before it is sent, with parsers we did not
 * write:
 *
 * 1. Bytes: `\r` is the only control character, every segment ends with `\r`, no segment ends
 *    with a stray `|`, no empty segment.
 * 2. `@medplum/core` `Hl7Message.parse` (delimiters read from MSH-1/2): the same number of
 *    segments with the same names, and every field, repetition, component and subcomponent equal
 *    to what the builder meant. A value that smuggled a delimiter or a line break in would show
 *    up here as an extra field, component or segment.
 * 3. With `structure: 'schema'`: `@redoxengine/redox-hl7-v2`'s schema-driven parser (v2.5.x
 *    message structures, segment groups): required segments and groups present, and every
 *    segment placed where the structure allows (Redox silently drops misplaced or unknown
 *    segments, so the segments it kept are counted). Structures it does not know (or Z-segments
 *    a partner agreed to) need `structure: 'delimiters'`, which skips this step.
 *
 * Issues are positions and segment names only, never values.
 */
import { createRequire } from 'node:module';
import { Hl7Message } from '@medplum/core';
import { ENCODING_CHARACTERS, isHeaderSegment, type Er7Field, type Er7Segment } from './er7.js';

export type StructureCheck = 'schema' | 'delimiters';

export interface VerifyResult {
  issues: string[];
  /** `schema (ORM_O01)`, or `delimiters` and why the schema step did not run. */
  structure: string;
}

interface RedoxParser {
  parse(text: string): unknown;
}
interface RedoxModule {
  Parser: new () => RedoxParser;
}
interface RedoxSchema {
  structure: Record<string, Record<string, string> | undefined>;
  messages: Record<string, unknown>;
}

let redox: { module: RedoxModule; schema: RedoxSchema } | undefined;
/** Loaded on first use (≈0.4 s: 3 000 schema files), then shared: it is immutable. */
function loadRedox(): { module: RedoxModule; schema: RedoxSchema } {
  if (!redox) {
    const require = createRequire(import.meta.url);
    redox = {
      module: require('@redoxengine/redox-hl7-v2') as RedoxModule,
      schema: require('@redoxengine/redox-hl7-v2/schema') as RedoxSchema,
    };
  }
  return redox;
}

/** The Redox message structure for MSH-9 (`ORM^O01` -> `ORM_O01`), when Redox knows it. */
export function redoxStructureFor(code: string, event: string): string | undefined {
  const { schema } = loadRedox();
  const key = code === 'ACK' ? 'ACK' : event;
  const structure = schema.structure[code]?.[key];
  return structure && schema.messages[structure] ? structure : undefined;
}

function sameField(actual: string[][], expected: Er7Field, subcomponent: string): boolean {
  if (actual.length !== expected.length) return false;
  return expected.every((rep, r) => {
    const a = actual[r]!;
    if (a.length !== rep.length) return false;
    return rep.every((comp, c) => {
      const subs = a[c]!.split(subcomponent);
      return subs.length === comp.length && comp.every((s, i) => subs[i] === s);
    });
  });
}

/** Counts the segments Redox kept in its JSON (segment keys are three characters). */
function countRedoxSegments(node: unknown): number {
  if (Array.isArray(node)) return node.reduce((n: number, item) => n + countRedoxSegments(item), 0);
  if (typeof node !== 'object' || node === null) return 0;
  let n = 0;
  for (const [key, value] of Object.entries(node)) {
    if (/^[A-Z][A-Z0-9]{2}$/.test(key)) n += Array.isArray(value) ? value.length : 1;
    else if (!/^\d+$/.test(key)) n += countRedoxSegments(value);
  }
  return n;
}

export function verifyBuiltMessage(text: string, expected: readonly Er7Segment[], o: { structure: StructureCheck }): VerifyResult {
  const issues: string[] = [];
  // 1. Bytes.
  const control = /[\u0000-\u000C\u000E-\u001F\u007F]/.exec(text);
  if (control) issues.push(`control character 0x${control[0].charCodeAt(0).toString(16).padStart(2, '0')} at offset ${control.index}`);
  if (!text.endsWith('\r')) issues.push('the message does not end with a segment separator');
  const lines = text.split('\r').slice(0, -1);
  lines.forEach((line, i) => {
    if (line === '') issues.push(`segment ${i + 1} is empty`);
    else if (line.endsWith('|')) issues.push(`segment ${i + 1} (${line.slice(0, 3)}) ends with a stray field separator`);
  });
  if (issues.length > 0) return { issues, structure: 'not checked' };

  // 2. Medplum, field by field.
  let parsed: Hl7Message;
  try {
    parsed = Hl7Message.parse(text);
  } catch {
    return { issues: ['@medplum/core cannot parse the message'], structure: 'not checked' };
  }
  const ctx = parsed.context;
  if (ctx.fieldSeparator !== '|' || `${ctx.componentSeparator}${ctx.repetitionSeparator}${ctx.escapeCharacter}${ctx.subcomponentSeparator}` !== ENCODING_CHARACTERS) {
    issues.push('MSH-1/MSH-2 are not the standard delimiters');
  }
  const segments = parsed.segments.filter((s, i) => !(i === parsed.segments.length - 1 && s.name === '' && s.fields.length <= 1));
  if (segments.length !== expected.length) {
    issues.push(`re-parsed into ${segments.length} segments, built ${expected.length}`);
  }
  segments.forEach((segment, i) => {
    const want = expected[i];
    if (!want) return;
    if (segment.name !== want.name) {
      issues.push(`segment ${i + 1}: re-parsed as ${segment.name.replace(/[^A-Z0-9]/g, '?') || '(empty)'}, built ${want.name}`);
      return;
    }
    const fields = segment.fields.slice(1);
    if (fields.length !== want.fields.length) {
      issues.push(`segment ${i + 1} (${want.name}): re-parsed with ${fields.length} fields, built ${want.fields.length}`);
      return;
    }
    fields.forEach((f, k) => {
      const n = isHeaderSegment(want.name) ? k + 2 : k + 1;
      if (isHeaderSegment(want.name) && k === 0) {
        if (f.toString() !== ENCODING_CHARACTERS) issues.push(`segment ${i + 1} (${want.name}-2): encoding characters differ`);
        return;
      }
      if (!sameField(f.components, want.fields[k]!, ctx.subcomponentSeparator)) {
        issues.push(`segment ${i + 1} (${want.name}-${n}): differs after re-parse`);
      }
    });
  });
  if (issues.length > 0) return { issues, structure: 'not checked' };

  // 3. Redox, group-aware structure.
  if (o.structure === 'delimiters') return { issues, structure: 'delimiters' };
  const msh9 = expected[0]?.fields[7]?.[0];
  const code = msh9?.[0]?.[0] ?? '';
  const event = msh9?.[1]?.[0] ?? '';
  const structure = redoxStructureFor(code, event);
  if (!structure) {
    return { issues: [`no v2.5 structure known for ${code}^${event}: set structure_check: delimiters for this partner`], structure: 'not checked' };
  }
  try {
    const json = new (loadRedox().module.Parser)().parse(text);
    const kept = countRedoxSegments(json);
    if (kept !== expected.length) {
      issues.push(`${expected.length - kept} segment(s) are not allowed where they are in ${structure} (or unknown to it)`);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : '';
    // Redox's own messages name segments and groups only ("missing required segment ORC.").
    const safe = /^Message is missing required (segment|group) [A-Z0-9_]+\.$/.test(message) ? message : 'the schema parser rejected the message';
    issues.push(`${structure}: ${safe}`);
  }
  return { issues, structure: `schema (${structure})` };
}
