/**
 * The outbound side of the store: the ledger of sends to patients (src/core/outbound-ledger.ts),
 * the statuses providers report about them, and the patients' conversations (where each patient
 * last wrote, for the reply's address and WhatsApp's 24-hour window).
 *
 * PHI: phone numbers, Patient references and provider message ids are stored only as keyed blind
 * indexes (lookups) and ciphertext (values); the request sent, the origin and each status detail
 * are encrypted like every other payload.
 */
import { randomBytes } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { CanonicalMessage, CanonicalStatus } from '../core/canonical-message.js';
import { classifyTwilioSendError, classifyWhatsAppSendError } from '../core/errors.js';
import {
  movesForward,
  outboundAddressSchema,
  outboundOriginSchema,
  outboundStatusSchema,
  type LastConversation,
  type OutboundOrigin,
  type OutboundStatus,
  type OutboundStatusEvent,
  type OutboundStatusValue,
} from '../core/outbound.js';
import type {
  OutboundConversationQuery,
  OutboundConversations,
  OutboundLedger,
  OutboundProvider,
  OutboundSendOpen,
  OutboundSendRecord,
  OutboundSendState,
} from '../core/outbound-ledger.js';
import { z } from 'zod';
import { withTransaction } from './checked-out-client.js';
import type { PayloadCodec, PayloadRef } from './payload-codec.js';

/** Blind-index kinds of the outbound side (one HMAC domain each; provider ids share the source id's). */
export const outboundIndexKinds = { providerId: 'source_id', phone: 'phone', patient: 'patient_ref', conversation: 'conversation_id' } as const;

const r = (table: string, column: string, rowId: string | number): PayloadRef => ({ table, column, rowId: String(rowId) });

/** The inbound source kinds whose statuses concern sends of each provider. */
const statusProvider: Readonly<Record<string, OutboundProvider>> = {
  whatsapp_cloud: 'whatsapp_cloud_send',
  twilio_whatsapp: 'twilio_send',
};

const conversationDetailSchema = z.object({
  address: outboundAddressSchema,
  business_endpoint: z.string().optional(),
  last_message_id: z.string().optional(),
});

const originDetailSchema = z.object({ origin: outboundOriginSchema, correlation_id: z.string() });

interface SendRow {
  delivery_id: string;
  provider: OutboundProvider;
  state: OutboundSendState;
  callback_ref: string;
  requests: number;
  intent_at: Date | null;
  provider_id_payload: Buffer | null;
  provider_id_key_id: string | null;
  resend_generation: number | null;
  last_status: OutboundStatusValue | null;
  status_seq: number;
}

/** Where a reply to this inbound message would go, when it can be answered at all. */
export function conversationOf(message: CanonicalMessage): z.infer<typeof conversationDetailSchema> | null {
  if (message.author_role === 'staff' || message.author_role === 'system' || message.kind === 'system') return null;
  if (message.group_id !== undefined) return null;
  const kind = message.source.kind;
  if (kind.startsWith('rocketchat')) {
    const room = message.source.endpoint_id;
    if (room === undefined) return null;
    return { address: { kind: 'room', room_id: room }, ...(message.source.account_id !== undefined && { business_endpoint: message.source.account_id }), last_message_id: message.id };
  }
  const phone = message.sender.phone;
  if (phone === undefined) return null;
  const endpoint = kind === 'twilio_whatsapp' ? (message.source.endpoint_display ?? message.source.endpoint_id) : message.source.endpoint_id;
  return { address: { kind: 'phone', phone }, ...(endpoint !== undefined && { business_endpoint: endpoint }), last_message_id: message.id };
}

/**
 * Records the conversation of each inbound message (inside the ingest transaction): the latest
 * message per thread wins; a Patient linked earlier stays linked.
 */
