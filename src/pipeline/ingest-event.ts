/**
 * Ingest: a raw event becomes canonical messages (deduplicated), statuses, and one pending
 * delivery per destination. Plain functions: `planIngest` is pure work on the bytes (parse,
 * filter, route), run at the webhook edge so that the event and what it parses into are stored in
 * one transaction; `ingestEvent` does the same for an event already stored (the outbox: events a
 * crash left unparsed, polled events), behind the ingest queue.
 */
import type { CanonicalMessage } from '../core/canonical-message.js';
import { SwitchboardError, classify } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { IngestPlan, MessageStore, PendingDelivery } from '../store/message-store.js';
import type { RuntimeChannel } from './runtime-channel.js';

export interface IngestDeps {
  store: MessageStore;
  channel(id: string): RuntimeChannel | undefined;
  logger: Logger;
}

export interface IngestResult {
  channelId: string;
  messages: number;
  statuses: number;
  filtered: number;
  pending: PendingDelivery[];
}

export interface PlannedIngest {
  plan: IngestPlan;
  messages: number;
  statuses: number;
  filtered: number;
  ignored: number;
}

/** Parses, filters and routes one raw event of a channel. Stores nothing. */
export async function planIngest(logger: Logger, channel: RuntimeChannel, raw: Buffer, receivedAt: Date, eventRef: string | undefined): Promise<PlannedIngest> {
  const parsed = await channel.source.parse(raw, { channelId: channel.id, receivedAt });
  const plan: IngestPlan = { messages: [], statuses: parsed.statuses };
  let filtered = 0;
  for (const message of parsed.messages) {
    let pass = true;
    if (channel.filter) {
      try {
        pass = Boolean(await channel.filter.evaluate(message, { now: receivedAt }));
      } catch (err) {
        // A filter that throws must not lose the message: deliver it and say why.
        const c = classify(err);
        logger.warn({ eventId: eventRef, channel: channel.id, code: c.code, error: c.message }, 'channel filter failed; message delivered unfiltered');
        pass = true;
      }
    }
    if (!pass) filtered++;
    const destinations: string[] = [];
    if (pass) {
      for (const d of channel.destinations) {
        if (await routes(logger, channel, d.name, message, receivedAt)) destinations.push(d.name);
      }
    }
    plan.messages.push({ message, filtered: !pass, destinations });
  }
  return { plan, messages: parsed.messages.length, statuses: parsed.statuses.length, filtered, ignored: parsed.ignored.length };
}

export async function ingestEvent(deps: IngestDeps, eventId: string): Promise<IngestResult | null> {
  const event = await deps.store.loadEvent(eventId);
  if (!event) {
    deps.logger.warn({ eventId }, 'ingest job for an unknown event; ignored');
    return null;
  }
  const channel = deps.channel(event.channelId);
  if (!channel) {
    // The channel was removed after the event was stored: keep the event, fail loudly, retry later.
    throw new SwitchboardError('INTERNAL', `channel "${event.channelId}" is not loaded; the event stays in the outbox`);
  }
  const planned = await planIngest(deps.logger, channel, event.raw, event.receivedAt, eventId);
  const pending = await deps.store.recordIngest(event.id, channel.id, planned.plan);
  logIngested(deps.logger, eventId, channel.id, planned, pending.length);
  return { channelId: channel.id, messages: planned.messages, statuses: planned.statuses, filtered: planned.filtered, pending };
}

export function logIngested(logger: Logger, eventId: string, channelId: string, p: PlannedIngest, deliveries: number): void {
  logger.info({ eventId, channel: channelId, messages: p.messages, statuses: p.statuses, filtered: p.filtered, ignored: p.ignored, deliveries }, 'event ingested');
}

/** Whether a destination's `when` predicate takes the message. A predicate that throws routes it (nothing is lost silently). */
async function routes(logger: Logger, channel: RuntimeChannel, destination: string, message: CanonicalMessage, now: Date): Promise<boolean> {
  const when = channel.routing.get(destination);
  if (!when) return true;
  try {
    return Boolean(await when.evaluate(message, { now }));
  } catch (err) {
    const c = classify(err);
    logger.warn({ channel: channel.id, destination, code: c.code, error: c.message }, 'routing predicate failed; message routed to the destination');
    return true;
  }
}
