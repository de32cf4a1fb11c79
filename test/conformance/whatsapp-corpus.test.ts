/**
 * Conformance: every WhatsApp webhook payload of the corpus (Meta's documentation examples, pywa's
 * and Kapso's test data) has a documented outcome. The behaviours themselves are proven on the
 * project's own fixtures in test/unit/whatsapp-parse.test.ts.
 */
import { describeConformance } from '../support/conformance-corpus.js';
import { checkWhatsAppOutcomes, webhookFiles, type Outcome } from '../support/whatsapp-outcomes.js';

const outcomes: Record<string, Outcome> = {
  'kapso_batch_order_sticker_nfm_status_call.json': {
    messages: ['order', 'sticker', 'interactive'],
    statuses: 1,
    ignored: ['entry[0].changes[0].value.calls (1)'],
    sourceErrors: 0,
    note: 'batch in one value; the call is ignored, not lost; order quantity "1" is a string',
  },
  'meta_button_template_quick_reply.json': { messages: ['button'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_image.json': { messages: ['image'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_interactive_button_reply.json': { messages: ['interactive'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_interactive_list_reply.json': { messages: ['interactive'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_location.json': { messages: ['location'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_reaction.json': { messages: ['reaction'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_reaction_removed.json': { messages: ['reaction'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_status_delivered.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'meta_status_failed_131049.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'meta_status_sent_marketing_pmp.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'meta_status_v24_no_conversation_no_pricing.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'meta_text.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_text_click_to_whatsapp_referral.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_text_message_business_button.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'meta_unsupported_edit.json': {
    messages: ['unsupported'],
    statuses: 0,
    ignored: [],
    sourceErrors: 0,
    note: 'Meta itself reports the edit as unsupported (131051) for Cloud API numbers',
  },
  'pywa_deleted_message_revoke.json': {
    messages: ['revoke'],
    statuses: 0,
    ignored: [],
    sourceErrors: 0,
    note: 'placeholder "from": platform id kept, no phone, contact not matched',
  },
  'pywa_edited_message_image.json': { messages: ['edit'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_flow_completion_completion.json': { messages: ['interactive'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_animated_sticker.json': { messages: ['sticker'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_audio.json': { messages: ['audio'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_contacts.json': { messages: ['contacts'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_current_location.json': { messages: ['location'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_document.json': { messages: ['document'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_forwarded.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_forwarded_many_times.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_interactive_message_with_err.json': {
    messages: ['unsupported'],
    statuses: 0,
    ignored: [],
    sourceErrors: 1,
    note: 'type "interactive" without an interactive object, plus value-level error 131000',
  },
  'pywa_message_media_with_url.json': { messages: ['image'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_order.json': { messages: ['order'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_reply.json': { messages: ['text'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_static_sticker.json': { messages: ['sticker'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_status_failed.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'pywa_message_status_group.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'pywa_message_status_played.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'pywa_message_status_read.json': { messages: [], statuses: 1, ignored: [], sourceErrors: 0 },
  'pywa_message_unsupported_with_type.json': { messages: ['unsupported'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_video.json': { messages: ['video'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_message_voice.json': { messages: ['audio'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_system_identity_change.json': { messages: ['system'], statuses: 0, ignored: [], sourceErrors: 0 },
  'pywa_system_phone_number_change.json': {
    messages: ['system'],
    statuses: 0,
    ignored: [],
    sourceErrors: 0,
    note: 'no contacts array at all',
  },
};

describeConformance('conformance: WhatsApp payloads written by others', 'whatsapp', (dir) => checkWhatsAppOutcomes(webhookFiles([dir]), outcomes));
