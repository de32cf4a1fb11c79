/** The example channels for the new sources (channels/examples/, not loaded by default) stay valid. */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadChannelFile } from '../../src/channels/load-channel.js';
import { createConnectorRegistry } from '../../src/connectors/registry.js';

const env = {
  FHIR_BASE_URL: 'https://ehr.example/fhir/R4',
  TWILIO_AUTH_TOKEN: 'x',
  ROCKETCHAT_OUTGOING_TOKEN: 'x',
  ROCKETCHAT_LIVECHAT_TOKEN: 'x',
  ROCKETCHAT_URL: 'https://chat.clinic.example',
  ROCKETCHAT_AUTH_TOKEN: 'x',
  ROCKETCHAT_USER_ID: 'x',
  CHAT_WEBHOOK_SECRET: 'x',
};

describe('channels/examples', () => {
  for (const [file, kind] of [
    ['twilio-to-ehr.yaml', 'twilio_whatsapp'],
    ['rocketchat-to-ehr.yaml', 'rocketchat_webhook'],
    ['rocketchat-poll-to-ehr.yaml', 'rocketchat_poll'],
    ['chat-webhook-to-ehr.yaml', 'chat_webhook'],
  ] as const) {
    it(`${file} loads (${kind})`, async () => {
      const ch = await loadChannelFile(fileURLToPath(new URL(`../../channels/examples/${file}`, import.meta.url)), { registry: createConnectorRegistry(), env });
      expect(ch.config.source.kind).toBe(kind);
      expect(Object.values(ch.mappingFiles)[0]).toMatch(/mappings\/chat-to-communication\.jsonata$/);
    });
    it(`${file} refuses to load without its secrets`, async () => {
      const err = await loadChannelFile(fileURLToPath(new URL(`../../channels/examples/${file}`, import.meta.url)), { registry: createConnectorRegistry(), env: { FHIR_BASE_URL: env.FHIR_BASE_URL } }).catch((e: unknown) => e);
      expect(String(err)).toMatch(/is not set/);
    });
  }
});
