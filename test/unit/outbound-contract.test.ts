import { describe, expect, it } from 'vitest';
import {
  outboundIdempotencyKey,
  outboundMessageSchema,
  outboundStatusSchema,
  windowOpen,
  isFreeForm,
  movesForward,
} from '../../src/core/outbound.js';

const base = {
  recipient: { patient: 'Patient/p1' },
  origin: { resource_type: 'Communication', id: 'c1', version_id: '3' },
  correlation_id: 'corr-1',
} as const;

describe('outbound contract', () => {
  it('accepts text, template and media content and rejects what WhatsApp would refuse', () => {
    expect(outboundMessageSchema.parse({ ...base, content: { type: 'text', body: 'Your results are ready' } }).schema_version).toBe(1);
    const t = outboundMessageSchema.parse({ ...base, content: { type: 'template', name: 'results_ready', language: 'en_US' } });
    expect(t.content).toEqual({ type: 'template', name: 'results_ready', language: 'en_US', body_parameters: [] });
    expect(isFreeForm(t.content)).toBe(false);
    const m = outboundMessageSchema.parse({ ...base, content: { type: 'media', kind: 'document', url: 'https://ehr.example/r.pdf', mime_type: 'application/pdf', caption: 'Results' } });
    expect(isFreeForm(m.content)).toBe(true);
    expect(outboundMessageSchema.safeParse({ ...base, content: { type: 'text', body: '' } }).success).toBe(false);
    expect(outboundMessageSchema.safeParse({ ...base, content: { type: 'template', name: 'Has Spaces', language: 'en' } }).success).toBe(false);
    expect(outboundMessageSchema.safeParse({ ...base, content: { type: 'media', kind: 'image', url: 'ftp://x/y', mime_type: 'image/png' } }).success).toBe(false);
    expect(outboundMessageSchema.safeParse({ ...base, recipient: { patient: 'Practitioner/1' }, content: { type: 'text', body: 'x' } }).success).toBe(false);
    expect(outboundMessageSchema.safeParse({ ...base, recipient: { patient: 'Patient/1', address: { kind: 'phone', phone: '5551234' } }, content: { type: 'text', body: 'x' } }).success).toBe(false);
  });

  it('keys a message by its origin without the version, so later versions are not new sends', () => {
    const v3 = outboundIdempotencyKey({ resource_type: 'Communication', id: 'c1', version_id: '3' });
    expect(v3).toBe('Communication/c1');
    expect(outboundIdempotencyKey({ resource_type: 'Communication', id: 'c1', version_id: '4' })).toBe(v3);
    expect(outboundIdempotencyKey({ resource_type: 'CommunicationRequest', id: 'c1', version_id: '1' })).not.toBe(v3);
    expect(outboundIdempotencyKey({ resource_type: 'Communication', id: 'c1', version_id: '1', base_url: 'https://ehr.example/fhir/' })).toBe('https://ehr.example/fhir/Communication/c1');
  });

  it('a failure status carries a code and reason; the window is 24 hours', () => {
    expect(outboundStatusSchema.safeParse({ status: 'failed', at: '2026-01-01T00:00:00Z', error: { code: 'WHATSAPP_WINDOW_CLOSED', reason: 'closed' } }).success).toBe(true);
    expect(outboundStatusSchema.safeParse({ status: 'seen', at: '2026-01-01T00:00:00Z' }).success).toBe(false);
    expect(outboundStatusSchema.safeParse({ status: 'failed', at: '2026-01-01T00:00:00Z' }).success).toBe(false);
    expect(outboundStatusSchema.safeParse({ status: 'sent', at: '2026-01-01T00:00:00Z', error: { code: 'X', reason: 'y' } }).success).toBe(false);
    const now = new Date('2026-01-02T00:00:00Z');
    expect(windowOpen(new Date('2026-01-01T00:00:01Z'), now)).toBe(true);
    expect(windowOpen(new Date('2026-01-01T00:00:00Z'), now)).toBe(false);
    expect(windowOpen(undefined, now)).toBe(false);
  });

  it('statuses only move forward: a late sent never replaces read, failed ends it', () => {
    expect(movesForward(undefined, 'sent')).toBe(true);
    expect(movesForward('sent', 'read')).toBe(true);
    expect(movesForward('read', 'sent')).toBe(false);
    expect(movesForward('delivered', 'delivered')).toBe(false);
    expect(movesForward('read', 'failed')).toBe(true);
    expect(movesForward('failed', 'read')).toBe(false);
  });
});
