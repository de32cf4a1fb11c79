/**
 * An audit entry as one JSON object: the shape of `switchboard audit export --format ndjson`
 * (one per line) and of the admin API's audit log. Ids, codes and counts only, as recorded.
 */
import type { RecordedAuditEntry } from './audit.js';

export interface AuditEntryJson {
  seq: number;
  recorded_at: string;
  action: RecordedAuditEntry['action'];
  outcome: RecordedAuditEntry['outcome'];
  principal: RecordedAuditEntry['principal'];
  source_address: string | null;
  resources: NonNullable<RecordedAuditEntry['resources']>;
  detail: NonNullable<RecordedAuditEntry['detail']>;
  prev_hash: string;
  hash: string;
}

export function auditEntryJson(e: RecordedAuditEntry): AuditEntryJson {
  return {
    seq: e.seq,
    recorded_at: e.recordedAt.toISOString(),
    action: e.action,
    outcome: e.outcome,
    principal: e.principal,
    source_address: e.sourceAddress ?? null,
    resources: e.resources ?? [],
    detail: e.detail ?? {},
    prev_hash: e.prevHash,
    hash: e.hash,
  };
}
