/**
 * Downloads the media of a canonical message and stores it durably, returning what a FHIR
 * Attachment needs: content type, size, SHA-1 (base64, R4 Attachment.hash), and a URL served by
 * Switchboard or the bytes inline below the channel's threshold.
 *
 *  - WhatsApp Cloud API (reference 1.7): GET <graph>/<version>/<MEDIA_ID> with the bearer token ->
 *    {url, mime_type, sha256, file_size}; GET url with the same bearer; the sha256 is verified;
 *    a 404 on the URL (they expire after 5 minutes) refreshes it once.
 *  - Twilio: GET MediaUrlN with HTTP Basic (AccountSid:AuthToken); Twilio redirects to a signed
 *    URL, and fetch drops the Authorization header on the cross-origin hop.
 *  - Anything else with a URL (Rocket.Chat, generic webhooks): GET with the configured headers.
 *
 * Failures throw SwitchboardError with MEDIA_* codes, so the pipeline retries and dead-letters a
 * download exactly like a delivery (classify() decides). Error texts and details carry statuses
 * and steps only: never URLs with tokens, never content.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { CanonicalMessage, Media } from '../core/canonical-message.js';
import { SwitchboardError, parseRetryAfter, type ErrorCode } from '../core/errors.js';
import { contentTypeAllowed, type MediaPolicy } from './media-policy.js';
import type { MediaStore, StoredMediaInfo } from './media-store.js';

export type MediaAttachment = NonNullable<Media['attachment']>;

export interface MediaFetcherDeps {
  store: MediaStore;
  /** Injected for tests; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** The URL Switchboard serves a stored key under (the authenticated media route), e.g. `${PUBLIC_URL}/media/${key}`. */
  mediaUrl?: (key: string) => string;
}

type Step = 'lookup' | 'download';

function fail(code: ErrorCode, message: string, details: Record<string, unknown> = {}, retryAfterMs?: number): SwitchboardError {
  return new SwitchboardError(code, message, { details, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
}

function httpFailure(status: number, step: Step, headers: Headers): SwitchboardError {
  const details = { http_status: status, step };
  if (status === 404 || status === 410) return fail('MEDIA_EXPIRED', `media ${step}: HTTP ${status} (the media id or URL no longer exists)`, details);
  if (status === 408 || status === 425 || status === 429 || status >= 500) {
    return fail('MEDIA_HTTP_RETRYABLE', `media ${step}: HTTP ${status}`, details, parseRetryAfter(headers.get('retry-after')));
  }
  return fail('MEDIA_HTTP_PERMANENT', `media ${step}: HTTP ${status}`, details);
}

async function request(url: string, headers: Record<string, string>, step: Step, policy: MediaPolicy, deps: MediaFetcherDeps, signal?: AbortSignal): Promise<Response> {
  const timeout = AbortSignal.timeout(policy.timeout_ms);
  try {
    return await (deps.fetch ?? fetch)(url, { headers, redirect: 'follow', signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    const why = timeout.aborted ? `timed out after ${policy.timeout_ms} ms` : err instanceof Error ? err.message : String(err);
    throw fail('MEDIA_NETWORK', `media ${step}: ${why}`, { step });
  }
}

/** Reads the body, refusing more than `max` bytes without buffering them. */
async function readCapped(res: Response, max: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw fail('MEDIA_TOO_LARGE', `media of ${declared} bytes exceeds the ${max}-byte limit`, { size: declared, max_bytes: max });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (res.body === null) return Buffer.alloc(0);
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > max) {
        await reader.cancel().catch(() => undefined);
        throw fail('MEDIA_TOO_LARGE', `media exceeds the ${max}-byte limit`, { max_bytes: max });
      }
      chunks.push(Buffer.from(value));
    }
  } catch (err) {
    if (err instanceof SwitchboardError) throw err;
    throw fail('MEDIA_NETWORK', `media download: the body could not be read (${err instanceof Error ? err.message : String(err)})`, { step: 'download' });
  }
  return Buffer.concat(chunks, total);
}

function mimeOnly(contentType: string | null | undefined): string | undefined {
  const t = contentType?.split(';')[0]?.trim().toLowerCase();
  return t === undefined || t === '' ? undefined : t;
}

function checkType(contentType: string | undefined, policy: MediaPolicy): string {
  const t = contentType ?? 'application/octet-stream';
  if (!contentTypeAllowed(t, policy.allowed_types)) {
    throw fail('MEDIA_TYPE_REFUSED', `media type ${t} is not among the allowed types (${policy.allowed_types.join(', ')})`, { content_type: t });
  }
  return t;
}

const graphMediaSchema = z.looseObject({
  url: z.string().url(),
  mime_type: z.string().optional(),
  sha256: z.string().optional(),
  file_size: z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).optional(),
});

