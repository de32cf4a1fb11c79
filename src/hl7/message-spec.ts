/**
 * The JSON shape an HL7 mapping returns: plain, unescaped values by segment and field number.
 * Switchboard adds MSH, escapes every value, handles line breaks and lengths, and builds ER7.
 *
 * ```json
 * {
 *   "message_type": "ORM^O01^ORM_O01",
 *   "segments": [
 *     { "segment": "PID", "fields": {
 *         "1": "1",
 *         "3": [{ "1": "15551234567", "4": { "1": "WHATSAPP" }, "5": "PT" }],
 *         "5": { "1": "Jane Demo", "7": "D" } } },
 *     { "segment": "ORC", "fields": { "1": "NW", "2": { "1": "Q7KX", "2": "SWITCHBOARD" } } },
 *     { "segment": "NTE", "fields": { "1": "1", "2": "P", "3": "Is my A1c | ok?\nThanks" } }
 *   ]
 * }
 * ```
 *
 * A field is one of:
 * - a value: text, a number (written as is) or null (empty);
 * - an object of components by number, `{"1": "DOE", "2": "JANE"}`; a component is a value or an
 *   object of subcomponents by number, `{"1": "WHATSAPP", "2": "https://…", "3": "URI"}`;
 * - an array of repetitions, each a value or an object of components.
 *
 * Numbers missing from an object are empty. Values are plain text: `|^~\&` are escaped by
 * Switchboard, never by the mapping (write `"a|b"`, not `"a\\F\\b"`). The HL7 null `""` is
 * written as the two-character text `"\"\""`.
 *
 * Line breaks in text: NTE-3 is FT; OBX-5 is FT or TX as OBX-2 says; every other field has no
 * line breaks (they become a space). A segment may declare more with `"field_types": {"3": "TX"}`.
 * Each partner's `line_breaks` setting says how breaks are written (docs/destinations/hl7v2-mllp.md).
 */
import { z } from 'zod';

export type Hl7Leaf = string | number | null;
export type Hl7Subcomponents = Record<string, Hl7Leaf>;
export type Hl7Component = Hl7Leaf | Hl7Subcomponents;
export type Hl7Components = Record<string, Hl7Component>;
export type Hl7Repetition = Hl7Leaf | Hl7Components;
export type Hl7FieldValue = Hl7Repetition | Hl7Repetition[];

/** Largest number accepted as a field, component or subcomponent key. */
export const MAX_POSITION = 999;
const POSITION = /^[1-9]\d{0,2}$/;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A schema that picks its branch by the JSON type of the value, so that errors point at the
 * deepest wrong value (`segments[2].fields.3[0].4.1`) instead of a useless "invalid union".
 */
function byJsonType<T>(pick: (value: unknown) => z.ZodType | string, description: string): z.ZodType<T> {
  return z
    .unknown()
    .transform((value, ctx) => {
      const schema = pick(value);
      if (typeof schema === 'string') {
        ctx.addIssue({ code: 'custom', message: schema });
        return z.NEVER;
      }
      const result = schema.safeParse(value);
      if (!result.success) {
        for (const issue of result.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
        return z.NEVER;
      }
      return result.data as T;
    })
    .describe(description) as unknown as z.ZodType<T>;
}

function kindOf(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'boolean') return 'a boolean (write "Y"/"N" or the code the partner expects)';
  return value === null ? 'null' : `a ${typeof value}`;
}

const leaf: z.ZodType<Hl7Leaf> = byJsonType<Hl7Leaf>((v) => {
  if (typeof v === 'string' || v === null) return z.union([z.string(), z.null()]);
  if (typeof v === 'number') return z.number({ message: 'a finite number' });
  return `expected text, a number or null, got ${kindOf(v)}`;
}, 'A value: text, a number or null (empty).');

/** An object keyed "1".."999": checks the keys with a path-precise message each. */
function positions<T extends z.ZodType>(value: T, what: string): z.ZodType<Record<string, z.output<T>>> {
  return z.record(z.string(), value).superRefine(
    (record, ctx) => {
      for (const key of Object.keys(record)) {
        if (!POSITION.test(key)) {
          ctx.addIssue({ code: 'custom', path: [key], message: `"${key.slice(0, 20)}" is not a ${what} number: keys are "1" to "${MAX_POSITION}"` });
        }
      }
    },
    // Report bad keys even when some values are wrong too, so one run lists every problem.
    { when: (payload) => isPlainObject(payload.value) },
  ) as unknown as z.ZodType<Record<string, z.output<T>>>;
}

const subcomponents = positions(leaf, 'subcomponent');
const component: z.ZodType<Hl7Component> = byJsonType<Hl7Component>(
  (v) => (isPlainObject(v) ? subcomponents : leaf),
  'A component: a value, or an object of subcomponents by number.',
);
const components = positions(component, 'component');
const repetition: z.ZodType<Hl7Repetition> = byJsonType<Hl7Repetition>(
  (v) => (isPlainObject(v) ? components : leaf),
  'A repetition: a value, or an object of components by number.',
);
export const fieldValueSchema: z.ZodType<Hl7FieldValue> = byJsonType<Hl7FieldValue>(
  (v) => (Array.isArray(v) ? z.array(repetition).min(1, 'an empty array: write null for an empty field') : repetition),
  'A field: a value, an object of components by number, or an array of repetitions.',
);

export const segmentSpecSchema = z
  .strictObject({
    segment: z
      .string()
      .regex(/^[A-Z][A-Z0-9]{2}$/, 'a segment name: three upper-case letters or digits, e.g. "PID"')
      .refine((name) => name !== 'MSH', 'MSH is built by Switchboard from the destination settings; leave it out')
      .describe('Segment name, e.g. PID, ORC, OBR, NTE, OBX, TXA, PRD.'),
    fields: positions(fieldValueSchema, 'field').describe('Fields by number ("1" = PID-1). Missing numbers are empty.'),
    field_types: z
      .record(z.string().regex(POSITION, 'a field number'), z.enum(['FT', 'TX', 'ST']))
      .optional()
      .describe('Declares text fields beyond the built-in ones (NTE-3 FT, OBX-5 per OBX-2), for line-break handling.'),
  })
  .describe('One segment.');
export type SegmentSpec = z.output<typeof segmentSpecSchema>;

/** `ORM^O01^ORM_O01`: message code, trigger event and (optional) structure. */
export const MESSAGE_TYPE_PATTERN = /^([A-Z][A-Z0-9]{2})\^([A-Z0-9]{3})(?:\^([A-Z][A-Z0-9]{2}_[A-Z0-9]{3}))?$/;

export const messageSpecSchema = z
  .strictObject({
    message_type: z
      .string()
      .regex(MESSAGE_TYPE_PATTERN, 'MSH-9 as code^event^structure, e.g. "ORM^O01^ORM_O01"')
      .describe('MSH-9, e.g. ORM^O01^ORM_O01, MDM^T02^MDM_T02, RQA^I08^RQA_I08.'),
    segments: z.array(segmentSpecSchema).min(1, 'at least one segment after MSH').max(1000).describe('The segments after MSH, in order.'),
  })
  .describe('An HL7 v2 message as an HL7 mapping returns it; Switchboard adds MSH and builds ER7.');
export type MessageSpec = z.output<typeof messageSpecSchema>;

/** Zod issues as `path: message` lines, e.g. `segments[2].fields.3[0].4.1: expected text…`. */
export function formatSpecIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(root)' : out;
}
