/**
 * X-Hub-Signature-256 vector files (the project's own in test/fixtures/whatsapp, and the one
 * published by others in the conformance corpus) and the checks each goes through.
 */
import { expect, it } from 'vitest';
import { z } from 'zod';
import { whatsappSignature } from '../../src/connectors/sources/whatsapp-cloud.js';

const vectorSchema = z.object({
  header: z.string(),
  appSecret: z.string(),
  bodyAsDecodedString: z.string(),
  bodyAsSentByMeta_escapedUnicode: z.string(),
  expectedHeaderValue: z.string(),
  hmacOfDecodedUtf8Bytes_WRONG: z.string(),
});
export type SignatureVector = z.infer<typeof vectorSchema>;

export function readSignatureVector(json: string): SignatureVector {
  return vectorSchema.parse(JSON.parse(json));
}

/** Declares the tests of one vector; `refusal` is the HTTP status a source with the vector's secret answers to these bytes with that header (null: accepted). */
export function checkSignatureVector(vector: SignatureVector, refusal: (raw: Buffer, header: string) => number | null): void {
  const raw = Buffer.from(vector.bodyAsSentByMeta_escapedUnicode, 'utf8');

  it('the vector: HMAC over the exact raw bytes, with the \\uXXXX escapes', () => {
    expect(vector.header.toLowerCase()).toBe('x-hub-signature-256');
    expect(raw.every((byte) => byte < 0x80)).toBe(true);
    expect(whatsappSignature(vector.appSecret, raw)).toBe(vector.expectedHeaderValue);
    expect(refusal(raw, vector.expectedHeaderValue)).toBeNull();
  });

  it('hashing the decoded text instead gives the wrong value and is refused', () => {
    const decoded = Buffer.from(vector.bodyAsDecodedString, 'utf8');
    expect(decoded.equals(raw)).toBe(false);
    expect(whatsappSignature(vector.appSecret, decoded)).toBe(`sha256=${vector.hmacOfDecodedUtf8Bytes_WRONG}`);
    expect(refusal(decoded, vector.expectedHeaderValue)).toBe(403);
  });
}
