/**
 * The explicit list of connectors. Adding a connector means adding it here; nothing registers
 * itself by being imported.
 */
import type { ConnectorRegistry } from './types.js';
import { fhirR4Destination } from './destinations/fhir-r4.js';
import { hl7v2MllpDestination } from './destinations/hl7v2-mllp.js';
import { whatsappCloudSendDestination } from './destinations/whatsapp-cloud-send.js';
import { twilioSendDestination } from './destinations/twilio-send.js';
import { rocketChatSendDestination } from './destinations/rocketchat-send.js';
import { chatWebhookSource } from './sources/chat-webhook.js';
import { fhirPollSource } from './sources/fhir-poll.js';
import { fhirSubscriptionSource } from './sources/fhir-subscription.js';
import { rocketChatPollSource } from './sources/rocketchat-poll.js';
import { rocketChatWebhookSource } from './sources/rocketchat-webhook.js';
import { twilioWhatsAppSource } from './sources/twilio-whatsapp.js';
import { whatsappCloudSource } from './sources/whatsapp-cloud.js';

export function createConnectorRegistry(): ConnectorRegistry {
  return {
    sources: [whatsappCloudSource, twilioWhatsAppSource, rocketChatWebhookSource, rocketChatPollSource, chatWebhookSource, fhirPollSource, fhirSubscriptionSource],
    destinations: [fhirR4Destination, hl7v2MllpDestination, whatsappCloudSendDestination, twilioSendDestination, rocketChatSendDestination],
  };
}
