/**
 * Schema migrations, applied at start under an advisory lock so several processes can start at
 * once. Append new migrations; never edit a released one.
 *
 * Payload columns (`*_payload`) are bytea with a sibling `*_key_id`: NULL means plaintext, a key id
 * means the bytes are ciphertext under that key. Turning encryption on later writes new rows with
 * a key id and needs no schema change; old rows stay readable.
 */
import type { Pool, PoolClient } from 'pg';
import { withClient } from './checked-out-client.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'message store',
    sql: `
CREATE TABLE inbound_events (
  id              uuid PRIMARY KEY,
  channel_id      text NOT NULL,
  received_at     timestamptz NOT NULL,
  content_type    text,
  raw_payload     bytea NOT NULL,
  raw_key_id      text,
  state           text NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'ingested', 'failed')),
  ingested_at     timestamptz,
  error_code      text,
  error_message   text
);
-- The outbox: events stored but not yet ingested; swept at start-up and periodically.
CREATE INDEX inbound_events_outbox ON inbound_events (received_at) WHERE state = 'received';

CREATE TABLE messages (
  id                uuid PRIMARY KEY,
  channel_id        text NOT NULL,
  event_id          uuid NOT NULL REFERENCES inbound_events(id),
  source_kind       text NOT NULL,
  source_message_id text NOT NULL,
  dedup_key         text NOT NULL,
  kind              text NOT NULL,
  sent_at           timestamptz NOT NULL,
  received_at       timestamptz NOT NULL,
  canonical_payload bytea NOT NULL,
  canonical_key_id  text,
  filtered          boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel_id, dedup_key)
);
CREATE INDEX messages_source_id ON messages (channel_id, source_message_id);

CREATE TABLE message_statuses (
  id                bigserial PRIMARY KEY,
  channel_id        text NOT NULL,
  event_id          uuid NOT NULL REFERENCES inbound_events(id),
  source_message_id text NOT NULL,
  status            text NOT NULL,
  status_rank       int NOT NULL,
  occurred_at       timestamptz NOT NULL,
  detail_payload    bytea,
  detail_key_id     text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel_id, source_message_id, status)
);

CREATE TABLE deliveries (
  id               uuid PRIMARY KEY,
  message_id       uuid NOT NULL REFERENCES messages(id),
  channel_id       text NOT NULL,
  destination      text NOT NULL,
  state            text NOT NULL CHECK (state IN ('pending', 'delivered', 'dropped', 'dead_lettered', 'discarded')),
  generation       int NOT NULL DEFAULT 0,
  attempts         int NOT NULL DEFAULT 0,
  last_error_code  text,
  last_error_message text,
  dead_lettered_at timestamptz,
  delivered_at     timestamptz,
  mapping_version  text,
  outcome          jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (message_id, destination)
);
CREATE INDEX deliveries_dead_letters ON deliveries (channel_id, destination, dead_lettered_at) WHERE state = 'dead_lettered';
CREATE INDEX deliveries_pending ON deliveries (created_at) WHERE state = 'pending';

CREATE TABLE delivery_attempts (
  id              bigserial PRIMARY KEY,
  delivery_id     uuid NOT NULL REFERENCES deliveries(id),
  generation      int NOT NULL,
  attempt         int NOT NULL,
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz NOT NULL DEFAULT now(),
  result          text NOT NULL CHECK (result IN ('delivered', 'dropped', 'retry', 'dead_lettered')),
  error_code      text,
  error_message   text,
  retry_after_ms  int,
  mapping_version text,
  -- PHI-free facts (status codes, resource ids) in detail; server answers that may echo content
  -- (OperationOutcome) in the encryptable payload.
  detail          jsonb,
  response_payload bytea,
  response_key_id text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

CREATE TABLE delivery_actions (
  id           bigserial PRIMARY KEY,
  delivery_id  uuid NOT NULL REFERENCES deliveries(id),
  action       text NOT NULL CHECK (action IN ('replay', 'discard')),
  actor        text NOT NULL,
  reason       text,
  at           timestamptz NOT NULL DEFAULT now()
);
`,
  },
  {
    version: 2,
    name: 'source cursors',
    sql: `
CREATE TABLE source_cursors (
  channel_id  text NOT NULL,
  key         text NOT NULL,
  value       text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel_id, key)
);
`,
  },
  {
    version: 3,
    name: 'conversation ordering',
    sql: `
ALTER TABLE messages ADD COLUMN conversation_id text;
CREATE INDEX messages_conversation ON messages (channel_id, conversation_id, sent_at);
`,
  },
  {
    version: 4,
    name: 'encryption at rest',
    // Data keys, wrapped by a key-encryption key; every column that can hold PHI becomes an
    // encryptable payload; identifiers become keyed blind indexes (computed by the application at
    // start for rows written before this migration, which then clears the plaintext columns).
    sql: `
CREATE TABLE encryption_keys (
  id         text PRIMARY KEY,
  purpose    text NOT NULL CHECK (purpose IN ('data', 'index')),
  kek_id     text NOT NULL,
  wrapped    bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  seq        bigserial NOT NULL UNIQUE
);

ALTER TABLE inbound_events ADD COLUMN error_payload bytea, ADD COLUMN error_key_id text;
UPDATE inbound_events SET error_payload = convert_to(error_message, 'UTF8') WHERE error_message IS NOT NULL;
ALTER TABLE inbound_events DROP COLUMN error_message;

ALTER TABLE messages
  ADD COLUMN source_id_payload bytea, ADD COLUMN source_id_key_id text,
  ADD COLUMN source_index bytea, ADD COLUMN dedup_index bytea, ADD COLUMN conversation_index bytea,
  ALTER COLUMN source_message_id DROP NOT NULL, ALTER COLUMN dedup_key DROP NOT NULL;
CREATE UNIQUE INDEX messages_dedup_index ON messages (channel_id, dedup_index);
CREATE INDEX messages_source_index ON messages (channel_id, source_index);
CREATE INDEX messages_conversation_index ON messages (channel_id, conversation_index, sent_at);
DROP INDEX messages_source_id;
DROP INDEX messages_conversation;

ALTER TABLE message_statuses ADD COLUMN source_index bytea, ALTER COLUMN source_message_id DROP NOT NULL;
CREATE UNIQUE INDEX message_statuses_source_index ON message_statuses (channel_id, source_index, status);

ALTER TABLE deliveries
  ADD COLUMN last_error_payload bytea, ADD COLUMN last_error_key_id text,
  ADD COLUMN outcome_payload bytea, ADD COLUMN outcome_key_id text;
UPDATE deliveries SET last_error_payload = convert_to(last_error_message, 'UTF8') WHERE last_error_message IS NOT NULL;
UPDATE deliveries SET outcome_payload = convert_to(outcome::text, 'UTF8') WHERE outcome IS NOT NULL;
ALTER TABLE deliveries DROP COLUMN last_error_message, DROP COLUMN outcome;

ALTER TABLE delivery_attempts
  ADD COLUMN error_payload bytea, ADD COLUMN error_key_id text,
  ADD COLUMN detail_payload bytea, ADD COLUMN detail_key_id text;
UPDATE delivery_attempts SET error_payload = convert_to(error_message, 'UTF8') WHERE error_message IS NOT NULL;
UPDATE delivery_attempts SET detail_payload = convert_to(detail::text, 'UTF8') WHERE detail IS NOT NULL;
ALTER TABLE delivery_attempts DROP COLUMN error_message, DROP COLUMN detail;
`,
  },
  {
    version: 5,
    name: 'audit trail',
    // Append-only and hash-chained: each entry carries the previous entry's hash; the hash is an
    // HMAC under the audit key (wrapped in encryption_keys), so an entry cannot be forged or
    // re-chained by someone who can write to the database but does not hold the keys. Partitioned
    // by year so retention drops whole partitions (src/store/audit-store.ts creates them).
    sql: `
ALTER TABLE encryption_keys DROP CONSTRAINT encryption_keys_purpose_check;
ALTER TABLE encryption_keys ADD CONSTRAINT encryption_keys_purpose_check CHECK (purpose IN ('data', 'index', 'audit'));

CREATE TABLE audit_events (
  seq               bigint NOT NULL,
  recorded_at       timestamptz NOT NULL,
  action            text NOT NULL,
  outcome           text NOT NULL CHECK (outcome IN ('success', 'failure')),
  principal_kind    text,
  principal_id      text,
  principal_display text,
  principal_role    text,
  source_address    text,
  resources         jsonb NOT NULL DEFAULT '[]',
  detail            jsonb NOT NULL DEFAULT '{}',
  key_id            text NOT NULL,
  prev_hash         bytea NOT NULL,
  hash              bytea NOT NULL,
  PRIMARY KEY (seq, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX audit_events_recorded ON audit_events (recorded_at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;
`,
  },
  {
    version: 6,
    name: 'legacy identifier sweep indexes',
    // The start-up sweep that replaces plaintext identifiers of old rows by blind indexes finds
    // them through these (empty once swept), instead of scanning the tables at every start.
    sql: `
CREATE INDEX messages_legacy_identifiers ON messages (id) WHERE source_message_id IS NOT NULL;
CREATE INDEX message_statuses_legacy_identifiers ON message_statuses (id) WHERE source_message_id IS NOT NULL;
`,
  },
  {
    version: 20,
    name: 'named API tokens',
    // A token is a principal: name and role. Only the SHA-256 of the (256-bit random) token is
    // kept. Revoked tokens stay, so names in the audit trail keep meaning something; a name is
    // unique among tokens not revoked.
    sql: `
CREATE TABLE api_tokens (
  id           bigserial PRIMARY KEY,
  name         text NOT NULL,
  role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'analyst', 'admin')),
  token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  created_by   text NOT NULL,
  expires_at   timestamptz,
  last_used_at timestamptz,
  revoked_at   timestamptz,
  revoked_by   text
);
CREATE UNIQUE INDEX api_tokens_name_not_revoked ON api_tokens (name) WHERE revoked_at IS NULL;
`,
  },
  {
    version: 27,
    name: 'media link signing key',
    // Attachment URLs given to destinations carry an HMAC-SHA256 under a key of its own (purpose
    // media_link), wrapped by the key-encryption key like every other key.
    sql: `
ALTER TABLE encryption_keys DROP CONSTRAINT encryption_keys_purpose_check;
ALTER TABLE encryption_keys ADD CONSTRAINT encryption_keys_purpose_check CHECK (purpose IN ('data', 'index', 'audit', 'media_link'));
`,
  },
  {
    version: 30,
    name: 'rejected output of an attempt',
    // What a destination refused to send (invalid mapping output) or was refused (a server's
    // 4xx), kept encrypted with the attempt for the dead letter's content view.
    sql: `
ALTER TABLE delivery_attempts ADD COLUMN rejected_payload bytea, ADD COLUMN rejected_key_id text;
`,
  },
  {
    version: 40,
    name: 'conversation thread index across channels',
    // The console's conversation view and search by phone find a patient's thread in any channel
    // through the blind index alone; the older index leads with the channel.
    sql: `
CREATE INDEX messages_thread ON messages (conversation_index, sent_at);
`,
  },
  {
    version: 50,
    name: 'outbound ledger, statuses and patient conversations',
    // The ledger of sends to patients (one row per outbound delivery): the intent is committed
    // before the request goes out, the provider's id after. Identifiers by blind index, the
    // request, the provider's id and the origin encrypted. Statuses are kept per send in the order
    // recorded (seq) with whether they were passed on. A patient's conversations: the last
    // inbound message per thread, findable by the phone and by the Patient (blind indexes only).
    sql: `
CREATE TABLE outbound_sends (
  delivery_id       uuid PRIMARY KEY REFERENCES deliveries(id),
  channel_id        text NOT NULL,
  destination       text NOT NULL,
  provider          text NOT NULL,
  callback_ref      text NOT NULL UNIQUE,
  state             text NOT NULL CHECK (state IN ('not_sent', 'intent', 'accepted')),
  requests          int NOT NULL DEFAULT 0,
  intent_at         timestamptz,
  accepted_at       timestamptz,
  provider_index    bytea,
  provider_id_payload bytea,
  provider_id_key_id text,
  request_payload   bytea,
  request_key_id    text,
  origin_payload    bytea NOT NULL,
  origin_key_id     text,
  resend_generation int,
  last_status       text,
  status_seq        int NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX outbound_sends_provider_index ON outbound_sends (provider, provider_index) WHERE provider_index IS NOT NULL;

CREATE TABLE outbound_statuses (
  id             bigserial PRIMARY KEY,
  delivery_id    uuid NOT NULL REFERENCES outbound_sends(delivery_id),
  seq            int NOT NULL,
  status         text NOT NULL,
  forward        boolean NOT NULL,
  occurred_at    timestamptz NOT NULL,
  detail_payload bytea NOT NULL,
  detail_key_id  text,
  notified_at    timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (delivery_id, seq),
  UNIQUE (delivery_id, status)
);
CREATE INDEX outbound_statuses_to_notify ON outbound_statuses (delivery_id, seq) WHERE notified_at IS NULL;

CREATE TABLE patient_conversations (
  id                 bigserial PRIMARY KEY,
  channel_id         text NOT NULL,
  conversation_index bytea NOT NULL,
  source_kind        text NOT NULL,
  phone_index        bytea,
  patient_index      bytea,
  last_inbound_at    timestamptz NOT NULL,
  detail_payload     bytea NOT NULL,
  detail_key_id      text,
  updated_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel_id, conversation_index)
);
CREATE INDEX patient_conversations_phone ON patient_conversations (phone_index, last_inbound_at DESC) WHERE phone_index IS NOT NULL;
CREATE INDEX patient_conversations_patient ON patient_conversations (patient_index, last_inbound_at DESC) WHERE patient_index IS NOT NULL;
`,
  },
  {
    version: 65,
    name: 'message store in retention partitions',
    // Retention drops whole partitions, never rows one by one. Every message-store table is
    // range-partitioned by `prune_after` (the day after which its row may go) into weekly
    // partitions `<table>_wYYYYMMDD` (the Monday that starts the week); a partition is dropped
    // once its week is over. A row starts in the week its payloads expire; when its metadata is
    // kept longer (`keep_until`), retention carries it to that week without its payload columns
    // before the partition goes. Unique keys would have to include the partition key, so
    // deduplication takes a transaction-scoped advisory lock on the dedup key instead, and
    // foreign keys are kept by the application (a message, its deliveries and attempts share
    // their partition). Ids are random UUIDs or sequence numbers, indexed but not declared unique
    // (a primary key would have to include the partition key and would be unique only with it,
    // at 8 more bytes per entry). Rows from before this migration get the default retention (payloads 30
    // days, metadata 365 days), counted from their arrival but at least 30 days from now.
    sql: `
CREATE FUNCTION switchboard_retention_week(d date) RETURNS date IMMUTABLE LANGUAGE sql AS
  $$ SELECT d - ((extract(isodow FROM d)::int + 6) % 7) $$;

CREATE FUNCTION switchboard_retention_tables() RETURNS text[] IMMUTABLE LANGUAGE sql AS
  $$ SELECT ARRAY['inbound_events', 'messages', 'message_statuses', 'deliveries', 'delivery_attempts', 'delivery_actions', 'message_media'] $$;

-- Creates the week's partition of every message-store table (idempotent; serialised).
CREATE FUNCTION switchboard_ensure_retention_week(d date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  lo date := switchboard_retention_week(d);
  t text;
  part text;
BEGIN
  PERFORM pg_advisory_xact_lock(1527393552);
  FOREACH t IN ARRAY switchboard_retention_tables() LOOP
    part := t || '_w' || to_char(lo, 'YYYYMMDD');
    IF to_regclass(part) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', part, t, lo, lo + 7);
    END IF;
  END LOOP;
END;
$$;

ALTER TABLE inbound_events RENAME TO inbound_events_v64;
ALTER TABLE messages RENAME TO messages_v64;
ALTER TABLE message_statuses RENAME TO message_statuses_v64;
ALTER TABLE deliveries RENAME TO deliveries_v64;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_v64;
ALTER TABLE delivery_actions RENAME TO delivery_actions_v64;
ALTER SEQUENCE message_statuses_id_seq OWNED BY NONE;
ALTER SEQUENCE delivery_attempts_id_seq OWNED BY NONE;
ALTER SEQUENCE delivery_actions_id_seq OWNED BY NONE;

CREATE TABLE inbound_events (
  id              uuid NOT NULL,
  prune_after     date NOT NULL,
  keep_until      date NOT NULL,
  channel_id      text NOT NULL,
  received_at     timestamptz NOT NULL,
  content_type    text,
  raw_payload     bytea,
  raw_key_id      text,
  state           text NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'ingested', 'failed')),
  ingested_at     timestamptz,
  error_code      text,
  error_payload   bytea,
  error_key_id    text
) PARTITION BY RANGE (prune_after);

CREATE TABLE messages (
  id                 uuid NOT NULL,
  prune_after        date NOT NULL,
  keep_until         date NOT NULL,
  channel_id         text NOT NULL,
  event_id           uuid NOT NULL,
  source_kind        text NOT NULL,
  source_message_id  text,
  dedup_key          text,
  kind               text NOT NULL,
  sent_at            timestamptz NOT NULL,
  received_at        timestamptz NOT NULL,
  canonical_payload  bytea,
  canonical_key_id   text,
  filtered           boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  conversation_id    text,
  source_id_payload  bytea,
  source_id_key_id   text,
  source_index       bytea,
  dedup_index        bytea,
  conversation_index bytea
) PARTITION BY RANGE (prune_after);

CREATE TABLE message_statuses (
  id                bigint NOT NULL DEFAULT nextval('message_statuses_id_seq'),
  prune_after       date NOT NULL,
  keep_until        date NOT NULL,
  channel_id        text NOT NULL,
  event_id          uuid NOT NULL,
  source_message_id text,
  status            text NOT NULL,
  status_rank       int NOT NULL,
  occurred_at       timestamptz NOT NULL,
  detail_payload    bytea,
  detail_key_id     text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  source_index      bytea
) PARTITION BY RANGE (prune_after);

CREATE TABLE deliveries (
  id                 uuid NOT NULL,
  prune_after        date NOT NULL,
  keep_until         date NOT NULL,
  message_id         uuid NOT NULL,
  channel_id         text NOT NULL,
  destination        text NOT NULL,
  state              text NOT NULL CHECK (state IN ('pending', 'delivered', 'dropped', 'dead_lettered', 'discarded')),
  generation         int NOT NULL DEFAULT 0,
  attempts           int NOT NULL DEFAULT 0,
  last_error_code    text,
  dead_lettered_at   timestamptz,
  delivered_at       timestamptz,
  mapping_version    text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  last_error_payload bytea,
  last_error_key_id  text,
  outcome_payload    bytea,
  outcome_key_id     text
) PARTITION BY RANGE (prune_after);

CREATE TABLE delivery_attempts (
  id               bigint NOT NULL DEFAULT nextval('delivery_attempts_id_seq'),
  prune_after      date NOT NULL,
  keep_until       date NOT NULL,
  delivery_id      uuid NOT NULL,
  generation       int NOT NULL,
  attempt          int NOT NULL,
  started_at       timestamptz NOT NULL,
  finished_at      timestamptz NOT NULL DEFAULT now(),
  result           text NOT NULL CHECK (result IN ('delivered', 'dropped', 'retry', 'dead_lettered')),
  error_code       text,
  retry_after_ms   int,
  mapping_version  text,
  response_payload bytea,
  response_key_id  text,
  error_payload    bytea,
  error_key_id     text,
  detail_payload   bytea,
  detail_key_id    text,
  rejected_payload bytea,
  rejected_key_id  text
) PARTITION BY RANGE (prune_after);

-- The operator's reason is typed freely (it can name a patient): encrypted like the payloads.
CREATE TABLE delivery_actions (
  id             bigint NOT NULL DEFAULT nextval('delivery_actions_id_seq'),
  prune_after    date NOT NULL,
  keep_until     date NOT NULL,
  delivery_id    uuid NOT NULL,
  action         text NOT NULL CHECK (action IN ('replay', 'discard')),
  actor          text NOT NULL,
  at             timestamptz NOT NULL DEFAULT now(),
  reason_payload bytea,
  reason_key_id  text
) PARTITION BY RANGE (prune_after);

-- Which stored media file (content address: SHA-256 of the bytes) a message refers to. A payload:
-- it goes with the message's payloads, and a file no row refers to any more is deleted.
CREATE TABLE message_media (
  message_id  uuid NOT NULL,
  prune_after date NOT NULL,
  keep_until  date NOT NULL,
  media_key   bytea NOT NULL
) PARTITION BY RANGE (prune_after);

-- Files whose last reference went with a dropped partition: deleted after the drop commits (a
-- crash in between leaves them here for the next run).
CREATE TABLE media_deletions (
  media_key   bytea PRIMARY KEY,
  recorded_at timestamptz NOT NULL DEFAULT now()
);

ALTER SEQUENCE message_statuses_id_seq OWNED BY message_statuses.id;
ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id;
ALTER SEQUENCE delivery_actions_id_seq OWNED BY delivery_actions.id;

CREATE TEMP TABLE retention_legacy ON COMMIT DROP AS
  SELECT id,
         greatest((received_at AT TIME ZONE 'UTC')::date + 31, (now() AT TIME ZONE 'UTC')::date + 31) AS p,
         greatest((received_at AT TIME ZONE 'UTC')::date + 366, (now() AT TIME ZONE 'UTC')::date + 31) AS k
    FROM inbound_events_v64;
SELECT switchboard_ensure_retention_week(d) FROM (SELECT p AS d FROM retention_legacy UNION SELECT k FROM retention_legacy) w;
SELECT switchboard_ensure_retention_week((now() AT TIME ZONE 'UTC')::date + 31);

INSERT INTO inbound_events (id, prune_after, keep_until, channel_id, received_at, content_type, raw_payload, raw_key_id, state, ingested_at, error_code, error_payload, error_key_id)
  SELECT e.id, l.p, l.k, e.channel_id, e.received_at, e.content_type, e.raw_payload, e.raw_key_id, e.state, e.ingested_at, e.error_code, e.error_payload, e.error_key_id
    FROM inbound_events_v64 e JOIN retention_legacy l ON l.id = e.id;
INSERT INTO messages (id, prune_after, keep_until, channel_id, event_id, source_kind, source_message_id, dedup_key, kind, sent_at, received_at, canonical_payload, canonical_key_id,
    filtered, created_at, conversation_id, source_id_payload, source_id_key_id, source_index, dedup_index, conversation_index)
  SELECT m.id, l.p, l.k, m.channel_id, m.event_id, m.source_kind, m.source_message_id, m.dedup_key, m.kind, m.sent_at, m.received_at, m.canonical_payload, m.canonical_key_id,
         m.filtered, m.created_at, m.conversation_id, m.source_id_payload, m.source_id_key_id, m.source_index, m.dedup_index, m.conversation_index
    FROM messages_v64 m JOIN retention_legacy l ON l.id = m.event_id;
INSERT INTO message_statuses (id, prune_after, keep_until, channel_id, event_id, source_message_id, status, status_rank, occurred_at, detail_payload, detail_key_id, created_at, source_index)
  SELECT s.id, l.p, l.k, s.channel_id, s.event_id, s.source_message_id, s.status, s.status_rank, s.occurred_at, s.detail_payload, s.detail_key_id, s.created_at, s.source_index
    FROM message_statuses_v64 s JOIN retention_legacy l ON l.id = s.event_id;
INSERT INTO deliveries (id, prune_after, keep_until, message_id, channel_id, destination, state, generation, attempts, last_error_code, dead_lettered_at, delivered_at,
    mapping_version, created_at, updated_at, last_error_payload, last_error_key_id, outcome_payload, outcome_key_id)
  SELECT d.id, m.prune_after, m.keep_until, d.message_id, d.channel_id, d.destination, d.state, d.generation, d.attempts, d.last_error_code, d.dead_lettered_at, d.delivered_at,
         d.mapping_version, d.created_at, d.updated_at, d.last_error_payload, d.last_error_key_id, d.outcome_payload, d.outcome_key_id
    FROM deliveries_v64 d JOIN messages m ON m.id = d.message_id;
INSERT INTO delivery_attempts (id, prune_after, keep_until, delivery_id, generation, attempt, started_at, finished_at, result, error_code, retry_after_ms, mapping_version,
    response_payload, response_key_id, error_payload, error_key_id, detail_payload, detail_key_id, rejected_payload, rejected_key_id)
  SELECT a.id, d.prune_after, d.keep_until, a.delivery_id, a.generation, a.attempt, a.started_at, a.finished_at, a.result, a.error_code, a.retry_after_ms, a.mapping_version,
         a.response_payload, a.response_key_id, a.error_payload, a.error_key_id, a.detail_payload, a.detail_key_id, a.rejected_payload, a.rejected_key_id
    FROM delivery_attempts_v64 a JOIN deliveries d ON d.id = a.delivery_id;
INSERT INTO delivery_actions (id, prune_after, keep_until, delivery_id, action, actor, at, reason_payload, reason_key_id)
  SELECT x.id, d.prune_after, d.keep_until, x.delivery_id, x.action, x.actor, x.at, convert_to(x.reason, 'UTF8'), NULL
    FROM delivery_actions_v64 x JOIN deliveries d ON d.id = x.delivery_id;

-- The outbound ledger's link to its delivery becomes the application's to keep (a partitioned
-- table's ids are not declared unique).
ALTER TABLE outbound_sends DROP CONSTRAINT IF EXISTS outbound_sends_delivery_id_fkey;
DROP TABLE delivery_actions_v64, delivery_attempts_v64, deliveries_v64, message_statuses_v64, messages_v64, inbound_events_v64;

CREATE INDEX inbound_events_id ON inbound_events (id);
CREATE INDEX inbound_events_outbox ON inbound_events (received_at) WHERE state = 'received';
CREATE INDEX messages_id ON messages (id);
CREATE INDEX messages_dedup_index ON messages (channel_id, dedup_index);
CREATE INDEX messages_source_index ON messages (channel_id, source_index);
CREATE INDEX messages_thread ON messages (conversation_index, sent_at);
CREATE INDEX messages_legacy_identifiers ON messages (id) WHERE source_message_id IS NOT NULL;
CREATE INDEX message_statuses_id ON message_statuses (id);
CREATE INDEX message_statuses_source_index ON message_statuses (channel_id, source_index, status);
CREATE INDEX message_statuses_legacy_identifiers ON message_statuses (id) WHERE source_message_id IS NOT NULL;
CREATE INDEX deliveries_id ON deliveries (id);
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_dead_letters ON deliveries (channel_id, destination, dead_lettered_at) WHERE state = 'dead_lettered';
CREATE INDEX deliveries_pending ON deliveries (created_at) WHERE state = 'pending';
CREATE INDEX delivery_attempts_id ON delivery_attempts (id);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
CREATE INDEX delivery_actions_id ON delivery_actions (id);
CREATE INDEX delivery_actions_delivery ON delivery_actions (delivery_id, id);
CREATE INDEX message_media_key ON message_media (media_key);
CREATE INDEX message_media_message ON message_media (message_id);
`,
  },
  {
    version: 66,
    name: 'polling cursors encrypted',
    // A polling source's cursor holds timestamps and the source's message ids (a Rocket.Chat
    // message id, a FHIR resource id): encrypted like the payloads, bound to its channel and key.
    // Existing cursors stay readable as plaintext (NULL key id) until `keys reencrypt`.
    sql: `
ALTER TABLE source_cursors ADD COLUMN value_payload bytea, ADD COLUMN value_key_id text;
UPDATE source_cursors SET value_payload = convert_to(value, 'UTF8');
ALTER TABLE source_cursors ALTER COLUMN value_payload SET NOT NULL;
ALTER TABLE source_cursors DROP COLUMN value;
`,
  },
  {
    version: 67,
    name: 'retention partitions split into live and carried rows',
    // Lookups of the delivery path (a delivery, its message, the outbox) do not know a row's week,
    // so they probe every partition; with a year of metadata that is some 55 partitions a table.
    // Rows carried past their payload retention (metadata only, every delivery final) now live in
    // partitions of their own: the key becomes (carried, prune_after), `<table>_wYYYYMMDD` for live
    // rows and `<table>_mYYYYMMDD` for carried ones, and the delivery path asks for carried = false,
    // so it probes only the weeks of live payloads. Existing partitions are re-attached as live
    // ones (no row is copied).
    sql: `
DO $$
DECLARE
  t text;
  part record;
  seq text;
BEGIN
  FOREACH t IN ARRAY switchboard_retention_tables() LOOP
    CREATE TEMP TABLE IF NOT EXISTS retention_parts (tbl text, name text, lo date, hi date) ON COMMIT DROP;
    FOR part IN
      SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = t
    LOOP
      EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', t, part.name);
      INSERT INTO retention_parts VALUES (t, part.name, to_date(right(part.name, 8), 'YYYYMMDD'), to_date(right(part.name, 8), 'YYYYMMDD') + 7);
    END LOOP;
    seq := NULL;
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = t AND column_name = 'id') THEN
      seq := pg_get_serial_sequence(t, 'id');
    END IF;
    IF seq IS NOT NULL THEN
      EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', seq);
    END IF;
    EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_v66');
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS, carried boolean NOT NULL DEFAULT false) PARTITION BY RANGE (carried, prune_after)', t, t || '_v66');
    EXECUTE format('DROP TABLE %I', t || '_v66');
    IF seq IS NOT NULL THEN
      EXECUTE format('ALTER SEQUENCE %s OWNED BY %I.id', seq, t);
    END IF;
    FOR part IN SELECT name, lo, hi FROM retention_parts WHERE tbl = t LOOP
      EXECUTE format('ALTER TABLE %I ADD COLUMN carried boolean NOT NULL DEFAULT false', part.name);
      EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (false, %L) TO (false, %L)', t, part.name, part.lo, part.hi);
    END LOOP;
  END LOOP;
END;
$$;

-- The same indexes as before, on the new parents (the partitions' own are attached to them).
CREATE INDEX inbound_events_id ON inbound_events (id);
CREATE INDEX inbound_events_outbox ON inbound_events (received_at) WHERE state = 'received';
CREATE INDEX messages_id ON messages (id);
CREATE INDEX messages_dedup_index ON messages (channel_id, dedup_index);
CREATE INDEX messages_source_index ON messages (channel_id, source_index);
CREATE INDEX messages_thread ON messages (conversation_index, sent_at);
CREATE INDEX messages_legacy_identifiers ON messages (id) WHERE source_message_id IS NOT NULL;
CREATE INDEX message_statuses_id ON message_statuses (id);
CREATE INDEX message_statuses_source_index ON message_statuses (channel_id, source_index, status);
CREATE INDEX message_statuses_legacy_identifiers ON message_statuses (id) WHERE source_message_id IS NOT NULL;
CREATE INDEX deliveries_id ON deliveries (id);
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_dead_letters ON deliveries (channel_id, destination, dead_lettered_at) WHERE state = 'dead_lettered';
CREATE INDEX deliveries_pending ON deliveries (created_at) WHERE state = 'pending';
CREATE INDEX delivery_attempts_id ON delivery_attempts (id);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
CREATE INDEX delivery_actions_id ON delivery_actions (id);
CREATE INDEX delivery_actions_delivery ON delivery_actions (delivery_id, id);
CREATE INDEX message_media_key ON message_media (media_key);
CREATE INDEX message_media_message ON message_media (message_id);

-- The week's partitions of live rows, or of carried rows (idempotent; serialised).
DROP FUNCTION switchboard_ensure_retention_week(date);
CREATE FUNCTION switchboard_ensure_retention_week(d date, carried boolean DEFAULT false) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  lo date := switchboard_retention_week(d);
  t text;
  part text;
BEGIN
  PERFORM pg_advisory_xact_lock(1527393552);
  FOREACH t IN ARRAY switchboard_retention_tables() LOOP
    part := t || CASE WHEN carried THEN '_m' ELSE '_w' END || to_char(lo, 'YYYYMMDD');
    IF to_regclass(part) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L, %L) TO (%L, %L)', part, t, carried, lo, carried, lo + 7);
    END IF;
  END LOOP;
END;
$f$;
`,
  },
];

const LOCK_KEY = 0x5b_0a_2d_01; // arbitrary, stable: "switchboard migrations"

/** Applies pending migrations; safe to call from several processes at once. */
export async function runMigrations(pool: Pool, o: { through?: number } = {}): Promise<number[]> {
  return withClient(pool, (client) => migrate(client, o.through ?? Number.POSITIVE_INFINITY));
}

async function migrate(client: PoolClient, through: number): Promise<number[]> {
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    for (const m of migrations) {
      if (done.has(m.version) || m.version > through) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
        await client.query('COMMIT');
        applied.push(m.version);
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
  }
  return applied;
}
