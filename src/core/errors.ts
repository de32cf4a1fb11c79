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
  FHIR_SUBSCRIPTION_REFUSED: { disposition: 'permanent', summary: 'The FHIR server refused the rest-hook Subscription Switchboard asked for (the create or update was rejected); the fhir_subscription source keeps finding replies by search.' },
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
  OUTBOUND_RECIPIENT_UNRESOLVED: { disposition: 'permanent', summary: 'An outbound message has no address: the mapping gave none and the patient never wrote on a channel of this kind.' },
  OUTBOUND_NETWORK: { disposition: 'retryable', summary: 'The chat provider could not be reached before the request was written (refused, DNS): nothing was sent; resent.' },
  OUTBOUND_SEND_INTERRUPTED: { disposition: 'retryable', summary: 'The send request was written but no answer came (timeout, connection lost): it may have been sent; the next attempt reconciles before any resend.' },
  OUTBOUND_RESPONSE_INVALID: { disposition: 'retryable', summary: 'The chat provider answered 2xx without a usable message id: the send is reconciled like an interrupted one.' },
  OUTBOUND_SEND_RECONCILING: { disposition: 'retryable', summary: 'An earlier attempt may have reached the provider: waiting (bounded) for a status webhook or a lookup that says whether it was sent.' },
  OUTBOUND_SEND_UNCERTAIN: { disposition: 'permanent', summary: 'An earlier attempt may have been sent and nothing confirmed or denied it in time: dead-lettered, never resent blindly; a replay resends only when the operator says so (resend_uncertain).' },
  WHATSAPP_WINDOW_CLOSED: { disposition: 'permanent', summary: 'A free-form reply outside the 24-hour customer-service window (checked before calling Meta, or Meta error 131047): the mapping must choose an approved template.' },
  WHATSAPP_THROUGHPUT_LIMITED: { disposition: 'retryable', summary: 'Meta rate limits: 130429 (throughput per number), 131048 (spam rate), 4 and 80007 (API call rate): retried with backoff.' },
  WHATSAPP_PAIR_RATE_LIMITED: { disposition: 'retryable', summary: 'Meta error 131056: too many messages to the same recipient in a short time; retried with backoff.' },
  WHATSAPP_TEMPLATE_INVALID: { disposition: 'permanent', summary: 'Meta 132xxx: the template does not exist in that language, its parameters do not match, or it is paused or disabled.' },
  WHATSAPP_RECIPIENT_UNAVAILABLE: { disposition: 'permanent', summary: 'Meta 131026 (undeliverable: not on WhatsApp, old app, terms not accepted), 131021, 131030, 131049, 131050: the recipient cannot get this message.' },
  WHATSAPP_REQUEST_INVALID: { disposition: 'permanent', summary: 'Meta refused the request itself: 100, 33, 131008, 131009, 131051 (unsupported type), 131052/131053 (media), other 4xx.' },
  WHATSAPP_AUTH: { disposition: 'retryable', summary: 'Meta refused the token or its permissions (0, 10, 190, 200-299, 401/403): the destination is paused until an operator fixes the token and resumes it.' },
  WHATSAPP_ACCOUNT_BLOCKED: { disposition: 'retryable', summary: 'Meta restricts the business account or number (368, 130497, 131031, 131042, 131057): the destination is paused.' },
  WHATSAPP_UNAVAILABLE: { disposition: 'retryable', summary: 'Meta answered 5xx or a temporary error (1, 2, 131000, 131016, 133004): the send did not happen; retried.' },
  TWILIO_WINDOW_CLOSED: { disposition: 'permanent', summary: 'Twilio error 63016: a free-form WhatsApp message outside the 24-hour window; use a Content template.' },
  TWILIO_RATE_LIMITED: { disposition: 'retryable', summary: 'Twilio answered 429 (20429, 63018 rate limits): retried with backoff, honouring Retry-After.' },
  TWILIO_REQUEST_INVALID: { disposition: 'permanent', summary: 'Twilio refused the message (400/404, e.g. 21211 invalid To, 21610 unsubscribed, 63003/63024 recipient, 21656 content variables).' },
  TWILIO_AUTH: { disposition: 'retryable', summary: 'Twilio refused the credentials (401, 20003) or the account (403): the destination is paused.' },
  TWILIO_UNAVAILABLE: { disposition: 'retryable', summary: 'Twilio answered 5xx: the message was not created; retried.' },
  ROCKETCHAT_REQUEST_INVALID: { disposition: 'permanent', summary: 'Rocket.Chat refused the message (400: unknown room, not allowed in the room, invalid message).' },
  ROCKETCHAT_AUTH: { disposition: 'retryable', summary: 'Rocket.Chat refused X-Auth-Token / X-User-Id (401, 403): the destination is paused.' },
  ROCKETCHAT_RATE_LIMITED: { disposition: 'retryable', summary: 'Rocket.Chat answered 429 (API rate limiter): retried after x-ratelimit-reset.' },
  ROCKETCHAT_UNAVAILABLE: { disposition: 'retryable', summary: 'Rocket.Chat answered 5xx: retried (a resend with the same message _id is idempotent).' },
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

// ---------------------------------------------------------------------------------------------
// Chat providers' send errors: the provider's own codes become ours, here and nowhere else.
// ---------------------------------------------------------------------------------------------

export interface ProviderErrorVerdict {
  code: ErrorCode;
  /** The destination cannot send anything until a person acts (token, account): pause its queue. */
  pause: boolean;
}

