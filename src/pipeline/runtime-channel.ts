/** A channel as the pipeline runs it: built connectors and compiled expressions. */
import type { DestinationInstance, SourceInstance } from '../connectors/types.js';
import type { CompiledMapping } from '../mapping/jsonata-mapping.js';
import type { MediaPolicy } from '../media/media-policy.js';
import type { Retention } from '../core/retention.js';

export interface RuntimeChannel {
  readonly id: string;
  readonly file: string;
  readonly source: SourceInstance;
  /** Optional JSONata predicate on the canonical message; falsy → recorded as filtered, not delivered. */
  readonly filter: CompiledMapping | undefined;
  readonly destinations: readonly DestinationInstance[];
  /** Destination name → its compiled `when` predicate (destinations without one take every message). */
  readonly routing: ReadonlyMap<string, CompiledMapping>;
  /** Media download policy; undefined: media is delivered with its source references only. */
  readonly media: MediaPolicy | undefined;
  /** How long the store keeps this channel's payloads and metadata (defaults when the file says nothing). */
  readonly retention?: Retention | undefined;
}

export const INGEST_QUEUE = 'ingest';

/** One queue per destination, so one destination's outage never blocks another's deliveries. */
export function deliveryQueueName(channelId: string, destination: string): string {
  return `deliver.${channelId}.${destination}`;
}

export interface IngestJob {
  eventId: string;
}

export interface DeliveryJob {
  deliveryId: string;
  generation: number;
  /** Correlation id for logs: the store's message id. */
  messageId: string;
}

/** Deterministic job ids make enqueueing idempotent: adding the same delivery twice is a no-op. */
export function deliveryJobId(deliveryId: string, generation: number): string {
  return `${deliveryId}-g${generation}`;
}
