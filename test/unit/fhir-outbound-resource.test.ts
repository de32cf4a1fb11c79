/**
 * The outbound trigger and parse (src/fhir/outbound-resource.ts): which EHR resources become
 * messages to patients, the no-loop rule, and the canonical message they become.
 */
import { describe, expect, it } from 'vitest';
import { canonicalMessageSchema } from '../../src/core/canonical-message.js';
import {
  DEFAULT_OWN_IDENTIFIER_SYSTEMS,
  outboundResourceSchema,
  outboundTrigger,
  parseOutboundEvent,
  type TriggerRules,
} from '../../src/fhir/outbound-resource.js';

const rules: TriggerRules = { ownIdentifierSystems: DEFAULT_OWN_IDENTIFIER_SYSTEMS, requireInResponseTo: false };
const opts = { ...rules, sourceKind: 'fhir_poll', baseUrl: 'https://ehr.example.org/fhir/R4/', receivedAt: new Date('2026-03-01T12:00:00.000Z') };

function communication(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Communication',
    id: 'c1',
    meta: { versionId: '3', lastUpdated: '2026-03-01T11:59:00.123+01:00' },
    status: 'in-progress',
    recipient: [{ reference: 'Patient/p1' }],
    sender: { reference: 'Practitioner/d1', display: 'Dr Example' },
    payload: [{ contentString: 'Your results are normal.' }],
    ...extra,
  };
}

function verdict(resource: Record<string, unknown>, r: TriggerRules = rules) {
  return outboundTrigger(outboundResourceSchema.parse(resource), r);
}

const raw = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

describe('outbound trigger', () => {
  it('triggers on a Communication to one Patient in preparation or in-progress with a payload', () => {
    expect(verdict(communication())).toEqual({ trigger: true, patient: 'Patient/p1' });
    expect(verdict(communication({ status: 'preparation' }))).toEqual({ trigger: true, patient: 'Patient/p1' });
    expect(verdict(communication({ recipient: [{ reference: 'https://ehr.example.org/fhir/R4/Patient/p1/_history/2' }] }))).toEqual({ trigger: true, patient: 'Patient/p1' });
  });

  it.each([
    ['completed', { status: 'completed' }, /status "completed"/],
    ['to a Practitioner', { recipient: [{ reference: 'Practitioner/d1' }] }, /no recipient is a Patient/],
    ['to two Patients', { recipient: [{ reference: 'Patient/p1' }, { reference: 'Patient/p2' }] }, /several Patient recipients/],
    ['without payload', { payload: [{ contentString: '  ' }] }, /no payload/],
  ])('does not trigger on a Communication %s', (_what, extra, reason) => {
    const v = verdict(communication(extra));
    expect(v.trigger).toBe(false);
    expect(!v.trigger && v.reason).toMatch(reason);
  });

  it('never triggers on a Communication Switchboard created from a patient message (no loop), whatever its status and recipient', () => {
    const own = verdict(communication({ identifier: [{ system: 'https://switchboard.example/sid/whatsapp-message-id', value: 'wamid.X' }] }));
    expect(own).toMatchObject({ trigger: false, reason: expect.stringMatching(/created by Switchboard/) });
    const byCategory = verdict(
      communication({ category: [{ coding: [{ system: 'https://switchboard.example/CodeSystem/communication-category', code: 'patient-message' }] }] }),
    );
    expect(byCategory.trigger).toBe(false);
    // A channel's own system is configurable.
    const custom = communication({ identifier: [{ system: 'urn:acme:chat', value: '1' }] });
    expect(verdict(custom).trigger).toBe(true);
    expect(verdict(custom, { ...rules, ownIdentifierSystems: ['urn:acme:chat'] }).trigger).toBe(false);
  });

  it('with require_in_response_to, triggers only on answers to a Communication Switchboard created', () => {
    const r = { ...rules, requireInResponseTo: true };
    const res = outboundResourceSchema.parse(communication({ inResponseTo: [{ reference: 'Communication/in1' }] }));
    expect(outboundTrigger(res, r, [{ reference: 'Communication/in1' }]).trigger).toBe(false);
    expect(outboundTrigger(res, r, [{ reference: 'Communication/in1', identifier: { system: 'https://switchboard.example/sid/whatsapp-message-id', value: 'wamid.X' } }]).trigger).toBe(true);
  });

  it('triggers on an active CommunicationRequest to a Patient, not a draft', () => {
    const request = { resourceType: 'CommunicationRequest', id: 'r1', meta: { versionId: '1' }, status: 'active', recipient: [{ reference: 'Patient/p1' }], payload: [{ contentString: 'Book a visit' }] };
    expect(verdict(request).trigger).toBe(true);
    expect(verdict({ ...request, status: 'draft' }).trigger).toBe(false);
  });
});