/** Meta sends the SHA-256 base64 (sometimes hex): accept either spelling of the same digest. */
function sha256Matches(expected: string, bytes: Buffer): boolean {
  const digest = createHash('sha256').update(bytes).digest();
  const e = expected.trim();
  return e.toLowerCase() === digest.toString('hex') || e === digest.toString('base64') || e.replace(/=+$/, '') === digest.toString('base64url');
}

async function fetchWhatsApp(media: Media, policy: MediaPolicy, deps: MediaFetcherDeps, signal?: AbortSignal): Promise<{ bytes: Buffer; contentType: string }> {
  const wa = policy.whatsapp;
  if (wa === undefined) throw fail('MEDIA_NOT_CONFIGURED', 'WhatsApp media needs media.whatsapp.access_token in the channel', { source: 'whatsapp_cloud' });
  const auth = { authorization: `Bearer ${wa.access_token}` };
  const lookup = async (): Promise<z.infer<typeof graphMediaSchema>> => {
    const url = `${wa.graph_base_url.replace(/\/+$/, '')}/${wa.api_version}/${encodeURIComponent(media.media_id ?? '')}`;
    const res = await request(url, auth, 'lookup', policy, deps, signal);
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw httpFailure(res.status, 'lookup', res.headers);
    }
    const parsed = graphMediaSchema.safeParse(await res.json().catch(() => null));
    if (!parsed.success) throw fail('MEDIA_HTTP_RETRYABLE', 'media lookup: the Graph API answer has no media url', { step: 'lookup' });
    return parsed.data;
  };

  let info = await lookup();
  if (info.file_size !== undefined && info.file_size > policy.max_bytes) {
    throw fail('MEDIA_TOO_LARGE', `media of ${info.file_size} bytes exceeds the ${policy.max_bytes}-byte limit`, { size: info.file_size, max_bytes: policy.max_bytes });
  }
  const announced = mimeOnly(info.mime_type) ?? mimeOnly(media.mime_type);
  if (announced !== undefined) checkType(announced, policy);

  let res = await request(info.url, auth, 'download', policy, deps, signal);
  if (res.status === 404) {
    // Media URLs expire after 5 minutes: ask for a fresh one, once.
    await res.body?.cancel().catch(() => undefined);
    info = await lookup();
    res = await request(info.url, auth, 'download', policy, deps, signal);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw httpFailure(res.status, 'download', res.headers);
  }
  const bytes = await readCapped(res, policy.max_bytes);
  const expected = info.sha256 ?? media.sha256;
  if (expected !== undefined && !sha256Matches(expected, bytes)) {
    throw fail('MEDIA_INTEGRITY', 'the downloaded media does not match its announced SHA-256', { size: bytes.length });
  }
  return { bytes, contentType: checkType(mimeOnly(info.mime_type) ?? mimeOnly(res.headers.get('content-type')) ?? mimeOnly(media.mime_type), policy) };
}

async function fetchUrl(url: string, headers: Record<string, string>, media: Media, policy: MediaPolicy, deps: MediaFetcherDeps, signal?: AbortSignal): Promise<{ bytes: Buffer; contentType: string }> {
  const announced = mimeOnly(media.mime_type);
  if (announced !== undefined) checkType(announced, policy);
  if (media.size !== undefined && media.size > policy.max_bytes) {
    throw fail('MEDIA_TOO_LARGE', `media of ${media.size} bytes exceeds the ${policy.max_bytes}-byte limit`, { size: media.size, max_bytes: policy.max_bytes });
  }
  const res = await request(url, headers, 'download', policy, deps, signal);
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw httpFailure(res.status, 'download', res.headers);
  }
  const bytes = await readCapped(res, policy.max_bytes);
  return { bytes, contentType: checkType(mimeOnly(res.headers.get('content-type')) ?? announced, policy) };
}

