/**
 * The test file formats, as strict zod schemas: `mappings/<name>.test.yaml` (mapping tests) and
 * `channels/<name>.test.yaml` (channel tests). The same schemas validate test files (with
 * file:line:column issues), type the runner, and are exported as JSON Schema for editors.
 */
import { z } from 'zod';

const instant = z
  .string()
  .refine((v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(v) && !Number.isNaN(Date.parse(v)), {
    message: 'an ISO 8601 date-time with a zone, e.g. 2025-03-04T09:15:02Z',
  })
  .describe('The mapping clock: $now() and $millis() answer this instant; raw webhooks are received at it. ISO 8601 with a zone.');

const bindings = z
  .record(z.string(), z.unknown())
  .describe('Values of $name variables in the mapping, e.g. patient, identifier_system.');

/** Exactly one of these keys says where a body comes from. */
const BODY_FORMS = ['file', 'json', 'text', 'fixture'] as const;

function exactlyOneForm(value: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const given = BODY_FORMS.filter((k) => Object.hasOwn(value, k));
  if (given.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      input: value,
      message:
        given.length === 0
          ? 'say where the input comes from with one of: file (path relative to this test file), json (inline), text (inline string), fixture (name under the fixtures folder)'
          : `give one input form, not ${given.join(' and ')}`,
    });
  }
}

const bodyShape = {
  file: z.string().min(1).optional().describe('A file, relative to this test file.'),
  json: z.unknown().optional().describe('The input written inline (any JSON/YAML value).'),
  text: z.string().optional().describe('The input as an inline string (for a raw body: its exact bytes).'),
  fixture: z
    .string()
    .min(1)
    .optional()
    .describe('A file under the fixtures folder (default <project>/fixtures, or --fixtures), e.g. whatsapp/sample_text.json.'),
};

export const mappingInputSchema = z
  .strictObject({
    ...bodyShape,
    source: z
      .string()
      .regex(/^[a-z][a-z0-9_]*$/)
      .optional()
      .describe(
        'The input is a raw webhook body of this source kind (e.g. whatsapp_cloud): it is parsed with the source\'s own parser and message number `message` becomes the mapping input. Without it (or with `canonical`, to override defaults.source), the input is a canonical message (or any value) as written.',
      ),
    message: z.number().int().min(0).optional().describe('With source: which canonical message of the webhook (0-based). Needed when the webhook holds several.'),
  })
  .superRefine(exactlyOneForm)
  .describe('Exactly one of file, json, text or fixture.');
export type MappingInput = z.infer<typeof mappingInputSchema>;

export const expectationSchema = z
  .strictObject({
    equals: z.unknown().optional().describe('The output equals this exactly (object key order does not matter; array order does).'),
    equals_file: z
      .string()
      .min(1)
      .optional()
      .describe('Golden file (relative to this test file): the output equals its content (JSON, or text for HL7). `switchboard test --update` rewrites it.'),
    contains: z
      .unknown()
      .optional()
      .describe('Deep subset: every key written here has this value in the output; a list matches when each item written is contained in some output item; null means "absent". On text output: a substring.'),
    assert: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('JSONata predicates that must be true; $ is the output, $input the input.'),
    dropped: z.boolean().optional().describe('true: nothing is sent (the mapping returned nothing, or a raw webhook held no message). false: something is.'),
    error: z
      .strictObject({
        code: z.string().min(1).optional().describe('Switchboard code (MAPPING_EVALUATE, MAPPING_OUTPUT_INVALID...) or JSONata code (T2001, D3137, SB0101...).'),
        message_contains: z.string().min(1).optional().describe('Text the error message contains.'),
      })
      .optional()
      .describe('The mapping (or destination) fails on this input.'),
    fhir_valid: z
      .string()
      .regex(/^[A-Z][A-Za-z]+$/)
      .optional()
      .describe('The output is a valid FHIR R4 resource of this type, e.g. Communication.'),
    hl7_valid: z
      .string()
      .regex(/^[A-Z0-9]{3}\^[A-Z0-9]{3}(\^[A-Z0-9_]+)?$/, 'a message type such as ORM^O01')
      .optional()
      .describe('The output is a well-formed HL7 v2 message (ER7 text) whose MSH-9 is this type, e.g. ORM^O01.'),
    outbound_valid: z
      .literal(true)
      .optional()
      .describe('The output is a valid OutboundMessage (a reply to a patient, src/core/outbound.ts), as chat destinations check it.'),
  })
  .superRefine((value, ctx) => {
    const keys = Object.keys(value);
    if (keys.length === 0) {
      ctx.addIssue({ code: 'custom', input: value, message: 'expect needs at least one of: equals, equals_file, contains, assert, dropped, error, fhir_valid, hl7_valid, outbound_valid' });
    }
    if (Object.hasOwn(value, 'error') && keys.length > 1) {
      ctx.addIssue({ code: 'custom', input: value, message: `expect.error cannot be combined with ${keys.filter((k) => k !== 'error').join(', ')}: a failing mapping has no output` });
    }
    if (value.dropped === true && keys.length > 1) {
      ctx.addIssue({ code: 'custom', input: value, message: `expect.dropped: true cannot be combined with ${keys.filter((k) => k !== 'dropped').join(', ')}: a dropped message has no output` });
    }
  })
  .describe('What the output must be; every expectation given is checked.');
export type Expectation = z.infer<typeof expectationSchema>;

