/**
 * The composition root's default OutboundStatusListener: each status of a message sent to a
 * patient goes to the source of the channel the message came from (`outboundStatusListener` of
 * a FHIR source writes it back onto the originating Communication). Channels whose source has
 * no write-back (or that a reload removed) record their statuses only.
 */
import type { Logger } from '../core/logger.js';
import type { OutboundStatusListener } from '../core/outbound.js';
import type { RuntimeChannel } from './runtime-channel.js';

export function sourceStatusListener(channels: () => readonly RuntimeChannel[], logger: Logger): OutboundStatusListener {
  return {
    async onStatus(event) {
      const channel = channels().find((c) => c.id === event.channelId);
      const listener = channel?.source.outboundStatusListener;
      if (listener === undefined) {
        if (channel === undefined) logger.warn({ channel: event.channelId, delivery: event.deliveryId, status: event.status.status }, 'outbound status for a channel that is no longer loaded: recorded, not written back');
        return;
      }
      await listener.onStatus(event);
    },
  };
}
