/**
 * The helper functions every compiled mapping (and every channel `filter` and `when`) can call.
 * One table holds each function's signature, documentation and examples: `compileMapping`
 * registers them from it, `switchboard docs` writes docs/reference/functions.md and the function
 * section of docs/analyst-guide.md from it, and a unit test runs every example.
 */
import { e164 } from './e164.js';
import { fhirRef } from './fhir-ref.js';
import { hl7Escape, hl7Ts } from './hl7.js';
import { lookupTableFunction, type TableCache } from './lookup-table.js';
import { truncate } from './truncate.js';

export interface FunctionExample {
  /** A JSONata expression, evaluated with `$` = `input` (default `{}`). */
  expression: string;
  input?: unknown;
  /** The expected result (absent: undefined, i.e. the field is left out). */
  result?: unknown;
  /** When the example shows an error: the message starts with this. */
  error?: string;
  /** One line said about the example in the docs. */
  note?: string;
}

export interface MappingFunction {
  /** Called as `$<name>(...)`. */
  name: string;
  /** JSONata function signature (argument and result types). */
  signature: string;
  usage: string;
  summary: string;
  /** Markdown paragraphs/bullets. */
  details: string[];
  examples: FunctionExample[];
  create(ctx: MappingFunctionContext): (...args: never[]) => unknown;
}

export interface MappingFunctionContext {
  /** The mapping file the function is compiled into. */
  file: string;
  tables: TableCache;
}

