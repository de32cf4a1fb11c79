/**
 * The shipped mapping (mappings/whatsapp-to-communication.jsonata) on canonical messages of
 * each shape, checked by our validator (Medplum + extra rules) AND by an independent one: the
 * `fhir` package (lantanagroup), which checks required-binding codes Medplum misses.
 */
import { fileURLToPath } from 'node:url';
import { Fhir } from 'fhir';
import { beforeAll, describe, expect, it } from 'vitest';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { loadMapping, type CompiledMapping } from '../../src/mapping/jsonata-mapping.js';
import { validateFhirResource } from '../../src/fhir/validate-resource.js';

const MAPPING_FILE = fileURLToPath(new URL('../../mappings/whatsapp-to-communication.jsonata', import.meta.url));
const ID_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';
const USER_SYSTEM = 'https://switchboard.example/sid/whatsapp-user';
const PATIENT = { reference: 'Patient/7f0c1d2e-0000-4000-8000-000000000001', display: 'Jane Demo' };

type Json = Record<string, unknown>;

function message(overrides: Partial<Record<keyof CanonicalMessage, unknown>>): CanonicalMessage {
  return canonicalMessageSchema.parse({
    schema_version: 1,
    source: { kind: 'whatsapp_cloud', account_id: '102290129340398', endpoint_id: '106540352242922' },
    id: 'wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJCM0Y0RTVENkM3QjhBOUMwRAA=',
    dedup_key: 'wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJCM0Y0RTVENkM3QjhBOUMwRAA=',
    kind: 'text',
    sent_at: '2025-03-04T09:15:00Z',
    received_at: '2025-03-04T09:15:02Z',
    sender: { phone: '+15551234567', platform_id: '15551234567', display_name: 'Jane' },
    conversation_id: '15551234567',
    ...overrides,
  });
}

let mapping: CompiledMapping;
let lantana: Fhir;

beforeAll(async () => {
  mapping = await loadMapping(MAPPING_FILE);
  lantana = new Fhir();
});

async function map(msg: CanonicalMessage, patient: typeof PATIENT | null = PATIENT): Promise<Json> {
  const out = await mapping.evaluate(msg, {
    now: new Date(msg.received_at),
    bindings: { patient, identifier_system: ID_SYSTEM, channel: { id: 'demo' } },
  });
  expect(out).toBeDefined();
  return JSON.parse(JSON.stringify(out)) as Json;
}

/** Both validators must accept it. */
function expectValid(resource: Json): void {
  expect(validateFhirResource(resource, 'Communication')).toEqual({ ok: true });
  const independent = lantana.validate(resource);
  const errors = independent.messages?.filter((m) => m.severity === 'error') ?? [];
  expect(errors).toEqual([]);
  expect(independent.valid).toBe(true);
}

