/**
 * Authenticated encryption of one value: AES-256-GCM from node:crypto, a fresh random 12-byte
 * nonce per value, and associated data that says where the value belongs (so a ciphertext copied
 * to another row or column fails to open). Layout: version byte 0x01, nonce (12), tag (16),
 * ciphertext.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SwitchboardError } from '../core/errors.js';

const VERSION = 0x01;
const NONCE = 12;
const TAG = 16;
export const KEY_BYTES = 32;

export class DecryptError extends SwitchboardError {
  constructor(message: string) {
    super('DECRYPT_FAILED', message);
    this.name = 'DecryptError';
  }
}

export function seal(key: Buffer, plain: Buffer, aad: Buffer): Buffer {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  const nonce = randomBytes(NONCE);
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
  c.setAAD(aad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([Buffer.from([VERSION]), nonce, c.getAuthTag(), body]);
}

export function open(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  if (sealed.length < 1 + NONCE + TAG || sealed[0] !== VERSION) throw new DecryptError('not a Switchboard ciphertext (unknown format)');
  const nonce = sealed.subarray(1, 1 + NONCE);
  const tag = sealed.subarray(1 + NONCE, 1 + NONCE + TAG);
  const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
  d.setAAD(aad);
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(sealed.subarray(1 + NONCE + TAG)), d.final()]);
  } catch {
    throw new DecryptError('authentication failed: the value was altered, or belongs to another row or column');
  }
}
