/**
 * Outbound test helpers: channels that carry a care team's reply to a chat destination (a
 * `chat_webhook` source stands in for the EHR where a test drives replies directly: it builds
 * the canonical message the FHIR sources build: `conversation_id` = the Patient reference,
 * `author_role` staff, `dedup_key` = the Communication reference, `text` = the reply; the FHIR
 * sources themselves are in `ehrRepliesChannel`), a patient's inbound WhatsApp channel, reply
 * mappings, the sandbox Graph API answering with sent -> delivered -> read, and a listener that
 * records the statuses it is told.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { OutboundStatusEvent, OutboundStatusListener } from '../../src/core/outbound.js';
import { startGraphApiSandbox, type GraphSandbox } from '../../src/sandbox/graph-api-sandbox.js';
import type { DeliveryRecord } from '../../src/store/message-store.js';
import { repoRoot, waitFor, type TestGateway } from './gateway.js';
import { TEST_APP_SECRET } from './whatsapp-webhook.js';

export const EHR_REPLY_TOKEN = 'ehr-reply-test-token-0123';

/**
 * The sandbox Graph API for reply tests: each send answered, then its statuses sent, delivered
 * and read (50 ms apart) posted, signed, to the inbound channel `wa-in` of the gateway at
 * `gatewayUrl()` (undefined until the gateway runs).
 */
export function startReplyGraphSandbox(gatewayUrl: () => string | undefined): Promise<GraphSandbox> {
  return startGraphApiSandbox({
    appSecret: TEST_APP_SECRET,
    webhookUrl: () => {
      const url = gatewayUrl();
      return url ? `${url}/webhooks/wa-in` : undefined;
    },
    statuses: [
      { status: 'sent', delayMs: 50 },
      { status: 'delivered', delayMs: 50 },
      { status: 'read', delayMs: 50 },
    ],
  });
}

/** A channel whose source stands in for the EHR's reply trigger, with the given destinations. */
export function replyChannel(id: string, destinations: string): string {
  return [
    `id: ${id}`,
    'source:',
    '  kind: chat_webhook',
    '  platform: ehr-reply',
    '  auth: { kind: bearer, token: "${EHR_REPLY_TOKEN}" }',
    '  extract: |',
    "    { 'id': communication, 'dedup_key': communication, 'kind': 'text', 'author_role': 'staff',",
    "      'conversation_id': patient, 'text': text, 'sender': { 'phone': phone } }",
    'destinations:',
    destinations,
    '',
  ].join('\n');
}

/**
 * The EHR's replies: a fhir_subscription source (secret ${FHIR_SUBSCRIPTION_SECRET}, notifications
 * only) -> the shipped reply mapping -> whatsapp_cloud_send to ${GRAPH_URL}.
 */
export function ehrRepliesChannel(id: string): string {
  return [
    `id: ${id}`,
    'source:',
    '  kind: fhir_subscription',
    `  path: /webhooks/${id}`,
    '  base_url: ${FHIR_BASE_URL}',
    '  secret: ${FHIR_SUBSCRIPTION_SECRET}',
    '  check_interval_ms: 60000   # notifications only, unless repaired',
    'destinations:',
    '  - name: whatsapp',
    '    kind: whatsapp_cloud_send',
    `    mapping: ${path.join(repoRoot, 'mappings/communication-to-reply.jsonata')}`,
    '    phone_number_id: ${WHATSAPP_PHONE_NUMBER_ID}',
    '    access_token: ${WHATSAPP_ACCESS_TOKEN}',
    '    graph_url: ${GRAPH_URL}',
    '    timeout_ms: 2000',
    '    reconcile_ms: 4000',
    '    pair_interval_ms: 0',
    '    retry: { attempts: 3, initial_delay_ms: 100, max_delay_ms: 500 }',
    '    circuit_breaker: { enabled: false }',
    '',
  ].join('\n');
}

/** The patient's side: WhatsApp Cloud webhook -> FHIR Communication (the repository's mapping). */
export function inboundWhatsAppChannel(id: string): string {
  return [
    `id: ${id}`,
    'source:',
    '  kind: whatsapp_cloud',
    `  path: /webhooks/${id}`,
    '  app_secret: ${WHATSAPP_APP_SECRET}',
    '  verify_token: ${WHATSAPP_VERIFY_TOKEN}',
    'destinations:',
    '  - name: ehr',
    '    kind: fhir_r4',
    '    base_url: ${FHIR_BASE_URL}',
    `    mapping: ${path.join(repoRoot, 'mappings/whatsapp-to-communication.jsonata')}`,
    '    identifier_system: https://switchboard.example/sid/whatsapp-message-id',
    '    retry: { attempts: 3, initial_delay_ms: 100, max_delay_ms: 1000 }',
    '',
  ].join('\n');
}

const common = `
  'recipient': { 'patient': conversation_id, 'address': sender.phone ? { 'kind': 'phone', 'phone': sender.phone } },
  'origin': { 'resource_type': $substringBefore(id, '/'), 'id': $substringAfter(id, '/'), 'version_id': '1' },
  'correlation_id': id,
  'in_reply_to': $conversation.last_message_id`;

/** Reply mappings: always free-form; free-form inside the window and a template outside; a broken one. */
export const replyMappings = {
  text: `{\n  'content': { 'type': 'text', 'body': text },${common}\n}\n`,
  auto: `{\n  'content': $window_open\n    ? { 'type': 'text', 'body': text }\n    : { 'type': 'template', 'name': 'care_team_reply', 'language': 'en_US', 'body_parameters': ['your care team'] },${common}\n}\n`,
  broken: `{\n  'content': {\n    'type': 'text',\n    'body': ''\n  },${common}\n}\n`,
};

export async function writeReplyMappings(dir: string): Promise<Record<keyof typeof replyMappings, string>> {
  const out = {} as Record<keyof typeof replyMappings, string>;
  for (const [name, text] of Object.entries(replyMappings)) {
    const file = path.join(dir, `reply-${name}.jsonata`);
    await writeFile(file, text);
    out[name as keyof typeof replyMappings] = file;
  }
  return out;
}

/** Posts a reply as the EHR stand-in: `communication` (e.g. `Communication/c1`) is its idempotency key. */
export function postEhrReply(gatewayUrl: string, channelId: string, r: { communication: string; patient: string; text: string; phone?: string }): Promise<Response> {
  return fetch(`${gatewayUrl}/webhooks/${channelId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${EHR_REPLY_TOKEN}` },
    body: JSON.stringify(r),
  });
}

/** Records every status the gateway passes on; can be told to fail the next calls. */
export class RecordingStatusListener implements OutboundStatusListener {
  readonly events: OutboundStatusEvent[] = [];
  failNext = 0;
  async onStatus(event: OutboundStatusEvent): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('listener failure injected by the test');
    }
    this.events.push(event);
  }
  of(correlationId: string): string[] {
    return this.events.filter((e) => e.correlationId === correlationId).map((e) => e.status.status);
  }
}

/** The first delivery of a message (by its source id in a channel) once `settled` says so (default: no longer pending). */
export function deliveryOf(gw: TestGateway, channel: string, sourceId: string, settled: (d: DeliveryRecord) => boolean = (d) => d.state !== 'pending'): Promise<DeliveryRecord> {
  return waitFor(`delivery of ${sourceId}`, async () => {
    const d = (await gw.app.internals.store!.findMessage(channel, sourceId))?.deliveries[0];
    return d && settled(d) ? d : undefined;
  });
}