describe('whatsapp-to-communication mapping', () => {
  it('maps a text message from a matched patient', async () => {
    const c = await map(message({ text: 'I have a fever since yesterday' }));
    expectValid(c);
    expect(c).toMatchObject({
      resourceType: 'Communication',
      identifier: [{ system: ID_SYSTEM, value: 'wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJCM0Y0RTVENkM3QjhBOUMwRAA=' }],
      status: 'completed',
      category: [{ coding: [{ system: 'https://switchboard.example/CodeSystem/communication-category', code: 'patient-message' }], text: 'Patient message' }],
      subject: PATIENT,
      sender: PATIENT,
      sent: '2025-03-04T09:15:00Z',
      received: '2025-03-04T09:15:02Z',
      payload: [{ contentString: 'I have a fever since yesterday' }],
    });
    const medium = (c.medium as { coding: { system: string; code: string }[]; text: string }[])[0];
    expect(medium?.coding).toEqual([
      { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode', code: 'ONLINEWRIT', display: 'online written' },
      { system: 'https://switchboard.example/CodeSystem/messaging-channel', code: 'whatsapp', display: 'WhatsApp' },
    ]);
    expect(medium?.text).toBe('WhatsApp');
    expect(c).not.toHaveProperty('inResponseTo');
  });

  it('maps an image with a caption to a text part and an attachment without url', async () => {
    const c = await map(
      message({
        kind: 'image',
        text: 'the rash this morning',
        media: [{ kind: 'image', media_id: '1479537139650973', mime_type: 'image/jpeg', sha256: 'HgsiHzbiJDhS0Y6pxPmC1nHnLUCVn4rbDb4F2RqO1a8=', caption: 'the rash this morning' }],
      }),
    );
    expectValid(c);
    expect(c.payload).toEqual([
      { contentString: 'the rash this morning' },
      { contentAttachment: { contentType: 'image/jpeg', title: '[image]' } },
    ]);
  });

  it('keeps a media url and filename when the source gives them', async () => {
    const c = await map(
      message({
        kind: 'document',
        media: [{ kind: 'document', mime_type: 'application/pdf', filename: 'lab-results.pdf', url: 'https://media.example.org/m/abc123' }],
      }),
    );
    expectValid(c);
    expect(c.payload).toEqual([
      { contentAttachment: { contentType: 'application/pdf', url: 'https://media.example.org/m/abc123', title: 'lab-results.pdf' } },
    ]);
  });

  it('maps a voice note with medium DICTATE', async () => {
    const c = await map(message({ kind: 'audio', media: [{ kind: 'audio', media_id: '9901', mime_type: 'audio/ogg; codecs=opus', voice: true }] }));
    expectValid(c);
    const medium = (c.medium as { coding: { code: string }[] }[])[0];
    expect(medium?.coding[0]?.code).toBe('DICTATE');
    expect(c.payload).toEqual([{ contentAttachment: { contentType: 'audio/ogg; codecs=opus', title: '[voice note]' } }]);
  });

  it('threads a reply with inResponseTo on the message identifier', async () => {
    const c = await map(message({ text: 'yes, 10am works', reply_to: { id: 'wamid.ORIGINAL123', from: '15550009999' } }));
    expectValid(c);
    expect(c.inResponseTo).toEqual([{ type: 'Communication', identifier: { system: ID_SYSTEM, value: 'wamid.ORIGINAL123' } }]);
  });

  it('leaves an unmatched sender unlinked, as a logical reference without phone number', async () => {
    const c = await map(message({ text: 'hello', sender: { phone: '+15559876543', platform_id: '15559876543', display_name: '+1 555 987 6543' } }), null);
    expectValid(c);
    expect(c).not.toHaveProperty('subject');
    // A display name that is a phone number is not used as display.
    expect(c.sender).toEqual({ identifier: { system: USER_SYSTEM, value: '15559876543' } });

    const named = await map(message({ text: 'hello', sender: { phone: '+15559876543', platform_id: '15559876543', display_name: 'Sam' } }), null);
    expectValid(named);
    expect(named.sender).toEqual({ identifier: { system: USER_SYSTEM, value: '15559876543' }, display: 'Sam' });
  });

  it('uses the business-scoped user id for a BSUID-only sender', async () => {
    const c = await map(message({ text: 'hi', sender: { user_id: 'US.13491208655302741918', username: 'jdoe' } }), null);
    expectValid(c);
    expect(c.sender).toEqual({ identifier: { system: USER_SYSTEM, value: 'US.13491208655302741918' } });
    expect(c).not.toHaveProperty('subject');
  });

  it('maps a shared location to readable text', async () => {
    const c = await map(
      message({ kind: 'location', location: { latitude: 38.9, longitude: -77.03, name: 'Main Street Clinic', address: '1 Main St, Springfield' } }),
    );
    expectValid(c);
    expect(c.payload).toEqual([{ contentString: 'Shared location: Main Street Clinic | 1 Main St, Springfield | 38.9, -77.03' }]);
  });

  it('never emits an empty payload: falls back to the kind', async () => {
    const sticker = await map(message({ kind: 'sticker', text: '' }));
    expectValid(sticker);
    expect(sticker.payload).toEqual([{ contentString: '[sticker]' }]);

    const unsupported = await map(message({ kind: 'unsupported', unsupported: { type: 'unknown' } }));
    expectValid(unsupported);
    expect(unsupported.payload).toEqual([{ contentString: '[unsupported message]' }]);
  });

  it('gives a reaction its own identifier (reactions reuse the target id) and points at the target', async () => {
    const c = await map(
      message({
        kind: 'reaction',
        id: 'wamid.TARGET',
        dedup_key: 'wamid.TARGET:reaction:👍:1741079700',
        text: '👍',
        reaction: { target_id: 'wamid.TARGET', emoji: '👍' },
      }),
    );
    expectValid(c);
    expect(c.identifier).toEqual([{ system: ID_SYSTEM, value: 'wamid.TARGET:reaction:👍:1741079700' }]);
    expect(c.inResponseTo).toEqual([{ type: 'Communication', identifier: { system: ID_SYSTEM, value: 'wamid.TARGET' } }]);
    expect(c.payload).toEqual([{ contentString: 'Reacted 👍 to a message' }]);
  });
});

describe('validateFhirResource', () => {
  const valid = {
    resourceType: 'Communication',
    status: 'completed',
    sent: '2025-03-04T09:15:00Z',
    payload: [{ contentString: 'hello' }],
  };

  it('accepts a valid Communication and refuses another type', () => {
    expect(validateFhirResource(valid, 'Communication')).toEqual({ ok: true });
    const other = validateFhirResource({ resourceType: 'Patient' }, 'Communication');
    expect(other.ok).toBe(false);
  });

  it('refuses a status outside event-status (the independent validator agrees)', () => {
    const bad = { ...valid, status: 'sent' };
    const ours = validateFhirResource(bad);
    expect(ours.ok).toBe(false);
    if (!ours.ok) expect(ours.issues.join('\n')).toMatch(/Communication\.status: .*event-status/);
    expect(lantana.validate(bad).valid).toBe(false);
  });

  it('refuses a dateTime with a time but no zone', () => {
    const r = validateFhirResource({ ...valid, sent: '2025-03-04T09:15:00' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues.join('\n')).toContain('Communication.sent: a dateTime with a time SHALL carry a time zone');
  });

  it('refuses a malformed reference and an empty payload item', () => {
    const r = validateFhirResource({ ...valid, sender: { reference: 'not a reference' }, payload: [{}] });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      const text = r.issues.join('\n');
      expect(text).toContain('Communication.sender.reference: not a literal reference');
      expect(text).toContain('Communication.payload[0]');
      // Issue texts never echo values.
      expect(text).not.toContain('not a reference');
    }
  });

  it('refuses a WhatsApp SHA-256 as Attachment.hash (FHIR wants base64 SHA-1)', () => {
    const sha256 = 'HgsiHzbiJDhS0Y6pxPmC1nHnLUCVn4rbDb4F2RqO1a8=';
    const r = validateFhirResource({ ...valid, payload: [{ contentAttachment: { contentType: 'image/jpeg', hash: sha256 } }] });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues.join('\n')).toMatch(/hash: must be the base64 of a SHA-1/);
    const sha1 = validateFhirResource({ ...valid, payload: [{ contentAttachment: { contentType: 'image/jpeg', hash: 'PQSnfIoQpEPpJNt6ERyCl7z0JvU=' } }] });
    expect(sha1).toEqual({ ok: true });
  });

  it('refuses non-objects and unknown elements', () => {
    expect(validateFhirResource('x').ok).toBe(false);
    expect(validateFhirResource({ ...valid, whatsapp: true }).ok).toBe(false);
  });
});
