/**
 * Typed errors with stable codes. Whether a failure is worth retrying is decided here and
 * nowhere else: `classify()` is the single place that turns any thrown value into a verdict.
 *
 * Codes are part of the public interface (admin API, dead-letter entries, logs): never rename
 * one; add new ones. `errorCatalogue` documents each and a test checks the README lists them.
 */

export type Disposition = 'retryable' | 'permanent';

export const errorCatalogue = {
  CONFIG_INVALID: { disposition: 'permanent', summary: 'A channel or mapping file is invalid.' },
  CONFIG_ENV_MISSING: { disposition: 'permanent', summary: 'A channel file references an unset environment variable.' },
  MAPPING_COMPILE: { disposition: 'permanent', summary: 'A JSONata mapping does not compile.' },
  MAPPING_EVALUATE: { disposition: 'permanent', summary: 'A JSONata mapping threw while evaluating a message.' },
  MAPPING_TIMEOUT: { disposition: 'permanent', summary: 'A JSONata mapping ran longer than its time budget.' },
  MAPPING_OUTPUT_INVALID: { disposition: 'permanent', summary: 'A mapping produced output that is not a valid resource.' },
  PATIENT_UNMATCHED: { disposition: 'permanent', summary: 'No Patient matched the sender and the channel requires one.' },
  PATIENT_AMBIGUOUS: { disposition: 'permanent', summary: 'Several Patients matched the sender and the channel requires exactly one.' },
  FHIR_NETWORK: { disposition: 'retryable', summary: 'The FHIR server could not be reached (connection refused, reset, DNS).' },
  FHIR_TIMEOUT: { disposition: 'retryable', summary: 'The FHIR server did not answer within the request timeout.' },
  FHIR_HTTP_RETRYABLE: { disposition: 'retryable', summary: 'The FHIR server answered 408, 425, 429, 500, 502, 503 or 504.' },
  FHIR_HTTP_PERMANENT: { disposition: 'permanent', summary: 'The FHIR server rejected the request (400, 403, 404, 405, 410, 422, ...).' },
  FHIR_AUTH: { disposition: 'retryable', summary: 'The FHIR server answered 401; credentials are refreshed and the request retried.' },
  SMART_TOKEN_UNAVAILABLE: { disposition: 'retryable', summary: 'SMART Backend Services: the token endpoint or smart-configuration could not be reached, timed out, or answered 408, 429 or 5xx.' },
  SMART_TOKEN_REFUSED: { disposition: 'permanent', summary: 'SMART Backend Services: the authorization server refused the client (invalid_client, unauthorized_client, invalid_scope, ...: check the client id, registered JWKS and scopes) or has no usable smart-configuration.' },
  FHIR_MULTIPLE_MATCHES: { disposition: 'permanent', summary: 'Conditional create matched several resources (412): duplicates already exist.' },
  FHIR_RESPONSE_INVALID: { disposition: 'retryable', summary: 'The FHIR server answered 2xx with a body that is not the expected resource.' },
  FHIR_VERSION_CONFLICT: { disposition: 'retryable', summary: 'A conditional update (If-Match) found a newer version (412, or 409 on some servers): the resource is read again and the change re-applied.' },
  SOURCE_PARSE: { disposition: 'permanent', summary: 'A stored inbound event could not be parsed into canonical messages.' },
  STORE_UNAVAILABLE: { disposition: 'retryable', summary: 'The message store (PostgreSQL) is unavailable.' },
  QUEUE_UNAVAILABLE: { disposition: 'retryable', summary: 'The queue backend is unavailable.' },
  DELIVERY_NOT_FOUND: { disposition: 'permanent', summary: 'A delivery job refers to a delivery the store does not have.' },
  INTERNAL: { disposition: 'retryable', summary: 'An unexpected error; retried in case it was transient.' },
  HL7_BUILD_INVALID: { disposition: 'permanent', summary: 'A built HL7 v2 message failed the structural check (re-parse, structure, lengths): fix the mapping.' },
  HL7_ACK_AE: { disposition: 'permanent', summary: 'The HL7 partner answered AE or CE (application/commit error: content or structure); details from ERR.' },
  HL7_ACK_AR: { disposition: 'retryable', summary: 'The HL7 partner answered AR or CR (rejected, e.g. system down); resent unchanged with the same MSH-10.' },
  HL7_PARTNER_REJECTS_TYPE: { disposition: 'retryable', summary: 'The HL7 partner rejected the message type, event, processing id or version (ERR-3 200-203): the destination is paused.' },
  HL7_ACK_INVALID: { disposition: 'retryable', summary: 'The HL7 partner answered with something that is not a valid acknowledgment.' },
  MLLP_CONNECT: { disposition: 'retryable', summary: 'The MLLP partner could not be reached (refused, reset, DNS, TLS handshake or certificate).' },
  MLLP_TIMEOUT: { disposition: 'retryable', summary: 'The MLLP partner did not acknowledge within ack_timeout_ms; resent with the same MSH-10.' },
  MLLP_CONNECTION_CLOSED: { disposition: 'retryable', summary: 'The MLLP connection closed before the partner acknowledged; resent with the same MSH-10.' },
  MEDIA_NETWORK: { disposition: 'retryable', summary: 'A media download could not reach the provider (refused, reset, DNS, timeout).' },
  MEDIA_HTTP_RETRYABLE: { disposition: 'retryable', summary: 'The media provider answered 408, 425, 429 or 5xx to a download.' },
  MEDIA_HTTP_PERMANENT: { disposition: 'permanent', summary: 'The media provider refused a download (400, 401, 403, 405, 410, ...).' },
  MEDIA_EXPIRED: { disposition: 'permanent', summary: 'The media id or URL no longer exists at the provider (WhatsApp media ids expire after 7 days).' },
  MEDIA_TOO_LARGE: { disposition: 'permanent', summary: 'The media is larger than the channel\'s media.max_bytes.' },
  MEDIA_TYPE_REFUSED: { disposition: 'permanent', summary: 'The media content type is not in the channel\'s media.allowed_types.' },
  MEDIA_INTEGRITY: { disposition: 'retryable', summary: 'The downloaded bytes do not match the hash the provider announced.' },
  MEDIA_NOT_CONFIGURED: { disposition: 'permanent', summary: 'A message has media but the channel has no credentials to download it from that source.' },
  KEY_MISSING: { disposition: 'retryable', summary: 'A stored value is encrypted under a key that is not available (a key-encryption key left the keyring, or a data key is unknown); the error names the key id.' },
  DECRYPT_FAILED: { disposition: 'permanent', summary: 'A stored value failed authenticated decryption: it was altered, or moved from another row or column.' },
  MEDIA_STORE_UNAVAILABLE: { disposition: 'retryable', summary: 'Downloaded media could not be written to the media store.' },
  UNAUTHENTICATED: { disposition: 'permanent', summary: 'HTTP 401: no bearer credential, or one that is unknown, expired, revoked or fails verification.' },
  FORBIDDEN: { disposition: 'permanent', summary: 'HTTP 403: the caller is authenticated but its role lacks the permission the route needs (the answer names it).' },
  MEDIA_LINK_INVALID: { disposition: 'permanent', summary: 'HTTP 403: a media link whose signature does not match its media key and expiry (altered or forged), is incomplete, or names an unknown key.' },
  MEDIA_LINK_EXPIRED: { disposition: 'permanent', summary: 'HTTP 403: a signed media link past its expiry (MEDIA_LINK_TTL after it was made).' },
  AUTH_THROTTLED: { disposition: 'retryable', summary: 'HTTP 429: too many failed authentications from this address; Retry-After says when to try again.' },
  OIDC_UNAVAILABLE: { disposition: 'retryable', summary: 'HTTP 503: the OpenID provider\'s discovery document or key set (JWKS) could not be fetched, so a bearer JWT cannot be checked.' },
  TOKEN_NAME_TAKEN: { disposition: 'permanent', summary: 'An API token of that name exists and is not revoked (also when it has expired): revoke it first.' },
  TOKEN_NOT_FOUND: { disposition: 'permanent', summary: 'No API token of that name that is not already revoked.' },
} as const satisfies Record<string, { disposition: Disposition; summary: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export interface SwitchboardErrorOptions {
  /** Overrides the catalogue disposition (e.g. a 409 race that is worth one retry). */
  disposition?: Disposition;
  /** Server-requested delay (Retry-After), in milliseconds. */
  retryAfterMs?: number;
  /**
   * The destination cannot take any message until a person acts (e.g. an HL7 partner rejects our
   * message type or version): pause its queue and alert, keep the message pending.
   */
  pauseDestination?: boolean;
  /** Structured, PHI-free details for the dead-letter entry (status code, OperationOutcome issue codes...). */
  details?: Record<string, unknown>;
  /**
   * What the destination would have sent and refused to (invalid mapping output) or was refused
   * (a server's 4xx). Message content (PHI): kept out of `details`, logs and JSON; the store
   * keeps it with the dead letter for the content view only.
   */
  rejectedOutput?: unknown;
  cause?: unknown;
}

export class SwitchboardError extends Error {
  readonly code: ErrorCode;
  readonly disposition: Disposition;
  readonly retryAfterMs: number | undefined;
  readonly details: Record<string, unknown>;
  readonly pauseDestination: boolean;
  /** See SwitchboardErrorOptions.rejectedOutput; not enumerable, so no serializer picks it up. */
  declare readonly rejectedOutput: unknown;

  constructor(code: ErrorCode, message: string, options: SwitchboardErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SwitchboardError';
    this.code = code;
    this.disposition = options.disposition ?? errorCatalogue[code].disposition;
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details ?? {};
    this.pauseDestination = options.pauseDestination ?? false;
    attachRejectedOutput(this, options.rejectedOutput);
  }
}

/** Keeps what was rejected with the error, out of every serializer (see SwitchboardErrorOptions.rejectedOutput). */
export function attachRejectedOutput<E extends SwitchboardError>(err: E, output: unknown): E {
  Object.defineProperty(err, 'rejectedOutput', { value: output, enumerable: false, configurable: true });
  return err;
}

/** A position in a file, 1-based, for errors an analyst can fix. */
export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

/** One problem in a channel or mapping file; printed as `file:line:column: message`. */
export interface ConfigIssue extends SourcePosition {
  message: string;
}

export class ConfigError extends SwitchboardError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[], code: ErrorCode = 'CONFIG_INVALID') {
    super(code, issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssue(issue: ConfigIssue): string {
  return `${issue.file}:${issue.line}:${issue.column}: ${issue.message}`;
}

export interface Classification {
  code: ErrorCode;
  disposition: Disposition;
  message: string;
  retryAfterMs?: number;
  /** See SwitchboardErrorOptions.pauseDestination. */
  pauseDestination: boolean;
  details: Record<string, unknown>;
}

/** The one place that decides retryable vs permanent for anything a pipeline step throws. */
export function classify(err: unknown): Classification {
  if (err instanceof SwitchboardError) {
    const out: Classification = {
      code: err.code,
      disposition: err.disposition,
      message: err.message,
      details: err.details,
      pauseDestination: err.pauseDestination,
    };
    if (err.retryAfterMs !== undefined) out.retryAfterMs = err.retryAfterMs;
    return out;
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', disposition: 'retryable', message, details: {}, pauseDestination: false };
}

/**
 * Parses an HTTP Retry-After header (delta-seconds or an HTTP-date) into milliseconds,
 * capped so a hostile or broken server cannot park a delivery for days.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now(), capMs = 3_600_000): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed) * 1000, capMs);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(at - now, 0), capMs);
}