const WHATSAPP_CODES: ReadonlyMap<number, ErrorCode> = new Map<number, ErrorCode>([
  [131047, 'WHATSAPP_WINDOW_CLOSED'],
  [130429, 'WHATSAPP_THROUGHPUT_LIMITED'],
  [131048, 'WHATSAPP_THROUGHPUT_LIMITED'],
  [4, 'WHATSAPP_THROUGHPUT_LIMITED'],
  [80007, 'WHATSAPP_THROUGHPUT_LIMITED'],
  [131056, 'WHATSAPP_PAIR_RATE_LIMITED'],
  [131026, 'WHATSAPP_RECIPIENT_UNAVAILABLE'],
  [131021, 'WHATSAPP_RECIPIENT_UNAVAILABLE'],
  [131030, 'WHATSAPP_RECIPIENT_UNAVAILABLE'],
  [131049, 'WHATSAPP_RECIPIENT_UNAVAILABLE'],
  [131050, 'WHATSAPP_RECIPIENT_UNAVAILABLE'],
  [100, 'WHATSAPP_REQUEST_INVALID'],
  [33, 'WHATSAPP_REQUEST_INVALID'],
  [131008, 'WHATSAPP_REQUEST_INVALID'],
  [131009, 'WHATSAPP_REQUEST_INVALID'],
  [131051, 'WHATSAPP_REQUEST_INVALID'],
  [131052, 'WHATSAPP_REQUEST_INVALID'],
  [131053, 'WHATSAPP_REQUEST_INVALID'],
  [131055, 'WHATSAPP_REQUEST_INVALID'],
  [0, 'WHATSAPP_AUTH'],
  [3, 'WHATSAPP_AUTH'],
  [10, 'WHATSAPP_AUTH'],
  [190, 'WHATSAPP_AUTH'],
  [368, 'WHATSAPP_ACCOUNT_BLOCKED'],
  [130497, 'WHATSAPP_ACCOUNT_BLOCKED'],
  [131031, 'WHATSAPP_ACCOUNT_BLOCKED'],
  [131042, 'WHATSAPP_ACCOUNT_BLOCKED'],
  [131057, 'WHATSAPP_ACCOUNT_BLOCKED'],
  [1, 'WHATSAPP_UNAVAILABLE'],
  [2, 'WHATSAPP_UNAVAILABLE'],
  [131000, 'WHATSAPP_UNAVAILABLE'],
  [131016, 'WHATSAPP_UNAVAILABLE'],
  [133004, 'WHATSAPP_UNAVAILABLE'],
]);

/** A Graph API error (HTTP status and `error.code`, sync or in a failed status webhook) as our code. */
export function classifyWhatsAppSendError(httpStatus: number | undefined, code: number | undefined): ProviderErrorVerdict {
  let mapped = code === undefined ? undefined : WHATSAPP_CODES.get(code);
  if (mapped === undefined && code !== undefined) {
    if (code >= 132000 && code < 133000) mapped = 'WHATSAPP_TEMPLATE_INVALID';
    else if (code >= 200 && code < 300) mapped = 'WHATSAPP_AUTH';
  }
  if (mapped === undefined) {
    if (httpStatus === 401 || httpStatus === 403) mapped = 'WHATSAPP_AUTH';
    else if (httpStatus === 429) mapped = 'WHATSAPP_THROUGHPUT_LIMITED';
    else if (httpStatus === undefined || httpStatus >= 500 || httpStatus === 408) mapped = 'WHATSAPP_UNAVAILABLE';
    else mapped = 'WHATSAPP_REQUEST_INVALID';
  }
  return { code: mapped, pause: mapped === 'WHATSAPP_AUTH' || mapped === 'WHATSAPP_ACCOUNT_BLOCKED' };
}

const TWILIO_CODES: ReadonlyMap<number, ErrorCode> = new Map<number, ErrorCode>([
  [63016, 'TWILIO_WINDOW_CLOSED'],
  [20429, 'TWILIO_RATE_LIMITED'],
  [63018, 'TWILIO_RATE_LIMITED'],
  [20003, 'TWILIO_AUTH'],
  [20005, 'TWILIO_AUTH'],
]);

/** A Twilio REST error (HTTP status and its `code`) as our code. */
export function classifyTwilioSendError(httpStatus: number | undefined, code: number | undefined): ProviderErrorVerdict {
  let mapped = code === undefined ? undefined : TWILIO_CODES.get(code);
  if (mapped === undefined) {
    if (httpStatus === 401 || httpStatus === 403) mapped = 'TWILIO_AUTH';
    else if (httpStatus === 429) mapped = 'TWILIO_RATE_LIMITED';
    else if (httpStatus === undefined || httpStatus >= 500 || httpStatus === 408) mapped = 'TWILIO_UNAVAILABLE';
    else mapped = 'TWILIO_REQUEST_INVALID';
  }
  return { code: mapped, pause: mapped === 'TWILIO_AUTH' };
}

/** A Rocket.Chat REST error (HTTP status) as our code. */
export function classifyRocketChatSendError(httpStatus: number | undefined): ProviderErrorVerdict {
  const mapped: ErrorCode =
    httpStatus === 401 || httpStatus === 403
      ? 'ROCKETCHAT_AUTH'
      : httpStatus === 429
        ? 'ROCKETCHAT_RATE_LIMITED'
        : httpStatus === undefined || httpStatus >= 500 || httpStatus === 408
          ? 'ROCKETCHAT_UNAVAILABLE'
          : 'ROCKETCHAT_REQUEST_INVALID';
  return { code: mapped, pause: mapped === 'ROCKETCHAT_AUTH' };
}