export async function recordConversations(c: PoolClient, codec: PayloadCodec, channelId: string, messages: readonly CanonicalMessage[]): Promise<void> {
  for (const message of messages) {
    const detail = conversationOf(message);
    if (detail === null) continue;
    const conversationIndex = codec.index(outboundIndexKinds.conversation, message.conversation_id);
    const phoneIndex = message.sender.phone === undefined ? null : codec.index(outboundIndexKinds.phone, message.sender.phone);
    let existing = await c.query<{ id: string; last_inbound_at: Date }>(
      'SELECT id, last_inbound_at FROM patient_conversations WHERE channel_id = $1 AND conversation_index = $2 FOR UPDATE',
      [channelId, conversationIndex],
    );
    if (existing.rows.length === 0) {
      const id = (await c.query<{ id: string }>(`SELECT nextval(pg_get_serial_sequence('patient_conversations', 'id'))::text AS id`)).rows[0]!.id;
      const enc = await codec.encode(Buffer.from(JSON.stringify(detail)), r('patient_conversations', 'detail', id));
      const inserted = await c.query(
        `INSERT INTO patient_conversations (id, channel_id, conversation_index, source_kind, phone_index, last_inbound_at, detail_payload, detail_key_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (channel_id, conversation_index) DO NOTHING`,
        [id, channelId, conversationIndex, message.source.kind, phoneIndex, message.sent_at, enc.bytes, enc.keyId],
      );
      if ((inserted.rowCount ?? 0) === 1) continue;
      existing = await c.query('SELECT id, last_inbound_at FROM patient_conversations WHERE channel_id = $1 AND conversation_index = $2 FOR UPDATE', [channelId, conversationIndex]);
    }
    const row = existing.rows[0];
    if (!row || row.last_inbound_at.getTime() > Date.parse(message.sent_at)) continue;
    const enc = await codec.encode(Buffer.from(JSON.stringify(detail)), r('patient_conversations', 'detail', row.id));
    await c.query(
      `UPDATE patient_conversations SET last_inbound_at = $2, detail_payload = $3, detail_key_id = $4, phone_index = COALESCE($5, phone_index), source_kind = $6, updated_at = now() WHERE id = $1`,
      [row.id, message.sent_at, enc.bytes, enc.keyId, phoneIndex, message.source.kind],
    );
  }
}

/** A provider's status as the outbound contract says it, or null when it is not one we pass on. */
export function outboundStatusFrom(s: CanonicalStatus, provider: OutboundProvider): OutboundStatus | null {
  const word = s.status === 'played' ? 'read' : s.status;
  if (word !== 'sent' && word !== 'delivered' && word !== 'read' && word !== 'failed') return null;
  if (word !== 'failed') return { status: word, provider_message_id: s.message_id, at: s.occurred_at };
  const first = s.errors[0];
  const numeric = first === undefined ? undefined : Number(first.code);
  const providerCode = Number.isInteger(numeric) ? numeric : undefined;
  const verdict = provider === 'twilio_send' ? classifyTwilioSendError(400, providerCode) : classifyWhatsAppSendError(400, providerCode);
  return {
    status: 'failed',
    provider_message_id: s.message_id,
    at: s.occurred_at,
    error: {
      code: verdict.code,
      ...(first !== undefined && { provider_code: String(first.code) }),
      reason: first?.title ?? `the provider reported the message as ${s.source_status}`,
    },
  };
}

/**
 * Serialises the status intake and the recording of a provider id for the same id (transaction
 * advisory lock on the id's blind index): whichever commits second sees the other, so a status
 * that overtakes the answer to its send is never left unmatched.
 */
async function lockProviderId(c: PoolClient, providerIndex: Buffer): Promise<void> {
  await c.query(`SELECT pg_advisory_xact_lock(('x' || encode(substring($1::bytea from 1 for 8), 'hex'))::bit(64)::bigint)`, [providerIndex]);
}

