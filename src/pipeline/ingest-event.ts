/**
 * Ingest: a stored raw event becomes canonical messages (deduplicated), statuses, and one pending
 * delivery per destination. Plain function; the queue processor is a thin adapter around it.
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
  const parsed = await channel.source.parse(event.raw, { channelId: channel.id, receivedAt: event.receivedAt });
  const plan: IngestPlan = { messages: [], statuses: parsed.statuses };
  let filtered = 0;
  for (const message of parsed.messages) {
    let pass = true;
    if (channel.filter) {
      try {
        pass = Boolean(await channel.filter.evaluate(message, { now: event.receivedAt }));
      } catch (err) {
        // A filter that throws must not lose the message: deliver it and say why.
        const c = classify(err);
        deps.logger.warn({ eventId, channel: channel.id, code: c.code, error: c.message }, 'channel filter failed; message delivered unfiltered');
        pass = true;
      }
    }
    if (!pass) filtered++;
    const destinations: string[] = [];
    if (pass) {
      for (const d of channel.destinations) {
        if (await routes(deps, channel, d.name, message, event.receivedAt)) destinations.push(d.name);
      }
    }
    plan.messages.push({ message, filtered: !pass, destinations });
  }
  const pending = await deps.store.recordIngest(event.id, channel.id, plan);
  deps.logger.info(
    { eventId, channel: channel.id, messages: parsed.messages.length, statuses: parsed.statuses.length, filtered, ignored: parsed.ignored.length, deliveries: pending.length },
    'event ingested',
  );
  return { channelId: channel.id, messages: parsed.messages.length, statuses: parsed.statuses.length, filtered, pending };
}

/** Whether a destination's `when` predicate takes the message. A predicate that throws routes it (nothing is lost silently). */
async function routes(deps: IngestDeps, channel: RuntimeChannel, destination: string, message: CanonicalMessage, now: Date): Promise<boolean> {
  const when = channel.routing.get(destination);
  if (!when) return true;
  try {
    return Boolean(await when.evaluate(message, { now }));
  } catch (err) {
    const c = classify(err);
    deps.logger.warn({ channel: channel.id, destination, code: c.code, error: c.message }, 'routing predicate failed; message routed to the destination');
    return true;
  }
}