/** Whether this media item is something the fetcher can download. */
export function downloadable(media: Media, sourceKind: string): boolean {
  if (media.attachment !== undefined) return false;
  if (sourceKind === 'whatsapp_cloud') return media.media_id !== undefined;
  return media.url !== undefined && /^https?:\/\//i.test(media.url);
}

/** Downloads one media item, stores it, and describes it as an attachment. */
export async function downloadMedia(media: Media, sourceKind: string, policy: MediaPolicy, deps: MediaFetcherDeps, signal?: AbortSignal): Promise<MediaAttachment> {
  let got: { bytes: Buffer; contentType: string };
  if (sourceKind === 'whatsapp_cloud' && media.media_id !== undefined) {
    got = await fetchWhatsApp(media, policy, deps, signal);
  } else if (media.url !== undefined && /^https?:\/\//i.test(media.url)) {
    if (sourceKind === 'twilio_whatsapp') {
      const tw = policy.twilio;
      if (tw === undefined) throw fail('MEDIA_NOT_CONFIGURED', 'Twilio media needs media.twilio.account_sid and auth_token in the channel', { source: sourceKind });
      const basic = Buffer.from(`${tw.account_sid}:${tw.auth_token}`, 'utf8').toString('base64');
      got = await fetchUrl(media.url, { authorization: `Basic ${basic}` }, media, policy, deps, signal);
    } else {
      got = await fetchUrl(media.url, policy.http?.headers ?? {}, media, policy, deps, signal);
    }
  } else {
    throw fail('MEDIA_NOT_CONFIGURED', 'the media item has neither a media id nor an http(s) URL', { source: sourceKind });
  }

  let info: StoredMediaInfo;
  try {
    info = await deps.store.put(got.bytes, got.contentType);
  } catch (err) {
    throw new SwitchboardError('MEDIA_STORE_UNAVAILABLE', `the media store could not write: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return attachmentOf(info, got.bytes, policy, deps);
}

/** The attachment descriptor of stored bytes: inline at or below the threshold, else a URL. */
export function attachmentOf(info: StoredMediaInfo, bytes: Buffer | undefined, policy: MediaPolicy, deps: Pick<MediaFetcherDeps, 'mediaUrl'>): MediaAttachment {
  const inline = policy.inline_max_bytes > 0 && info.size <= policy.inline_max_bytes && bytes !== undefined;
  return {
    content_type: info.contentType,
    size: info.size,
    hash: info.sha1Base64,
    ...(inline ? { data: bytes.toString('base64') } : deps.mediaUrl ? { url: deps.mediaUrl(info.key) } : {}),
  };
}

/**
 * The message with every downloadable media item's `attachment` filled in. Idempotent (items
 * that already have one are kept), so a retried step downloads only what is missing; the store
 * is content-addressed, so a repeated download stores nothing new. Throws the first failure.
 */
export async function resolveMessageMedia(message: CanonicalMessage, policy: MediaPolicy, deps: MediaFetcherDeps, signal?: AbortSignal): Promise<CanonicalMessage> {
  if (!policy.download || message.media.length === 0) return message;
  const media: Media[] = [];
  for (const item of message.media) {
    media.push(downloadable(item, message.source.kind) ? { ...item, attachment: await downloadMedia(item, message.source.kind, policy, deps, signal) } : item);
  }
  return { ...message, media };
}

const servedKey = /\/media\/([0-9a-f]{64})(?:\?|$)/;

/**
 * The message with every stored medium's link made anew (a fresh expiry under the current media
 * link key and base URL), for the delivery attempt about to run: the link kept with the message
 * was made at the first attempt, and a retry or a replay days later must not hand the EHR an
 * expired one. Not stored: each attempt signs its own.
 */
export function withFreshMediaLinks(message: CanonicalMessage, deps: Pick<MediaFetcherDeps, 'mediaUrl'>): CanonicalMessage {
  const mediaUrl = deps.mediaUrl;
  if (mediaUrl === undefined || !message.media.some((m) => m.attachment?.url !== undefined)) return message;
  return {
    ...message,
    media: message.media.map((m) => {
      const key = m.attachment?.url === undefined ? undefined : servedKey.exec(m.attachment.url)?.[1];
      return key === undefined ? m : { ...m, attachment: { ...m.attachment!, url: mediaUrl(key) } };
    }),
  };
}
