/**
 * Rocket.Chat webhook bodies and their documented outcomes: every `.json` file of a folder has a
 * row saying which canonical messages (kinds, author roles) and ignored parts it gives. Used for
 * the project's own fixtures and for the conformance corpus.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { expect, it } from 'vitest';
import { canonicalMessageSchema, type CanonicalMessage, type ParseResult } from '../../src/core/canonical-message.js';
import type { SourceInstance } from '../../src/connectors/types.js';
import { rocketChatWebhookConfigSchema, rocketChatWebhookSource } from '../../src/connectors/sources/rocketchat-webhook.js';
import { syncResult } from './sync-parse.js';

export const ROCKETCHAT_OUTGOING_TOKEN = 'test-outgoing-token-0123';
export const ROCKETCHAT_LIVECHAT_TOKEN = 'test-livechat-secret-4567';
const ctx = { channelId: 'rc-test', receivedAt: new Date('2026-03-01T12:00:00.000Z') };

export function rocketChatSource(over: Record<string, unknown> = {}): SourceInstance {
  const config = rocketChatWebhookConfigSchema.parse({
    kind: 'rocketchat_webhook',
    outgoing_token: ROCKETCHAT_OUTGOING_TOKEN,
    livechat_token: ROCKETCHAT_LIVECHAT_TOKEN,
    staff_users: ['nurse.anna'],
    ...over,
  });
  return rocketChatWebhookSource.create(config, { channelId: 'rocketchat-to-ehr' });
}

const parseWith = rocketChatSource();
export function parseRocketChat(dir: URL, name: string): ParseResult {
  return syncResult(parseWith.parse(readFileSync(new URL(name, dir)), ctx));
}
export function parseRocketChatBody(body: Buffer): ParseResult {
  return syncResult(parseWith.parse(body, ctx));
}

export interface Outcome {
  kinds: string[];
  roles?: (string | undefined)[];
  ignored?: number;
  check?: (r: ParseResult, m: CanonicalMessage[]) => void;
}

/** Declares one test per file of `dir` plus one that the table covers exactly the files. */
export function runRocketChatTable(dir: URL, table: Record<string, Outcome>): void {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  it('the table covers exactly the fixture files', () => expect(Object.keys(table).sort()).toEqual(files));
  for (const file of files) {
    it(file, () => {
      const outcome = table[file];
      if (!outcome) throw new Error(`no outcome row for ${file}`);
      const r = parseRocketChat(dir, file);
      for (const m of r.messages) expect(canonicalMessageSchema.safeParse(m).success).toBe(true);
      expect(r.messages.map((m) => m.kind)).toEqual(outcome.kinds);
      if (outcome.roles) expect(r.messages.map((m) => m.author_role)).toEqual(outcome.roles);
      expect(r.ignored).toHaveLength(outcome.ignored ?? 0);
      expect(r.statuses).toEqual([]);
      outcome.check?.(r, r.messages);
    });
  }
}