export const mappingFunctions: readonly MappingFunction[] = [
  {
    name: 'e164',
    signature: '<(sn)?s?:s>',
    usage: '$e164(phone, defaultCountry?)',
    summary: 'A phone number in E.164 form (`+` and digits), or nothing when it is not a valid number.',
    details: [
      'Numbers starting with `+` or `00` are international. With `defaultCountry` (ISO 3166 two-letter code, e.g. `NL`), other numbers are national numbers of that country. Without it, 8 to 15 bare digits are read as an international number written without `+` (WhatsApp `wa_id`, Twilio `WaId`).',
      'The result is checked against the numbering plan of its country (libphonenumber metadata); an impossible number gives nothing, so `"phone": $e164(x)` leaves the field out rather than sending garbage.',
    ],
    examples: [
      { expression: "$e164('+1 (650) 555-1234')", result: '+16505551234' },
      { expression: "$e164('06 12345678', 'NL')", result: '+31612345678', note: 'a national number, with its country' },
      { expression: "$e164('0031 6 12345678')", result: '+31612345678' },
      { expression: '$e164(sender.platform_id)', input: { sender: { platform_id: '16505551234' } }, result: '+16505551234', note: 'a WhatsApp wa_id has no +' },
      { expression: "$e164('12345')", note: 'not a phone number: nothing' },
    ],
    create: () => e164,
  },
  {
    name: 'hl7Escape',
    signature: '<(snb)?s?:s>',
    usage: '$hl7Escape(text, lineBreaks?)',
    summary: 'Text made safe for one HL7 v2 field: the encoding characters `|^~\\&` are escaped and line breaks never end the segment.',
    details: [
      '`\\` → `\\E\\`, `|` → `\\F\\`, `^` → `\\S\\`, `&` → `\\T\\`, `~` → `\\R\\`; other control characters → `\\Xhh\\`.',
      "`lineBreaks`: `'br'` (default) writes `\\.br\\` (formatted text, FT/TX fields); `'space'` writes a space (for receivers that do not read escapes); `'hex'` writes `\\X0D\\` / `\\X0A\\`.",
      'Escape each value once, where it goes into a field; do not escape whole segments (their `|` and `^` are structure).',
    ],
    examples: [
      { expression: "$hl7Escape('Pain 7/10 | since Mon & Tue')", result: 'Pain 7/10 \\F\\ since Mon \\T\\ Tue' },
      { expression: "$hl7Escape('line one\\nline two')", result: 'line one\\.br\\line two' },
      { expression: "$hl7Escape('line one\\r\\nline two', 'space')", result: 'line one line two' },
      { expression: "$hl7Escape('C:\\\\path^x')", result: 'C:\\E\\path\\S\\x' },
    ],
    create: () => hl7Escape,
  },
  {
    name: 'hl7Ts',
    signature: '<s?:s>',
    usage: '$hl7Ts(dateTime)',
    summary: 'An ISO 8601 date-time as an HL7 v2 TS/DTM with seconds and UTC offset (`YYYYMMDDHHMMSS+ZZZZ`).',
    details: [
      'The local time is kept as written, with its offset; fractions of a second are dropped. A date alone gives `YYYYMMDD`.',
      'A date-time without a zone is an error (the receiver would read it in its own zone). Canonical message times (`sent_at`, `received_at`) are UTC and end in `Z`.',
    ],
    examples: [
      { expression: '$hl7Ts(sent_at)', input: { sent_at: '2025-03-04T09:15:00Z' }, result: '20250304091500+0000' },
      { expression: "$hl7Ts('2025-03-04T10:15:30.250+01:00')", result: '20250304101530+0100' },
      { expression: "$hl7Ts('2025-03-04')", result: '20250304' },
      { expression: '$hl7Ts($now())', result: '20250304091502+0000', note: 'the mapping clock: in tests, `now`' },
      { expression: "$hl7Ts('2025-03-04T09:15:00')", error: '$hl7Ts: a date-time needs a zone' },
    ],
    create: () => hl7Ts,
  },
  {
    name: 'fhirRef',
    signature: '<s(sn)?s?:o>',
    usage: '$fhirRef(type, id, display?)',
    summary: 'A FHIR Reference `{"reference": "Type/id"}`, or nothing when the id is missing.',
    details: [
      '`type` must look like a resource type (`Patient`, `ServiceRequest`); `id` must be a FHIR id (1 to 64 letters, digits, `-`, `.`), else the mapping fails with SB0101 rather than sending a broken reference.',
      'An empty or missing id gives nothing, so an optional reference simply disappears.',
    ],
    examples: [
      { expression: "$fhirRef('Patient', '7f0c1d2e')", result: { reference: 'Patient/7f0c1d2e' } },
      { expression: "$fhirRef('Patient', '7f0c1d2e', 'Jane Demo')", result: { reference: 'Patient/7f0c1d2e', display: 'Jane Demo' } },
      { expression: "$fhirRef('Practitioner', order.doctor_id)", input: { order: {} }, note: 'no id: nothing' },
      { expression: "$fhirRef('Patient', 'not an id')", error: '$fhirRef: a FHIR id is 1 to 64' },
    ],
    create: () => fhirRef,
  },
  {
    name: 'truncate',
    signature: '<(sn)?n(sn)?:s>',
    usage: '$truncate(text, maxChars, ellipsis?)',
    summary: 'Text shortened to at most `maxChars` characters, cut between whole characters, with `…` when cut.',
    details: [
      '`maxChars` counts Unicode code points (an emoji is one, as most receivers count), and the ellipsis counts too. The cut is always on a grapheme boundary: emoji sequences, flags and accented letters are never split, and trailing spaces before the ellipsis are removed.',
      "`ellipsis` defaults to `…`; pass `'...'` for ASCII-only receivers or `''` for none.",
    ],
    examples: [
      { expression: "$truncate('Short enough', 20)", result: 'Short enough' },
      { expression: "$truncate('I have had a fever since yesterday', 20)", result: 'I have had a fever…' },
      { expression: "$truncate('Thanks 👍🏽👍🏽👍🏽', 10)", result: 'Thanks 👍🏽…', note: 'the thumbs-up keeps its skin tone' },
      { expression: "$truncate('ABCDEFGHIJ', 8, '...')", result: 'ABCDE...' },
    ],
    create: () => truncate,
  },
  {
    name: 'lookupTable',
    signature: '<s(snb)?j?:j>',
    usage: '$lookupTable(table, key, default?)',
    summary: 'The value of `key` in a code table file kept beside the mapping, else `default` (else nothing).',
    details: [
      "A mapping in `mappings/` names a table by its base name: `$lookupTable('lab-codes', code)` reads `mappings/tables/lab-codes.yaml` (or `.yml`, `.json`, `.csv`; exactly one of them).",
      'YAML and JSON tables are one flat map of key → value (a value may be an object). A CSV table has a header row; the first column is the key; the value is the second column, or an object of the other columns when there are more.',
      'Tables are read once when the mapping is compiled; a table name written as a literal is checked then, so a missing or broken table fails `switchboard lint` with file:line:column. Keys are compared exactly (case-sensitive); numbers are looked up as text. The built-in `$lookup(object, key)` is unchanged.',
    ],
    examples: [
      { expression: "$lookupTable('lab-codes', 'CBC')", result: { loinc: '58410-2', display: 'CBC panel - Blood by Automated count' } },
      { expression: "$lookupTable('lab-codes', 'CBC').loinc", result: '58410-2' },
      { expression: "$lookupTable('priority', 'urgent')", result: 'S', note: 'a CSV table with two columns' },
      { expression: "$lookupTable('priority', 'whenever', 'R')", result: 'R', note: 'a key not in the table: the default' },
      { expression: "$lookupTable('lab-codes', 'XYZ')", note: 'not in the table, no default: nothing' },
    ],
    create: (ctx) => lookupTableFunction(ctx.tables),
  },
];

/** Where the examples' tables live: the docs examples folder (`docs/examples/tables/`). */
export const EXAMPLE_MAPPING_PATH = 'docs/examples/example.jsonata';
/** The fixed clock of the examples. */
export const EXAMPLE_NOW = '2025-03-04T09:15:02Z';
