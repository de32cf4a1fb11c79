/**
 * Key-encryption keys (KEKs): they wrap the data keys the store encrypts values with, and never
 * encrypt values themselves. A provider is the seam for a KMS or Vault: it wraps and unwraps data
 * keys under its key ids and never hands a KEK out. The local keyring (keyring.ts) is the one
 * built in.
 */
import { SwitchboardError } from '../core/errors.js';

export interface KeyProvider {
  /** For status output: where the keys come from (never the keys). */
  readonly description: string;
  /** Key ids, newest (the one new data keys are wrapped under) first. */
  keyIds(): readonly string[];
  /** Wraps a data key under the newest KEK. `context` is bound as associated data. */
  wrap(dataKey: Buffer, context: string): Promise<{ kekId: string; wrapped: Buffer }>;
  /** Unwraps; throws MissingKeyError when `kekId` is not available. */
  unwrap(kekId: string, wrapped: Buffer, context: string): Promise<Buffer>;
}

export class MissingKeyError extends SwitchboardError {
  constructor(
    readonly keyId: string,
    detail: string,
  ) {
    super('KEY_MISSING', `encryption key "${keyId}" is not available: ${detail}`);
    this.name = 'MissingKeyError';
  }
}
