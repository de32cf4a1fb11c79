/**
 * How payload bytes are written to and read from the store. The plaintext codec writes a NULL key
 * id; an encrypting codec (a later capability) writes ciphertext and its key id, and can still read
 * rows written before it was turned on.
 */
export interface EncodedPayload {
  bytes: Buffer;
  keyId: string | null;
}

export interface PayloadCodec {
  encode(plain: Buffer): EncodedPayload;
  decode(bytes: Buffer, keyId: string | null): Buffer;
}

export function createPlaintextCodec(): PayloadCodec {
  return {
    encode: (plain) => ({ bytes: plain, keyId: null }),
    decode(bytes, keyId) {
      if (keyId !== null) {
        throw new Error(`payload is encrypted under key "${keyId}" but no key provider is configured`);
      }
      return bytes;
    },
  };
}