/** Appends one status to a send (the row must be locked by the caller); false when already known. */
async function appendStatus(c: PoolClient, codec: PayloadCodec, row: Pick<SendRow, 'delivery_id' | 'last_status' | 'status_seq'>, status: OutboundStatus): Promise<boolean> {
  const forward = movesForward(row.last_status ?? undefined, status.status);
  const seq = row.status_seq + 1;
  const id = (await c.query<{ id: string }>(`SELECT nextval(pg_get_serial_sequence('outbound_statuses', 'id'))::text AS id`)).rows[0]!.id;
  const enc = await codec.encode(Buffer.from(JSON.stringify(status)), r('outbound_statuses', 'detail', id));
  const inserted = await c.query(
    `INSERT INTO outbound_statuses (id, delivery_id, seq, status, forward, occurred_at, detail_payload, detail_key_id, notified_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5 THEN NULL ELSE now() END) ON CONFLICT (delivery_id, status) DO NOTHING`,
    [id, row.delivery_id, seq, status.status, forward, status.at, enc.bytes, enc.keyId],
  );
  if ((inserted.rowCount ?? 0) === 0) return false;
  await c.query(
    `UPDATE outbound_sends SET status_seq = $2, last_status = CASE WHEN $3 THEN $4 ELSE last_status END, updated_at = now() WHERE delivery_id = $1`,
    [row.delivery_id, seq, forward, status.status],
  );
  return true;
}

/**
 * Status intake (inside the ingest transaction): a provider status about a message we sent is
 * matched to its send by the provider's id (blind index) or by our callback reference (WhatsApp
 * biz_opaque_callback_data), and recorded in order. A status that names our reference for a send
 * whose answer never came (an interrupted request) reconciles it: the send is recorded accepted.
 * Returns how many statuses were recorded against sends.
 */
export async function recordProviderStatuses(c: PoolClient, codec: PayloadCodec, statuses: readonly CanonicalStatus[]): Promise<number> {
  let recorded = 0;
  const ours = statuses.filter((s) => statusProvider[s.source_kind] !== undefined);
  // Locks in one order (by index), so two events naming the same ids cannot deadlock.
  const indexes = [...new Map(ours.map((s) => { const i = codec.index(outboundIndexKinds.providerId, s.message_id); return [i.toString('hex'), i] as const; })).entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [, index] of indexes) await lockProviderId(c, index);
  for (const s of ours) {
    const provider = statusProvider[s.source_kind]!;
    const providerIndex = codec.index(outboundIndexKinds.providerId, s.message_id);
    const res = await c.query<SendRow>(
      `SELECT delivery_id, provider, state, callback_ref, requests, intent_at, provider_id_payload, provider_id_key_id, resend_generation, last_status, status_seq
         FROM outbound_sends WHERE provider = $1 AND (provider_index = $2 OR ($3::text IS NOT NULL AND callback_ref = $3)) LIMIT 1 FOR UPDATE`,
      [provider, providerIndex, s.callback_data ?? null],
    );
    const row = res.rows[0];
    if (!row) continue;
    if (row.state !== 'accepted') {
      const enc = await codec.encode(Buffer.from(s.message_id), r('outbound_sends', 'provider_id', row.delivery_id));
      await c.query(
        `UPDATE outbound_sends SET state = 'accepted', accepted_at = now(), provider_index = $2, provider_id_payload = $3, provider_id_key_id = $4, updated_at = now() WHERE delivery_id = $1`,
        [row.delivery_id, providerIndex, enc.bytes, enc.keyId],
      );
    }
    const status = outboundStatusFrom(s, provider);
    if (status !== null && (await appendStatus(c, codec, row, status))) recorded++;
  }
  return recorded;
}

export interface StatusToNotify {
  id: string;
  event: OutboundStatusEvent;
}

export class OutboundStore implements OutboundLedger, OutboundConversations {
  constructor(
    private readonly pool: Pool,
    private readonly codec: PayloadCodec,
  ) {}

