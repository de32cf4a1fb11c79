/**
 * WhatsApp Cloud API webhook files and their documented outcomes: every `.json` file of the given
 * folders must have a row saying which canonical messages, statuses, ignored parts and source
 * errors it gives. Used for the project's own fixtures and for the conformance corpus.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { canonicalMessageSchema, canonicalStatusSchema, type MessageKind, type ParseResult } from '../../src/core/canonical-message.js';
import { parseWhatsAppCloud } from '../../src/connectors/sources/whatsapp-cloud-parse.js';

export const whatsappParseContext = { channelId: 'wa-test', receivedAt: new Date('2026-03-01T12:00:00.000Z') };

export interface Outcome {
  /** Kinds of the canonical messages, in order. */
  messages: MessageKind[];
  statuses: number;
  /** `what` of each ignored part, in order. */
  ignored: string[];
  sourceErrors: number;
  /** Why the outcome is what it is, where it is not obvious. */
  note?: string;
}

/** Webhook files of the folders (signature vectors excluded), by file name; names must be unique across folders. */
export function webhookFiles(dirs: string[]): Map<string, string> {
  const files = new Map<string, string>();
  for (const dir of dirs) {
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.json') && !n.startsWith('signature_vector')).sort()) {
      if (files.has(f)) throw new Error(`${f} is in two fixture folders`);
      files.set(f, path.join(dir, f));
    }
  }
  return files;
}

/** Every output must be valid against the canonical schemas, whatever the input. */
export function expectValid(result: ParseResult): void {
  for (const m of result.messages) {
    const r = canonicalMessageSchema.safeParse(m);
    expect(r.success, r.success ? '' : JSON.stringify(r.error.issues)).toBe(true);
    expect(m.sent_at).toMatch(/Z$/);
    expect(m.received_at).toMatch(/Z$/);
  }
  for (const s of result.statuses) {
    const r = canonicalStatusSchema.safeParse(s);
    expect(r.success, r.success ? '' : JSON.stringify(r.error.issues)).toBe(true);
    expect(s.occurred_at).toMatch(/Z$/);
  }
}

/** Declares one test per file plus one that the table lists exactly the files. */
export function checkWhatsAppOutcomes(files: Map<string, string>, outcomes: Record<string, Outcome>): void {
  const names = [...files.keys()].sort();
  it('the outcome table lists exactly the fixture files (add a row when adding a fixture)', () => {
    expect(names.length).toBeGreaterThan(0);
    expect(Object.keys(outcomes).sort()).toEqual(names);
  });

  it.each(names)('%s', (file) => {
    const expected = outcomes[file];
    if (expected === undefined) throw new Error(`no outcome row for ${file}`);
    const result = parseWhatsAppCloud(readFileSync(files.get(file)!), whatsappParseContext);
    expectValid(result);
    expect(result.messages.map((m) => m.kind)).toEqual(expected.messages);
    expect(result.statuses).toHaveLength(expected.statuses);
    expect(result.ignored.map((i) => i.what)).toEqual(expected.ignored);
    expect(result.source_errors).toHaveLength(expected.sourceErrors);
    for (const m of result.messages) {
      expect(m.source.kind).toBe('whatsapp_cloud');
      expect(m.received_at).toBe('2026-03-01T12:00:00.000Z');
    }
  });
}