describe('outbound parse', () => {
  it('makes a valid canonical message: staff author, the Patient as conversation, the version-less reference as dedup key, the resource as received', () => {
    const resource = communication();
    const result = parseOutboundEvent(raw({ fhir_outbound: { base_url: 'https://ehr.example.org/fhir/R4', resource, in_response_to: [] } }), opts);
    expect(result.ignored).toEqual([]);
    const [msg] = result.messages;
    expect(canonicalMessageSchema.parse(msg)).toEqual(msg);
    expect(msg).toMatchObject({
      id: 'Communication/c1',
      dedup_key: 'https://ehr.example.org/fhir/R4/Communication/c1',
      kind: 'text',
      text: 'Your results are normal.',
      author_role: 'staff',
      conversation_id: 'Patient/p1',
      sent_at: '2026-03-01T10:59:00.123Z',
      sender: { platform_id: 'Practitioner/d1', display_name: 'Dr Example' },
      ehr: { resource_type: 'Communication', id: 'c1', version_id: '3', base_url: 'https://ehr.example.org/fhir/R4', resource },
    });
    // A later version (a status write-back) has the same key: never a second send.
    const later = parseOutboundEvent(raw({ ...resource, meta: { versionId: '4' } }), opts).messages[0];
    expect(later?.dedup_key).toBe(msg?.dedup_key);
    expect(later?.ehr?.version_id).toBe('4');
  });

  it('an attachment-only payload is a document message with its media link', () => {
    const [msg] = parseOutboundEvent(raw(communication({ payload: [{ contentAttachment: { contentType: 'application/pdf', url: 'https://files.example.org/r.pdf', title: 'results.pdf' } }] })), opts).messages;
    expect(msg).toMatchObject({ kind: 'document', media: [{ kind: 'document', url: 'https://files.example.org/r.pdf', mime_type: 'application/pdf', filename: 'results.pdf' }] });
    expect(msg?.text).toBeUndefined();
  });

  it('quotes the patient message a reply answers, as resolved by the source', () => {
    const [msg] = parseOutboundEvent(
      raw({ fhir_outbound: { resource: communication(), in_response_to: [{ reference: 'Communication/in1', identifier: { system: 'https://switchboard.example/sid/whatsapp-message-id', value: 'wamid.ABC' } }] } }),
      opts,
    ).messages;
    expect(msg?.reply_to).toEqual({ id: 'wamid.ABC' });
  });

  it('ignores, with a reason and without throwing, what is not a triggering resource', () => {
    expect(parseOutboundEvent(Buffer.from('not json'), opts).ignored).toHaveLength(1);
    expect(parseOutboundEvent(raw({ resourceType: 'Patient', id: 'p1' }), opts).ignored[0]?.reason).toMatch(/not a Communication/);
    const own = parseOutboundEvent(raw(communication({ identifier: [{ system: 'https://switchboard.example/sid/twilio-message-sid', value: 'SM1' }] })), opts);
    expect(own.messages).toEqual([]);
    expect(own.ignored[0]).toMatchObject({ what: 'Communication/c1', reason: expect.stringMatching(/never sent back/) });
  });
});
