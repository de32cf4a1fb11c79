/**
 * `X-Twilio-Signature`, computed exactly as Twilio does (reference: chat-sources.md section 2.2;
 * behaviour mirrored from twilio-node `src/webhooks/webhooks.ts`, MIT, and checked against its
 * `validateRequest` as an oracle in test/unit/twilio-signature.test.ts):
 *
 *   base64(HMAC(authToken, url + concat(sortedKeys.map(k => k + value))))
 *
 * - `url` is the full URL Twilio called, query included. Twilio's own signing is inconsistent
 *   about default ports and query encoding, so the URL is tried in the same variants twilio-node
 *   tries: as received with and without the default port, then WHATWG-normalised with and without
 *   the port, and those two with the query re-encoded the legacy `querystring` way.
 * - POST form parameters are appended sorted by name (UTF-16 order, as `Array.prototype.sort`);
 *   a repeated parameter contributes its unique values, sorted, the name repeated for each.
 * - JSON-body webhooks carry `bodySHA256=<hex>` in the URL: the URL is signed with no
 *   parameters and the body's SHA-256 must equal that value.
 * - HMAC-SHA1 by default; HMAC-SHA256 when `X-Twilio-Webhooks-Signature-Settings` says
 *   `algorithm=HMAC_SHA256` ("Webhook Rules").
 *
 * Every comparison is constant-time (after a length check; lengths are not secret).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { parse as legacyParse, stringify as legacyStringify } from 'node:querystring';

export type TwilioSignatureAlgorithm = 'sha1' | 'sha256';

/** Form parameters as decoded: one value, or every value of a repeated name. */
export type TwilioParams = Readonly<Record<string, string | readonly string[]>>;

function paramString(name: string, value: string | readonly string[]): string {
  if (typeof value === 'string') return name + value;
  return [...new Set(value)].sort().map((v) => name + v).join('');
}

/** The string Twilio signs: the URL, then each parameter name and value, sorted by name. */
export function twilioStringToSign(url: string, params: TwilioParams): string {
  return Object.keys(params)
    .sort()
    .reduce((acc, key) => acc + paramString(key, params[key] ?? ''), url);
}

/** base64 HMAC of the string to sign, as Twilio sends it in X-Twilio-Signature. */
export function twilioSignature(authToken: string, url: string, params: TwilioParams, algorithm: TwilioSignatureAlgorithm = 'sha1'): string {
  return createHmac(algorithm, authToken).update(Buffer.from(twilioStringToSign(url, params), 'utf8')).digest('base64');
}

interface UrlParts {
  scheme: string;
  userInfo: string;
  host: string;
  port: string;
  rest: string;
}

/** Splits `scheme://authority/rest` without normalising anything (so signed characters survive). */
function splitUrl(url: string): UrlParts | null {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)/i.exec(url);
  if (!match) return null;
  const [prefix, scheme, authority] = match as unknown as [string, string, string];
  const userInfoEnd = authority.lastIndexOf('@');
  const hostAndPort = authority.slice(userInfoEnd + 1);
  const portStart = hostAndPort.indexOf(':', hostAndPort.lastIndexOf(']') + 1);
  return {
    scheme,
    userInfo: authority.slice(0, userInfoEnd + 1),
    host: portStart === -1 ? hostAndPort : hostAndPort.slice(0, portStart),
    port: portStart === -1 ? '' : hostAndPort.slice(portStart),
    rest: url.slice(prefix.length),
  };
}

function addPort(url: string): string {
  const p = splitUrl(url);
  if (!p || p.port) return url;
  return p.scheme + p.userInfo + p.host + (p.scheme.toLowerCase() === 'https://' ? ':443' : ':80') + p.rest;
}

function removePort(url: string): string {
  const p = splitUrl(url);
  return p ? p.scheme + p.userInfo + p.host + p.rest : url;
}

function withLegacyQuerystring(url: string): string {
  const q = url.indexOf('?');
  if (q === -1 || q === url.length - 1) return url;
  return `${url.slice(0, q)}?${legacyStringify(legacyParse(url.slice(q + 1)))}`;
}

/** The URLs a signature may have been computed over, in the order twilio-node tries them. */
export function twilioUrlVariants(url: string): string[] {
  const out = [removePort(url), addPort(url)];
  let normalised: string | undefined;
  try {
    normalised = new URL(url).toString();
  } catch {
    normalised = undefined;
  }
  if (normalised !== undefined) {
    const without = removePort(normalised);
    const withPort = addPort(normalised);
    out.push(without, withPort, withLegacyQuerystring(without), withLegacyQuerystring(withPort));
  }
  return [...new Set(out)];
}

function constantTimeEquals(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * True when `signature` is Twilio's signature of this request for one of the URL variants.
 * Same contract as twilio-node's `validateRequest` (plus the SHA-256 variant).
 */
export function validateTwilioSignature(
  authToken: string,
  signature: string,
  url: string,
  params: TwilioParams,
  algorithm: TwilioSignatureAlgorithm = 'sha1',
): boolean {
  let ok = false;
  // Every variant is computed and compared, so the time taken does not depend on which matched.
  for (const candidate of twilioUrlVariants(url)) {
    if (constantTimeEquals(signature, twilioSignature(authToken, candidate, params, algorithm))) ok = true;
  }
  return ok;
}

/** JSON-body webhooks: the URL (with `bodySHA256`) signed with no parameters, and the body hash. */
export function validateTwilioSignatureWithBody(
  authToken: string,
  signature: string,
  url: string,
  rawBody: Buffer,
  algorithm: TwilioSignatureAlgorithm = 'sha1',
): boolean {
  let declared = '';
  try {
    declared = new URL(url).searchParams.get('bodySHA256') ?? '';
  } catch {
    declared = '';
  }
  const actual = createHash('sha256').update(rawBody).digest('hex');
  const urlOk = validateTwilioSignature(authToken, signature, url, {}, algorithm);
  const bodyOk = constantTimeEquals(declared, actual);
  return urlOk && bodyOk;
}

/**
 * Reads `X-Twilio-Webhooks-Signature-Settings` (`key=...,algorithm=HMAC_SHA256`). Absent or
 * without an algorithm: SHA-1. An algorithm we do not know: undefined (refuse the request).
 */
export function signatureAlgorithmFrom(header: string | undefined): TwilioSignatureAlgorithm | undefined {
  if (header === undefined || header.trim() === '') return 'sha1';
  let algorithm: string | undefined;
  for (const part of header.split(/[,;]/)) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim().toLowerCase() === 'algorithm') algorithm = part.slice(eq + 1).trim().toUpperCase();
  }
  if (algorithm === undefined || algorithm === 'HMAC_SHA1' || algorithm === 'HMAC-SHA1') return 'sha1';
  if (algorithm === 'HMAC_SHA256' || algorithm === 'HMAC-SHA256') return 'sha256';
  return undefined;
}
