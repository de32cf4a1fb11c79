/**
 * Every encryptable column of the store, in one list: what `keys reencrypt` rewrites and what
 * `keys status` counts. `column` is the name bound into the ciphertext's associated data.
 */
export interface EncryptedColumn {
  table: string;
  column: string;
  payload: string;
  keyId: string;
  /** The row's id column (its value, as text, is bound into the associated data). */
  id: string;
}

const col = (table: string, column: string, id = 'id'): EncryptedColumn => ({ table, column, payload: `${column}_payload`, keyId: `${column}_key_id`, id });

export const encryptedColumns: readonly EncryptedColumn[] = [
  col('inbound_events', 'raw'),
  col('inbound_events', 'error'),
  col('messages', 'canonical'),
  col('messages', 'source_id'),
  col('message_statuses', 'detail'),
  col('deliveries', 'last_error'),
  col('deliveries', 'outcome'),
  col('delivery_attempts', 'response'),
  col('delivery_attempts', 'error'),
  col('delivery_attempts', 'detail'),
  col('delivery_attempts', 'rejected'),
  col('delivery_actions', 'reason'),
  // A cursor's row is its channel and key (cursorRowId in message-store.ts).
  col('source_cursors', 'value', "(channel_id || '/' || key)"),
  col('outbound_sends', 'provider_id', 'delivery_id'),
  col('outbound_sends', 'request', 'delivery_id'),
  col('outbound_sends', 'origin', 'delivery_id'),
  col('outbound_statuses', 'detail'),
  col('patient_conversations', 'detail'),
];
