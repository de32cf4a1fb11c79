/**
 * How payload bytes are written to and read from the store, and how identifiers become blind
 * indexes. Payload columns (`*_payload` bytea) have a sibling `*_key_id`: NULL means plaintext
 * (rows written before encryption existed), a key id means AES-256-GCM ciphertext under that data
 * key, bound to its table, column and row (`PayloadRef`) as associated data.
 */
import { createHmac } from 'node:crypto';

export interface EncodedPayload {
  bytes: Buffer;
  keyId: string | null;
}

/** Where a value lives: bound into its ciphertext, so it cannot be moved to another row or column. */
export interface PayloadRef {
  table: string;
  column: string;
  rowId: string;
}

export interface PayloadCodec {
  encode(plain: Buffer, ref: PayloadRef): Promise<EncodedPayload>;
  decode(bytes: Buffer, keyId: string | null, ref: PayloadRef): Promise<Buffer>;
  /** Keyed blind index (HMAC-SHA256) of an identifier, for equality lookups without storing it. */
  index(kind: string, value: string): Buffer;
  /** The data key new values are written under; null for the plaintext codec. */
  activeKeyId(): string | null;
}

export function blindIndex(key: Buffer, kind: string, value: string): Buffer {
  return createHmac('sha256', key).update(kind).update('\u0000').update(value.normalize('NFC')).digest();
}

/**
 * No encryption: for measuring the cost of encryption in the bench and for tests of the store
 * alone. The gateway never uses it (src/app.ts wires the encrypting codec).
 */
export function createPlaintextCodec(): PayloadCodec {
  const indexKey = Buffer.from('switchboard-plaintext-codec-index');
  return {
    encode: async (plain) => ({ bytes: plain, keyId: null }),
    async decode(bytes, keyId) {
      if (keyId !== null) {
        throw new Error(`payload is encrypted under key "${keyId}" but no key provider is configured`);
      }
      return bytes;
    },
    index: (kind, value) => blindIndex(indexKey, kind, value),
    activeKeyId: () => null,
  };
}
