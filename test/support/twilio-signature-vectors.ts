/**
 * X-Twilio-Signature vector files (the project's own in test/fixtures/twilio, and the ones
 * published by others in the conformance corpus) and the checks each goes through: our signer
 * and validator against every vector, with twilio-node's own validator as an oracle.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import { z } from 'zod';
import {
  twilioSignature,
  twilioStringToSign,
  validateTwilioSignature,
  validateTwilioSignatureWithBody,
} from '../../src/connectors/sources/twilio-whatsapp-signature.js';

// Only the webhooks module of the `twilio` package (MIT): the oracle.
const require = createRequire(import.meta.url);
export const twilioOracle = require('twilio/lib/webhooks/webhooks.js') as {
  validateRequest(authToken: string, signature: string, url: string, params: Record<string, unknown>): boolean;
  validateRequestWithBody(authToken: string, signature: string, url: string, body: string): boolean;
  getExpectedTwilioSignature(authToken: string, url: string, params: Record<string, unknown>): string;
};

const paramsSchema = z.record(z.string(), z.union([z.string(), z.array(z.string())]));
const classicSchema = z.object({ authToken: z.string(), url: z.string(), params: paramsSchema, stringToSign: z.string(), signature: z.string() });
const vectorsSchema = z
  .object({
    authToken: z.string(),
    defaultParams: paramsSchema,
    vectors: z
      .array(
        z.object({
          name: z.string(),
          url: z.string(),
          params: z.union([z.literal('defaultParams'), paramsSchema]),
          body: z.string().optional(),
          bodySha256Hex: z.string().optional(),
          signature: z.string(),
        }),
      )
      .min(2),
    /** A vector with its string to sign (the corpus names it after Twilio's docs). */
    classicVector: classicSchema.optional(),
    twilioDocsClassicVector: classicSchema.optional(),
  })
  .transform(({ classicVector, twilioDocsClassicVector, ...rest }) => ({ ...rest, classic: classicVector ?? twilioDocsClassicVector }))
  .refine((v) => v.classic !== undefined, 'a vector with its string to sign is required');

/** Declares the tests for one vector file (its text). The first two vectors are one URL without and with its default port. */
export function checkTwilioVectors(json: string): void {
  const fixture = vectorsSchema.parse(JSON.parse(json));
  const { authToken } = fixture;

  for (const v of fixture.vectors) {
    const params = v.params === 'defaultParams' ? fixture.defaultParams : v.params;
    it(`${v.name}`, () => {
      if (v.body !== undefined) {
        const body = Buffer.from(v.body, 'utf8');
        expect(createHash('sha256').update(body).digest('hex')).toBe(v.bodySha256Hex);
        expect(twilioSignature(authToken, v.url, {})).toBe(v.signature);
        expect(validateTwilioSignatureWithBody(authToken, v.signature, v.url, body)).toBe(true);
        expect(validateTwilioSignatureWithBody(authToken, v.signature, v.url, Buffer.from(`${v.body} `))).toBe(false);
        expect(twilioOracle.validateRequestWithBody(authToken, v.signature, v.url, v.body)).toBe(true);
        return;
      }
      // The exact URL signs to the vector's signature...
      expect(twilioSignature(authToken, v.url, params)).toBe(v.signature);
      // ...and the validator accepts it, as twilio-node does.
      expect(validateTwilioSignature(authToken, v.signature, v.url, params)).toBe(true);
      expect(twilioOracle.validateRequest(authToken, v.signature, v.url, params)).toBe(true);
      expect(validateTwilioSignature(`${authToken}x`, v.signature, v.url, params)).toBe(false);
    });
  }

  it('the default-port variants: a signature over https://host/… validates a request to https://host:443/… and back', () => {
    const [plain, withPort] = fixture.vectors;
    expect(validateTwilioSignature(authToken, plain!.signature, withPort!.url, fixture.defaultParams)).toBe(true);
    expect(validateTwilioSignature(authToken, withPort!.signature, plain!.url, fixture.defaultParams)).toBe(true);
  });

  it('the apostrophe vector: the request URL has a raw apostrophe, the signature covers %27', () => {
    const v = fixture.vectors.find((x) => x.name.includes('apostrophe'))!;
    const asReceived = v.url.replace('%27', "'");
    expect(asReceived).not.toBe(v.url);
    expect(validateTwilioSignature(authToken, v.signature, asReceived, fixture.defaultParams)).toBe(true);
    expect(twilioOracle.validateRequest(authToken, v.signature, asReceived, fixture.defaultParams)).toBe(true);
  });

  it('the string to sign and its signature', () => {
    const c = fixture.classic!;
    expect(twilioStringToSign(c.url, c.params)).toBe(c.stringToSign);
    expect(twilioSignature(c.authToken, c.url, c.params)).toBe(c.signature);
    expect(validateTwilioSignature(c.authToken, c.signature, c.url, c.params)).toBe(true);
  });

  it('rejects a signature that differs by one character, is empty, or is for other parameters', () => {
    const v = fixture.vectors[0]!;
    const flipped = (v.signature[0] === 'A' ? 'B' : 'A') + v.signature.slice(1);
    const [firstKey] = Object.keys(fixture.defaultParams);
    expect(validateTwilioSignature(authToken, flipped, v.url, fixture.defaultParams)).toBe(false);
    expect(validateTwilioSignature(authToken, '', v.url, fixture.defaultParams)).toBe(false);
    expect(validateTwilioSignature(authToken, v.signature, v.url, { ...fixture.defaultParams, [firstKey!]: '9999' })).toBe(false);
  });
}
