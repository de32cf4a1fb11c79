/**
 * The channel file schema, built from the connector registry: one strict zod object whose
 * `source` and `destinations[]` are discriminated unions on `kind` over the registered
 * connectors' own config schemas. The same schema parses channel files, types them, and is
 * exported as JSON Schema for editors (`channelJsonSchema`).
 */
import { z } from 'zod';
import { mediaPolicySchema } from '../media/media-policy.js';
import type { ConnectorRegistry, DestinationConnector, SourceConnector } from '../connectors/types.js';
import type { RetryPolicy } from '../core/policies.js';
import { DEFAULT_RETENTION, RETENTION_PATTERN, retentionDays, type Retention } from '../core/retention.js';

/** Channel ids name queues and appear in URLs and logs. */
export const CHANNEL_ID_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
export const CHANNEL_ID_RULE = 'lower-case letters, digits and -, starting with a letter, at most 63 characters';

/** A source config after parsing: the registered connector's own output type, discriminated by `kind`. */
export interface SourceConfig {
  kind: string;
  [key: string]: unknown;
}

/** A destination config after parsing: `destinationBaseShape` fields plus the connector's own. */
export interface DestinationConfig {
  kind: string;
  name: string;
  mapping: string;
  when?: string | undefined;
  retry: RetryPolicy;
  concurrency: number;
  [key: string]: unknown;
}

function uniqueDestinationNames(destinations: readonly unknown[], ctx: z.RefinementCtx<readonly unknown[]>): void {
  const firstIndex = new Map<string, number>();
  destinations.forEach((destination, index) => {
    if (typeof destination !== 'object' || destination === null) return;
    const name = (destination as { name?: unknown }).name;
    if (typeof name !== 'string') return;
    const first = firstIndex.get(name);
    if (first === undefined) {
      firstIndex.set(name, index);
      return;
    }
    ctx.addIssue({
      code: 'custom',
      path: [index, 'name'],
      input: name,
      message: `destination name "${name}" is already used by destinations[${first}]; give each destination of a channel its own name`,
    });
  });
}

const retentionDuration = z.string().regex(RETENTION_PATTERN, 'a whole number of days, weeks or years, e.g. 30d, 8w or 1y');

/** Per-channel retention of the message store (src/store/retention-store.ts drops whole weekly partitions). */
export const retentionSchema = z
  .strictObject({
    payloads: retentionDuration
      .default(`${DEFAULT_RETENTION.payloadDays}d`)
      .describe(
        'How long everything that can hold PHI is kept: raw inbound bytes, the canonical message, server answers, built messages, dead-letter details, operator reasons, media files. A pending or dead-lettered delivery keeps its message until it is resolved.',
      ),
    metadata: retentionDuration
      .default(`${DEFAULT_RETENTION.metadataDays}d`)
      .describe('How long the rows themselves are kept (ids, states, codes, times, blind indexes): the trace and search without content. At least as long as payloads.'),
  })
  .superRefine((r, ctx) => {
    const payloads = retentionDays(r.payloads);
    const metadata = retentionDays(r.metadata);
    if (payloads !== undefined && metadata !== undefined && payloads > metadata) {
      ctx.addIssue({
        code: 'custom',
        path: ['payloads'],
        input: r.payloads,
        message: `payloads are kept ${r.payloads} (${payloads} days), longer than the metadata that describes them (${r.metadata}, ${metadata} days); make payloads at most metadata`,
      });
    }
  });

/** The days a channel file's `retention` block means (defaults when absent). */
export function channelRetention(r: z.output<typeof retentionSchema> | undefined): Retention {
  if (r === undefined) return DEFAULT_RETENTION;
  return { payloadDays: retentionDays(r.payloads) ?? DEFAULT_RETENTION.payloadDays, metadataDays: retentionDays(r.metadata) ?? DEFAULT_RETENTION.metadataDays };
}

function channelObject(source: z.ZodType<SourceConfig>, destination: z.ZodType<DestinationConfig>) {
  return z
    .object({
      id: z
        .string()
        .regex(CHANNEL_ID_PATTERN, CHANNEL_ID_RULE)
        .optional()
        .describe('Unique channel id; names its queues. Defaults to the file name without .yaml.'),
      description: z.string().optional().describe('What this channel is for, in a sentence.'),
      source,
      media: mediaPolicySchema.optional(),
      retention: retentionSchema
        .optional()
        .describe(
          'How long the store keeps this channel\'s messages, e.g. `{ payloads: 30d, metadata: 365d }` (the defaults). Whole weekly partitions are dropped, so data goes up to a week after its retention.',
        ),
      filter: z
        .string()
        .min(1)
        .optional()
        .describe(
          'JSONata expression evaluated on the canonical message; when it is falsy the message is not delivered to any destination.',
        ),
      destinations: z
        .array(destination)
        .min(1, 'a channel needs at least one destination')
        // Runs even when some destination is invalid, so that every problem is reported at once.
        .superRefine(uniqueDestinationNames, { when: (payload) => Array.isArray(payload.value) })
        .describe('Where messages go; each destination has its own mapping, retry policy and dead-letter queue.'),
    })
    .strict()
    .describe('A Switchboard channel: one source, an optional filter, one or more destinations.');
}

