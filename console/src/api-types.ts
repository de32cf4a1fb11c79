/** The admin API's answers as they arrive over the wire (times as ISO strings). */
export type RoleName = 'viewer' | 'operator' | 'analyst' | 'admin';
export type DeliveryState = 'pending' | 'delivered' | 'dropped' | 'dead_lettered' | 'discarded';

export interface ApiErrorBody {
  error: { code: string; message: string };
}

export interface WhoAmI {
  principal: { kind: string; display: string; role: RoleName | null };
  /** The permissions the gateway grants this principal (what the console offers). */
  permissions: string[];
}

export interface ConfigIssue {
  file: string;
  line: number;
  column: number;
  message: string;
}

export interface ReloadStatus {
  ok: boolean;
  at: string;
  versions: Record<string, Record<string, string>>;
  issues: ConfigIssue[];
  error?: string;
}

export interface ChannelsAnswer {
  reload: ReloadStatus;
  channels: { id: string; file: string; source: { path?: string }; destinations: { name: string; mapping: string; mapping_version: string }[] }[];
}

export interface DestinationStatus {
  channel: string;
  destination: string;
  paused: boolean;
  circuit: { state: 'closed' | 'open' | 'half_open'; consecutiveFailures: number; trips: number; openUntil: string | null } | null;
  counts: Record<string, number>;
}

export interface StatsAnswer {
  since: string;
  window_minutes: number;
  destinations: { channelId: string; destination: string; delivered: number; attempts: number; failedAttempts: number }[];
  dead_letters: { channelId: string; destination: string; count: number }[];
}

export interface DeliveryRecord {
  id: string;
  messageId: string;
  channelId: string;
  destination: string;
  state: DeliveryState;
  generation: number;
  attempts: number;
  reason: string | null;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
  deadLetteredAt: string | null;
  deliveredAt: string | null;
  mappingVersion: string | null;
  outcome: Record<string, unknown> | null;
  createdAt: string;
  updatedAt: string;
  sourceMessageId: string;
  messageKind: string;
}

export interface AttemptRecord {
  generation: number;
  attempt: number;
  startedAt: string;
  finishedAt: string;
  result: 'delivered' | 'dropped' | 'retry' | 'dead_lettered';
  errorCode: string | null;
  errorMessage: string | null;
  retryAfterMs: number | null;
  mappingVersion: string | null;
  detail: Record<string, unknown> | null;
  response: unknown;
}

export interface DeliveryAction {
  action: 'replay' | 'discard';
  actor: string;
  reason: string | null;
  at: string;
}

export interface MessageSummary {
  id: string;
  channelId: string;
  kind: string;
  sentAt: string;
  receivedAt: string;
  filtered: boolean;
  sourceMessageId: string;
  deliveries: { id: string; destination: string; state: DeliveryState; attempts: number; lastErrorCode: string | null }[];
}

export interface SearchAnswer {
  items: MessageSummary[];
  next: { before_at: string; before_id: string } | null;
}

export interface MessageTrace {
  /** The servers' answers were left out: the principal may not read content. */
  contentWithheld?: boolean;
  id: string;
  channelId: string;
  kind: string;
  sourceMessageId: string;
  sentAt: string;
  receivedAt: string;
  parsedAt: string;
  filtered: boolean;
  event: { id: string; receivedAt: string; ingestedAt: string | null; state: 'received' | 'ingested' | 'failed' };
  statuses: { status: string; occurredAt: string }[];
  deliveries: (DeliveryRecord & { history: AttemptRecord[]; actions: DeliveryAction[] })[];
}

export interface DeadLettersAnswer {
  items: DeliveryRecord[];
  next: { after_at: string; after_id: string } | null;
}

export interface AuditEntry {
  seq: number;
  recorded_at: string;
  action: string;
  outcome: 'success' | 'failure';
  principal: { kind: string; id: string; display: string; role: RoleName | null } | null;
  source_address: string | null;
  resources: { type: string; id: string }[];
  detail: Record<string, string | number | boolean | null>;
  prev_hash: string;
  hash: string;
}

export interface AuditPage {
  items: AuditEntry[];
  next: { before_seq: number } | null;
  actions: string[];
}

export type AuditVerify =
  | { ok: true; summary: string; entries: number; first_seq: number | null; last_seq: number | null }
  | { ok: false; summary: string; entries: number; seq: number; recorded_at: string; problem: 'altered' | 'removed' | 'inserted' };

/** GET /admin/messages/:id/content: the canonical message (PHI; content.read, each view audited). */
export interface MessageContent {
  message_id: string;
  message: {
    kind: string;
    sender: { phone?: string; display_name?: string; username?: string; email?: string; platform_id?: string };
    text?: string;
    media: { kind?: string; mime_type?: string; caption?: string; filename?: string }[];
    location?: { latitude: number; longitude: number; name?: string; address?: string };
  } & Record<string, unknown>;
}