export const mappingTestCaseSchema = z.strictObject({
  name: z.string().min(1).describe('What the case shows, in a sentence.'),
  description: z.string().optional(),
  skip: z.boolean().optional().describe('true: the case is listed as skipped, not run.'),
  input: mappingInputSchema,
  now: instant.optional(),
  bindings: bindings.optional(),
  expect: expectationSchema,
});
export type MappingTestCase = z.infer<typeof mappingTestCaseSchema>;

export const mappingTestFileSchema = z
  .strictObject({
    mapping: z
      .string()
      .min(1)
      .optional()
      .describe('The mapping under test, relative to this file. Default: <name>.jsonata beside <name>.test.yaml.'),
    defaults: z
      .strictObject({
        now: instant.optional(),
        bindings: bindings.optional(),
        source: z.string().regex(/^[a-z][a-z0-9_]*$/).optional().describe('Default input.source for every case.'),
      })
      .optional()
      .describe('Applied to every case; a case\'s own bindings are merged over these.'),
    tests: z.array(mappingTestCaseSchema).min(1).describe('The cases, run in order.'),
  })
  .describe('Switchboard mapping tests: mappings/<name>.test.yaml beside mappings/<name>.jsonata.');
export type MappingTestFile = z.infer<typeof mappingTestFileSchema>;

// ---------------------------------------------------------------------------------------------
// Channel tests
// ---------------------------------------------------------------------------------------------

export const requestSchema = z
  .strictObject({
    body: z.strictObject(bodyShape).superRefine(exactlyOneForm).describe('The raw webhook body: exactly one of file, json, text or fixture. A file or fixture is sent byte for byte.'),
    method: z.enum(['POST']).default('POST'),
    headers: z.record(z.string(), z.string()).optional().describe('Request headers (names are case-insensitive).'),
    query: z.record(z.string(), z.string()).optional().describe('Query string parameters.'),
    sign: z
      .boolean()
      .optional()
      .describe('true: the runner signs the body the way the source expects (whatsapp_cloud: X-Hub-Signature-256 with the channel\'s app_secret).'),
  })
  .describe('The webhook request as the source would receive it.');
export type ChannelTestRequest = z.infer<typeof requestSchema>;

const destinationNames = z.array(z.string().min(1)).min(1);

export const channelTestCaseSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  skip: z.boolean().optional(),
  request: requestSchema,
  message: z.number().int().min(0).optional().describe('Which canonical message of the webhook the expectations are about (0-based). Needed when it holds several.'),
  now: instant.optional(),
  bindings: z
    .record(z.string(), bindings)
    .optional()
    .describe('Per destination name: the values delivery would look up (fhir_r4: patient).'),
  expect: z
    .strictObject({
      rejected: z
        .strictObject({
          status: z.number().int().min(400).max(599).optional(),
          message_contains: z.string().optional(),
        })
        .optional()
        .describe('The edge refuses the request (signature, envelope); nothing is stored.'),
      messages: z.number().int().min(0).optional().describe('How many canonical messages the webhook holds.'),
      filtered: z.boolean().optional().describe('true: the channel filter drops the message; it reaches no destination.'),
      not_routed: destinationNames.optional().describe('Destinations the message never reaches (their `when` is false).'),
      destinations: z
        .record(z.string(), expectationSchema)
        .optional()
        .describe('Per destination name: what it would receive (its render() output), with the mapping-test expectations.'),
    })
    .superRefine((value, ctx) => {
      if (Object.keys(value).length === 0) ctx.addIssue({ code: 'custom', input: value, message: 'expect needs at least one of: rejected, messages, filtered, not_routed, destinations' });
      if (value.rejected !== undefined && Object.keys(value).length > 1) {
        ctx.addIssue({ code: 'custom', input: value, message: 'expect.rejected cannot be combined with other expectations: a refused request goes nowhere' });
      }
    }),
});
export type ChannelTestCase = z.infer<typeof channelTestCaseSchema>;

export const channelTestFileSchema = z
  .strictObject({
    channel: z.string().min(1).optional().describe('The channel file under test, relative to this file. Default: <name>.yaml beside <name>.test.yaml.'),
    env: z
      .record(z.string(), z.string())
      .optional()
      .describe('Environment variables for ${VAR} in the channel file, over the process environment and the development defaults.'),
    defaults: z
      .strictObject({
        now: instant.optional(),
        sign: z.boolean().optional(),
        headers: z.record(z.string(), z.string()).optional(),
        bindings: z.record(z.string(), bindings).optional(),
      })
      .optional(),
    tests: z.array(channelTestCaseSchema).min(1),
  })
  .describe('Switchboard channel tests: channels/<name>.test.yaml beside channels/<name>.yaml.');
export type ChannelTestFile = z.infer<typeof channelTestFileSchema>;

/** Whether a parsed test file is a channel test (by its keys) rather than a mapping test. */
export function looksLikeChannelTest(data: unknown): boolean {
  if (typeof data !== 'object' || data === null) return false;
  const record = data as Record<string, unknown>;
  if ('channel' in record || 'env' in record) return true;
  const tests = record['tests'];
  return Array.isArray(tests) && tests.some((t) => typeof t === 'object' && t !== null && 'request' in t);
}

function jsonSchemaOf(schema: z.ZodType, title: string): string {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' });
  const { $schema, ...rest } = json;
  return `${JSON.stringify({ $schema, title, ...rest }, null, 2)}\n`;
}

/** schemas/mapping-test.schema.json */
export function renderMappingTestJsonSchema(): string {
  return jsonSchemaOf(mappingTestFileSchema, 'Switchboard mapping test file');
}

/** schemas/channel-test.schema.json */
export function renderChannelTestJsonSchema(): string {
  return jsonSchemaOf(channelTestFileSchema, 'Switchboard channel test file');
}