  private async tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.pool, fn);
  }

  private async toRecord(row: SendRow): Promise<OutboundSendRecord> {
    const providerId =
      row.provider_id_payload === null ? null : (await this.codec.decode(row.provider_id_payload, row.provider_id_key_id, r('outbound_sends', 'provider_id', row.delivery_id))).toString('utf8');
    return {
      deliveryId: row.delivery_id,
      provider: row.provider,
      state: row.state,
      callbackRef: row.callback_ref,
      requests: row.requests,
      intentAt: row.intent_at,
      providerMessageId: providerId,
      resendGeneration: row.resend_generation,
      lastStatus: row.last_status,
    };
  }

  async get(deliveryId: string): Promise<OutboundSendRecord | null> {
    const res = await this.pool.query<SendRow>('SELECT * FROM outbound_sends WHERE delivery_id = $1', [deliveryId]);
    return res.rows[0] ? this.toRecord(res.rows[0]) : null;
  }

  async open(input: OutboundSendOpen): Promise<OutboundSendRecord> {
    const enc = await this.codec.encode(Buffer.from(JSON.stringify({ origin: input.origin, correlation_id: input.correlationId })), r('outbound_sends', 'origin', input.deliveryId));
    // Random, not PHI; Rocket.Chat takes it as the message _id, WhatsApp echoes it in statuses.
    const ref = randomBytes(18).toString('base64url');
    await this.pool.query(
      `INSERT INTO outbound_sends (delivery_id, channel_id, destination, provider, callback_ref, state, origin_payload, origin_key_id)
       VALUES ($1, $2, $3, $4, $5, 'not_sent', $6, $7) ON CONFLICT (delivery_id) DO NOTHING`,
      [input.deliveryId, input.channelId, input.destination, input.provider, ref, enc.bytes, enc.keyId],
    );
    const record = await this.get(input.deliveryId);
    if (!record) throw new Error('outbound send vanished after insert');
    return record;
  }

  async findByProviderId(provider: OutboundProvider, providerMessageId: string): Promise<string | null> {
    const res = await this.pool.query<{ delivery_id: string }>('SELECT delivery_id FROM outbound_sends WHERE provider = $1 AND provider_index = $2', [
      provider,
      this.codec.index(outboundIndexKinds.providerId, providerMessageId),
    ]);
    return res.rows[0]?.delivery_id ?? null;
  }

  async recordIntent(deliveryId: string, request: unknown): Promise<void> {
    const enc = await this.codec.encode(Buffer.from(JSON.stringify(request)), r('outbound_sends', 'request', deliveryId));
    const res = await this.pool.query(
      // A new intent uses up an operator's resend permission: should this request be interrupted
      // too, the next attempt reconciles again instead of sending a third time.
      `UPDATE outbound_sends SET state = 'intent', requests = requests + 1, intent_at = now(), request_payload = $2, request_key_id = $3, resend_generation = NULL, updated_at = now()
        WHERE delivery_id = $1 AND state <> 'accepted'`,
      [deliveryId, enc.bytes, enc.keyId],
    );
    if (res.rowCount !== 1) throw new Error('outbound send is already accepted or unknown; refusing to record a new intent');
  }

  /**
   * Records the provider's id. Statuses that named it before it was known (a status callback can
   * overtake the answer to the send) were kept with the inbound event (message_statuses): they
   * are recorded against the send now, in the same transaction.
   */
  async recordAccepted(deliveryId: string, providerMessageId: string): Promise<void> {
    const providerIndex = this.codec.index(outboundIndexKinds.providerId, providerMessageId);
    const enc = await this.codec.encode(Buffer.from(providerMessageId), r('outbound_sends', 'provider_id', deliveryId));
    await this.tx(async (c) => {
      await lockProviderId(c, providerIndex);
      const res = await c.query<SendRow>(
        `UPDATE outbound_sends SET state = 'accepted', accepted_at = COALESCE(accepted_at, now()), provider_index = $2, provider_id_payload = $3, provider_id_key_id = $4, updated_at = now()
          WHERE delivery_id = $1 RETURNING delivery_id, provider, last_status, status_seq`,
        [deliveryId, providerIndex, enc.bytes, enc.keyId],
      );
      let row = res.rows[0];
      if (!row) return;
      const earlier = await c.query<{ id: string; status: CanonicalStatus['status']; occurred_at: Date; detail_payload: Buffer | null; detail_key_id: string | null }>(
        'SELECT id, status, occurred_at, detail_payload, detail_key_id FROM message_statuses WHERE source_index = $1 ORDER BY status_rank, id',
        [providerIndex],
      );
      for (const e of earlier.rows) {
        const detail = e.detail_payload === null ? {} : (JSON.parse((await this.codec.decode(e.detail_payload, e.detail_key_id, r('message_statuses', 'detail', e.id))).toString('utf8')) as Record<string, unknown>);
        const status = outboundStatusFrom(
          {
            source_kind: row.provider,
            message_id: providerMessageId,
            status: e.status,
            source_status: typeof detail['source_status'] === 'string' ? detail['source_status'] : e.status,
            occurred_at: e.occurred_at.toISOString().replace(/\.\d{3}Z$/, 'Z'),
            errors: Array.isArray(detail['errors']) ? (detail['errors'] as CanonicalStatus['errors']) : [],
            dedup_key: `${providerMessageId}:${e.status}`,
          },
          row.provider,
        );
        if (status !== null && (await appendStatus(c, this.codec, row, status))) {
          const next = await c.query<SendRow>('SELECT delivery_id, provider, last_status, status_seq FROM outbound_sends WHERE delivery_id = $1', [deliveryId]);
          row = next.rows[0] ?? row;
        }
      }
    });
  }

  async recordNotSent(deliveryId: string): Promise<void> {
    await this.pool.query(`UPDATE outbound_sends SET state = 'not_sent', updated_at = now() WHERE delivery_id = $1 AND state = 'intent'`, [deliveryId]);
  }

  async recordStatus(deliveryId: string, status: OutboundStatus): Promise<void> {
    const checked = outboundStatusSchema.parse(status);
    await this.tx(async (c) => {
      const res = await c.query<SendRow>('SELECT delivery_id, last_status, status_seq FROM outbound_sends WHERE delivery_id = $1 FOR UPDATE', [deliveryId]);
      const row = res.rows[0];
      if (row) await appendStatus(c, this.codec, row, checked);
    });
  }

  /** The operator's explicit choice (audited by the caller): the next attempt of `generation` may resend an uncertain send. */
  async allowResend(deliveryId: string, generation: number): Promise<boolean> {
    const res = await this.pool.query(`UPDATE outbound_sends SET resend_generation = $2, updated_at = now() WHERE delivery_id = $1 AND state = 'intent'`, [deliveryId, generation]);
    return res.rowCount === 1;
  }

  /** Every recorded status of a send, in order. */
  async statuses(deliveryId: string): Promise<{ seq: number; forward: boolean; notified: boolean; status: OutboundStatus }[]> {
    const res = await this.pool.query<{ id: string; seq: number; forward: boolean; notified_at: Date | null; detail_payload: Buffer; detail_key_id: string | null }>(
      'SELECT id, seq, forward, notified_at, detail_payload, detail_key_id FROM outbound_statuses WHERE delivery_id = $1 ORDER BY seq',
      [deliveryId],
    );
    return Promise.all(
      res.rows.map(async (s) => ({
        seq: s.seq,
        forward: s.forward,
        notified: s.notified_at !== null,
        status: outboundStatusSchema.parse(JSON.parse((await this.codec.decode(s.detail_payload, s.detail_key_id, r('outbound_statuses', 'detail', s.id))).toString('utf8'))),
      })),
    );
  }

  /** Statuses to pass on to the listener, oldest first per send (those not moving forward never are). */
  async statusesToNotify(limit = 200): Promise<StatusToNotify[]> {
    const res = await this.pool.query<{
      id: string; delivery_id: string; seq: number; detail_payload: Buffer; detail_key_id: string | null;
      channel_id: string; destination: string; origin_payload: Buffer; origin_key_id: string | null;
    }>(
      `SELECT s.id, s.delivery_id, s.seq, s.detail_payload, s.detail_key_id, o.channel_id, o.destination, o.origin_payload, o.origin_key_id
         FROM outbound_statuses s JOIN outbound_sends o ON o.delivery_id = s.delivery_id
        WHERE s.notified_at IS NULL ORDER BY s.delivery_id, s.seq LIMIT $1`,
      [limit],
    );
    const out: StatusToNotify[] = [];
    for (const row of res.rows) {
      const origin = originDetailSchema.parse(JSON.parse((await this.codec.decode(row.origin_payload, row.origin_key_id, r('outbound_sends', 'origin', row.delivery_id))).toString('utf8')));
      const status = outboundStatusSchema.parse(JSON.parse((await this.codec.decode(row.detail_payload, row.detail_key_id, r('outbound_statuses', 'detail', row.id))).toString('utf8')));
      out.push({
        id: row.id,
        event: { deliveryId: row.delivery_id, channelId: row.channel_id, destination: row.destination, origin: origin.origin as OutboundOrigin, correlationId: origin.correlation_id, status, seq: row.seq },
      });
    }
    return out;
  }

  async markNotified(statusId: string): Promise<void> {
    await this.pool.query('UPDATE outbound_statuses SET notified_at = now() WHERE id = $1', [statusId]);
  }

  /** Links the conversation of an inbound message to the Patient it was delivered for (FHIR delivery). */
  async linkPatient(messageId: string, patientReference: string): Promise<void> {
    await this.pool.query(
      `UPDATE patient_conversations pc SET patient_index = $2, updated_at = now()
         FROM messages m WHERE m.id = $1 AND pc.channel_id = m.channel_id AND pc.conversation_index = m.conversation_index`,
      [messageId, this.codec.index(outboundIndexKinds.patient, patientReference)],
    );
  }

  async lastConversation(query: OutboundConversationQuery): Promise<LastConversation | null> {
    const args: unknown[] = [];
    const where: string[] = [];
    if ('patient' in query) {
      args.push(this.codec.index(outboundIndexKinds.patient, query.patient));
      where.push(`patient_index = $${args.length}`);
    } else {
      args.push(this.codec.index(outboundIndexKinds.phone, query.phone));
      where.push(`phone_index = $${args.length}`);
    }
    if (query.channelId !== undefined) {
      args.push(query.channelId);
      where.push(`channel_id = $${args.length}`);
    }
    if (query.sourceKinds !== undefined) {
      args.push([...query.sourceKinds]);
      where.push(`source_kind = ANY($${args.length}::text[])`);
    }
    const res = await this.pool.query<{ id: string; channel_id: string; source_kind: string; last_inbound_at: Date; detail_payload: Buffer; detail_key_id: string | null }>(
      `SELECT id, channel_id, source_kind, last_inbound_at, detail_payload, detail_key_id FROM patient_conversations WHERE ${where.join(' AND ')} ORDER BY last_inbound_at DESC LIMIT 1`,
      args,
    );
    const row = res.rows[0];
    if (!row) return null;
    const detail = conversationDetailSchema.parse(JSON.parse((await this.codec.decode(row.detail_payload, row.detail_key_id, r('patient_conversations', 'detail', row.id))).toString('utf8')));
    return {
      channelId: row.channel_id,
      sourceKind: row.source_kind,
      address: detail.address,
      ...(detail.business_endpoint !== undefined && { businessEndpoint: detail.business_endpoint }),
      lastInboundAt: row.last_inbound_at,
      ...(detail.last_message_id !== undefined && { lastMessageId: detail.last_message_id }),
    };
  }
}
