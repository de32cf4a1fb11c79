import { describe, expect, it } from 'vitest';
import { classifyRocketChatSendError, classifyTwilioSendError, classifyWhatsAppSendError, errorCatalogue } from '../../src/core/errors.js';
import { graphMessageBody } from '../../src/connectors/destinations/whatsapp-cloud-send.js';
import { outboundStatusFrom } from '../../src/store/outbound-store.js';

describe('chat send errors: one classifier', () => {
  it('maps Meta codes to stable codes with the documented disposition', () => {
    const verdict = (http: number, code?: number) => {
      const v = classifyWhatsAppSendError(http, code);
      return [v.code, errorCatalogue[v.code].disposition, v.pause];
    };
    expect(verdict(400, 131047)).toEqual(['WHATSAPP_WINDOW_CLOSED', 'permanent', false]);
    expect(verdict(400, 130429)).toEqual(['WHATSAPP_THROUGHPUT_LIMITED', 'retryable', false]);
    expect(verdict(400, 131056)).toEqual(['WHATSAPP_PAIR_RATE_LIMITED', 'retryable', false]);
    expect(verdict(400, 131026)).toEqual(['WHATSAPP_RECIPIENT_UNAVAILABLE', 'permanent', false]);
    expect(verdict(400, 131051)).toEqual(['WHATSAPP_REQUEST_INVALID', 'permanent', false]);
    expect(verdict(404, 132001)).toEqual(['WHATSAPP_TEMPLATE_INVALID', 'permanent', false]);
    expect(verdict(400, 132012)).toEqual(['WHATSAPP_TEMPLATE_INVALID', 'permanent', false]);
    expect(verdict(400, 100)).toEqual(['WHATSAPP_REQUEST_INVALID', 'permanent', false]);
    expect(verdict(401, 190)).toEqual(['WHATSAPP_AUTH', 'retryable', true]);
    expect(verdict(500, 131000)).toEqual(['WHATSAPP_UNAVAILABLE', 'retryable', false]);
    expect(verdict(503)).toEqual(['WHATSAPP_UNAVAILABLE', 'retryable', false]);
    expect(verdict(429)).toEqual(['WHATSAPP_THROUGHPUT_LIMITED', 'retryable', false]);
    expect(verdict(400)).toEqual(['WHATSAPP_REQUEST_INVALID', 'permanent', false]);
  });

  it('maps Twilio and Rocket.Chat answers likewise', () => {
    expect(classifyTwilioSendError(400, 63016).code).toBe('TWILIO_WINDOW_CLOSED');
    expect(classifyTwilioSendError(429, 20429).code).toBe('TWILIO_RATE_LIMITED');
    expect(classifyTwilioSendError(400, 21211).code).toBe('TWILIO_REQUEST_INVALID');
    expect(classifyTwilioSendError(401, 20003)).toEqual({ code: 'TWILIO_AUTH', pause: true });
    expect(classifyTwilioSendError(503, undefined).code).toBe('TWILIO_UNAVAILABLE');
    expect(classifyRocketChatSendError(400).code).toBe('ROCKETCHAT_REQUEST_INVALID');
    expect(classifyRocketChatSendError(401)).toEqual({ code: 'ROCKETCHAT_AUTH', pause: true });
    expect(classifyRocketChatSendError(429).code).toBe('ROCKETCHAT_RATE_LIMITED');
    expect(classifyRocketChatSendError(502).code).toBe('ROCKETCHAT_UNAVAILABLE');
  });

  it('a failed status webhook becomes a failed OutboundStatus with our code and the provider\'s', () => {
    const s = outboundStatusFrom(
      { source_kind: 'whatsapp_cloud', message_id: 'wamid.X', status: 'failed', source_status: 'failed', occurred_at: '2026-01-01T00:00:00Z', errors: [{ code: 131047, title: 'Re-engagement message' }], dedup_key: 'x' },
      'whatsapp_cloud_send',
    );
    expect(s).toEqual({ status: 'failed', provider_message_id: 'wamid.X', at: '2026-01-01T00:00:00Z', error: { code: 'WHATSAPP_WINDOW_CLOSED', provider_code: '131047', reason: 'Re-engagement message' } });
    expect(outboundStatusFrom({ source_kind: 'whatsapp_cloud', message_id: 'w', status: 'deleted', source_status: 'deleted', occurred_at: '2026-01-01T00:00:00Z', errors: [], dedup_key: 'y' }, 'whatsapp_cloud_send')).toBeNull();
  });
});

