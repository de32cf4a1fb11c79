/**
 * The explicit list of connectors. Adding a connector means adding it here; nothing registers
 * itself by being imported.
 */
import type { ConnectorRegistry } from '../channels/channel-schema.js';
import { fhirR4Destination } from './destinations/fhir-r4.js';
import { whatsappCloudSource } from './sources/whatsapp-cloud.js';

export function createConnectorRegistry(): ConnectorRegistry {
  return {
    sources: [whatsappCloudSource],
    destinations: [fhirR4Destination],
  };
}
