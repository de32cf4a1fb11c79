/**
 * The audit contract: what is recorded for every access to PHI and every action. The store
 * implements it (append-only, hash-chained table `audit_events`); higher layers only call
 * `record`. Entries carry ids, never message content, names or phone numbers.
 */
import type { Principal } from './principal.js';

export const auditActions = [
  'message.viewed',
  'message.searched',
  'delivery.viewed',
  'conversation.viewed',
  'media.fetched',
  'delivery.replayed',
  'delivery.bulk_replayed',
  'delivery.discarded',
  'destination.paused',
  'destination.resumed',
  'channels.reloaded',
  'keys.rotated',
  'keys.reencrypted',
  'audit.exported',
  'audit.verified',
  'audit.viewed',
  'store.pruned',
  'auth.failed',
  'auth.throttled',
  'auth.login',
  'auth.logout',
  'token.created',
  'token.revoked',
] as const;
export type AuditAction = (typeof auditActions)[number];

export type AuditOutcome = 'success' | 'failure';

export interface AuditResource {
  /** e.g. `message`, `delivery`, `media`, `channel`, `destination`, `token`, `key`. */
  type: string;
  id: string;
}

export interface AuditEntry {
  action: AuditAction;
  /** Null: the caller could not be authenticated (e.g. a login failure). */
  principal: Principal | null;
  outcome: AuditOutcome;
  resources?: readonly AuditResource[];
  /** The client address as the HTTP edge saw it, or `cli` / `system`. */
  sourceAddress?: string;
  /** PHI-free facts only: counts, reasons typed by an operator, error codes. */
  detail?: Readonly<Record<string, string | number | boolean | null>>;
}

export interface AuditRecorder {
  /** Durable once resolved. Fails loudly: an action whose audit entry cannot be written must not proceed silently. */
  record(entry: AuditEntry): Promise<void>;
}

/** An entry as the trail holds it: numbered, timed and chained. */
export interface RecordedAuditEntry extends AuditEntry {
  seq: number;
  recordedAt: Date;
  /** Hex of the previous entry's hash (64 zeros for the first). */
  prevHash: string;
  /** Hex HMAC-SHA256 of this entry's content and prevHash under the audit key. */
  hash: string;
}
