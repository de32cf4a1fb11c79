/** A valid canonical text message from the demo Patient, with fresh ids, for destination tests. */
import { randomUUID } from 'node:crypto';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';

export function canonicalTextMessage(text: string, displayName = 'Jane Demo'): CanonicalMessage {
  return canonicalMessageSchema.parse({
    schema_version: 1,
    source: { kind: 'whatsapp_cloud' },
    id: `wamid.${randomUUID()}`,
    dedup_key: `wamid.${randomUUID()}`,
    kind: 'text',
    sent_at: '2025-03-04T09:15:00Z',
    received_at: '2025-03-04T09:15:02Z',
    sender: { phone: '+15551234567', platform_id: '15551234567', display_name: displayName },
    conversation_id: '15551234567',
    text,
  });
}
