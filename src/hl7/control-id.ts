/**
 * MSH-10 message control ids: at most 20 characters (ST, 20 in v2.5.1), unique per sender.
 *
 * Switchboard derives the id from the delivery id, so every retry, every reconnect and every
 * replay of one delivery carries the same MSH-10 and a receiver can discard duplicates:
 * `controlIdFor(deliveryId)` = the first 20 characters of the RFC 4648 base32 of
 * SHA-256(deliveryId) — 100 bits, upper-case letters and digits 2–7, no escaping ever needed.
 */
import { createHash, randomBytes } from 'node:crypto';

export const CONTROL_ID_LENGTH = 20;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** The stable MSH-10 of a delivery. */
export function controlIdFor(deliveryId: string): string {
  return base32(createHash('sha256').update(deliveryId, 'utf8').digest()).slice(0, CONTROL_ID_LENGTH);
}

/** A fresh random control id (for ACKs and replies a peer sends). */
export function randomControlId(prefix = ''): string {
  return (prefix + base32(randomBytes(13))).slice(0, CONTROL_ID_LENGTH);
}