export type ChannelSchema = ReturnType<typeof channelObject>;
/** A channel file after validation (defaults applied). `id` is optional here; the loader fills it in. */
export type ChannelConfig = z.output<ChannelSchema>;
/** A channel file as written. */
export type ChannelConfigInput = z.input<ChannelSchema>;

type ObjectOptions = [z.ZodObject, ...z.ZodObject[]];

/**
 * Checks each connector's schema has `kind: z.literal(<kind>)` and that kinds are unique, and
 * returns the schemas. These are programming errors in the registry, so they throw plain Errors.
 */
function connectorSchemas(role: 'source' | 'destination', connectors: readonly (SourceConnector | DestinationConnector)[]): ObjectOptions {
  if (connectors.length === 0) throw new Error(`the connector registry has no ${role} connectors`);
  const seen = new Set<string>();
  const schemas = connectors.map((connector) => {
    if (seen.has(connector.kind)) throw new Error(`${role} kind "${connector.kind}" is registered twice`);
    seen.add(connector.kind);
    const shape = connector.configSchema.shape;
    const kind = shape['kind'];
    if (!(kind instanceof z.ZodLiteral) || !kind.values.has(connector.kind) || kind.values.size !== 1) {
      throw new Error(`${role} connector "${connector.kind}": configSchema must have kind: z.literal('${connector.kind}')`);
    }
    if (role === 'destination') {
      for (const key of ['name', 'mapping', 'retry', 'concurrency']) {
        if (!(key in shape)) throw new Error(`destination connector "${connector.kind}": configSchema must spread destinationBaseShape (no "${key}")`);
      }
    }
    return connector.configSchema;
  });
  return schemas as ObjectOptions;
}

/** The strict channel schema for the connectors in `registry`. */
export function buildChannelSchema(registry: ConnectorRegistry): ChannelSchema {
  const sources = z.discriminatedUnion('kind', connectorSchemas('source', registry.sources));
  const destinations = z.discriminatedUnion('kind', connectorSchemas('destination', registry.destinations));
  // The unions output exactly what the connector schemas output; connectorSchemas() checked above
  // that every option carries its literal `kind` (and, for destinations, the base shape).
  return channelObject(sources as unknown as z.ZodType<SourceConfig>, destinations as unknown as z.ZodType<DestinationConfig>);
}

export type ChannelJsonSchema = z.core.JSONSchema.BaseSchema;

/** An unquoted `${VAR}` takes the type the schema expects (see load-channel), so editors accept it too. */
const REFERENCE_PATTERN = '^\\$\\{[A-Z_][A-Z0-9_]*(:-[^}]*)?\\}$';

function allowReference(jsonSchema: z.core.JSONSchema.BaseSchema): void {
  const type = jsonSchema.type;
  if (type !== 'number' && type !== 'integer' && type !== 'boolean') return;
  const { description, default: defaultValue, ...typed } = jsonSchema;
  for (const key of Object.keys(jsonSchema)) delete jsonSchema[key];
  if (description !== undefined) jsonSchema.description = description;
  if (defaultValue !== undefined) jsonSchema.default = defaultValue;
  jsonSchema.anyOf = [typed, { type: 'string', pattern: REFERENCE_PATTERN, description: 'An environment variable, e.g. ${LIS_PORT}.' }];
}

/**
 * JSON Schema (draft 2020-12) of channel files, for editor completion and validation. Input
 * types: fields with defaults are optional. Refinements (unique destination names) and the
 * `${VAR}` rules are not expressible here; `switchboard validate` checks those.
 */
export function channelJsonSchema(registry: ConnectorRegistry): ChannelJsonSchema {
  const schema = z.toJSONSchema(buildChannelSchema(registry), {
    target: 'draft-2020-12',
    io: 'input',
    unrepresentable: 'any',
    override: ({ jsonSchema }) => allowReference(jsonSchema),
  });
  const { $schema, ...rest } = schema;
  return { $schema, title: 'Switchboard channel', ...rest };
}