describe('Graph API message bodies', () => {
  it('builds text, template with header and body parameters, and media by link as Meta documents them', () => {
    expect(graphMessageBody({ type: 'text', body: 'Hi' }, '+15551234567', 'wamid.IN')).toEqual({
      messaging_product: 'whatsapp', recipient_type: 'individual', to: '15551234567', context: { message_id: 'wamid.IN' }, type: 'text', text: { body: 'Hi', preview_url: false },
    });
    expect(graphMessageBody({ type: 'template', name: 'results_ready', language: 'en_US', body_parameters: ['Jane', 'Monday'], header_parameters: ['Results'] }, '+15551234567', undefined)).toMatchObject({
      type: 'template',
      template: { name: 'results_ready', language: { code: 'en_US' }, components: [{ type: 'header', parameters: [{ type: 'text', text: 'Results' }] }, { type: 'body', parameters: [{ type: 'text', text: 'Jane' }, { type: 'text', text: 'Monday' }] }] },
    });
    expect(graphMessageBody({ type: 'template', name: 'hello', language: 'en', body_parameters: [] }, '+15551234567', undefined)).toMatchObject({ template: { name: 'hello', language: { code: 'en' } } });
    expect(graphMessageBody({ type: 'template', name: 'hello', language: 'en', body_parameters: [] }, '+15551234567', undefined)['template']).not.toHaveProperty('components');
    expect(graphMessageBody({ type: 'media', kind: 'document', url: 'https://ehr.example/r.pdf', mime_type: 'application/pdf', caption: 'Results', filename: 'results.pdf' }, '+15551234567', undefined)).toMatchObject({
      type: 'document', document: { link: 'https://ehr.example/r.pdf', caption: 'Results', filename: 'results.pdf' },
    });
    expect(graphMessageBody({ type: 'media', kind: 'audio', url: 'https://ehr.example/a.ogg', mime_type: 'audio/ogg', caption: 'no captions on audio' }, '+15551234567', undefined)).toMatchObject({ type: 'audio', audio: { link: 'https://ehr.example/a.ogg' } });
    expect((graphMessageBody({ type: 'media', kind: 'audio', url: 'https://ehr.example/a.ogg', mime_type: 'audio/ogg', caption: 'x' }, '+15551234567', undefined)['audio'] as object)).not.toHaveProperty('caption');
  });
});

describe('Twilio and Rocket.Chat message bodies', () => {
  it('Twilio: Body, MediaUrl with the caption as Body, ContentSid by name (or name:language) with ContentVariables', async () => {
    const { twilioMessageForm } = await import('../../src/connectors/destinations/twilio-send.js');
    const HX = `HX${'b'.repeat(32)}`;
    const HXES = `HX${'c'.repeat(32)}`;
    expect(twilioMessageForm({ type: 'text', body: 'Hi' }, '+15551234567', {})).toEqual({ To: 'whatsapp:+15551234567', Body: 'Hi' });
    expect(twilioMessageForm({ type: 'media', kind: 'image', url: 'https://ehr.example/x.png', mime_type: 'image/png', caption: 'X-ray' }, '+15551234567', {})).toEqual({
      To: 'whatsapp:+15551234567', MediaUrl: ['https://ehr.example/x.png'], Body: 'X-ray',
    });
    expect(twilioMessageForm({ type: 'template', name: 'hello', language: 'en_US', body_parameters: ['Dr. Lee', 'Friday'] }, '+15551234567', { hello: HX })).toEqual({
      To: 'whatsapp:+15551234567', ContentSid: HX, ContentVariables: '{"1":"Dr. Lee","2":"Friday"}',
    });
    expect(twilioMessageForm({ type: 'template', name: 'hello', language: 'es', body_parameters: [] }, '+15551234567', { hello: HX, 'hello:es': HXES })).toEqual({ To: 'whatsapp:+15551234567', ContentSid: HXES });
    expect(() => twilioMessageForm({ type: 'template', name: 'unknown', language: 'en', body_parameters: [] }, '+15551234567', { hello: HX })).toThrow(/no Content SID for template unknown/);
  });

  it('Rocket.Chat: msg, media as an attachment with its link, no templates', async () => {
    const { rocketChatMessage } = await import('../../src/connectors/destinations/rocketchat-send.js');
    expect(rocketChatMessage({ type: 'text', body: 'Hi' })).toEqual({ msg: 'Hi' });
    expect(rocketChatMessage({ type: 'media', kind: 'document', url: 'https://ehr.example/r.pdf', mime_type: 'application/pdf', filename: 'results.pdf', caption: 'Your results' })).toEqual({
      msg: 'Your results', attachments: [{ title: 'results.pdf', title_link: 'https://ehr.example/r.pdf', title_link_download: true }],
    });
    expect(rocketChatMessage({ type: 'media', kind: 'image', url: 'https://ehr.example/x.png', mime_type: 'image/png' })).toEqual({ msg: '', attachments: [{ title: 'image', title_link: 'https://ehr.example/x.png', image_url: 'https://ehr.example/x.png' }] });
    expect(() => rocketChatMessage({ type: 'template', name: 'hello', language: 'en', body_parameters: [] })).toThrow(/no message templates/);
  });
});
