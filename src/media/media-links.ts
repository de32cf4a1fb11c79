/**
 * Signed, expiring media links: the URL of a stored medium given to a destination (a FHIR
 * Attachment.url) carries its expiry and an HMAC-SHA256 over the media key and that expiry,
 * under the media link key (kept wrapped in encryption_keys like every other key). Whoever holds
 * the link may fetch that one medium until it expires; no shared bearer secret is needed.
 *
 *   <base>/media/<key>?expires=<unix seconds>&kid=<key id>&sig=<base64url HMAC>
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface MediaLinkKeys {
  /** The key new links are signed with. */
  current(): { id: string; key: Buffer };
  /**
   * A key by id (links signed before a rotation, or with a key another process made a moment
   * ago), with when it was retired; undefined when unknown.
   */
  byId(id: string): Promise<{ key: Buffer; retiredAt: Date | null } | undefined>;
}

export type MediaLinkCheck =
  | { ok: true; keyId: string; expiresAt: Date }
  /** absent: the request carries no link parameters at all. */
  | { ok: false; reason: 'absent' | 'malformed' | 'expired' | 'unknown_key' | 'retired_key' | 'bad_signature'; message: string };

export interface MediaLinks {
  /** The query string (without `?`) that makes a link to `mediaKey` valid for the configured lifetime. */
  sign(mediaKey: string): string;
  verify(mediaKey: string, query: URLSearchParams): Promise<MediaLinkCheck>;
}

const SIG_BYTES = 32;

/**
 * After a media link key is retired, links signed with it are accepted for the link lifetime plus
 * this much: a process signs with the old key until it has seen the new one (within seconds).
 */
export const RETIRED_KEY_GRACE_SECONDS = 60;

/** Until when links signed with a key retired at `retiredAt` are accepted. */
export function retiredKeyAcceptedUntil(retiredAt: Date, ttlSeconds: number): Date {
  return new Date(retiredAt.getTime() + (ttlSeconds + RETIRED_KEY_GRACE_SECONDS) * 1000);
}

function mac(key: Buffer, mediaKey: string, expires: number, keyId: string): Buffer {
  return createHmac('sha256', key).update(`switchboard:media-link:v1\n${keyId}\n${mediaKey}\n${expires}`).digest();
}

export function createMediaLinks(o: { keys: MediaLinkKeys; ttlSeconds: number; now?: () => number }): MediaLinks {
  const now = o.now ?? Date.now;
  return {
    sign(mediaKey) {
      const { id, key } = o.keys.current();
      const expires = Math.floor(now() / 1000) + o.ttlSeconds;
      return new URLSearchParams({ expires: String(expires), kid: id, sig: mac(key, mediaKey, expires, id).toString('base64url') }).toString();
    },
    async verify(mediaKey, query) {
      const [expiresText, keyId, sigText] = [query.get('expires'), query.get('kid'), query.get('sig')];
      if (expiresText === null && keyId === null && sigText === null) return { ok: false, reason: 'absent', message: 'no signed link parameters' };
      if (expiresText === null || keyId === null || sigText === null || !/^\d{1,12}$/.test(expiresText)) {
        return { ok: false, reason: 'malformed', message: 'a signed media link needs expires (unix seconds), kid and sig' };
      }
      const found = await o.keys.byId(keyId);
      if (!found) return { ok: false, reason: 'unknown_key', message: 'the link was signed with a key this gateway does not have' };
      const expires = Number(expiresText);
      const given = Buffer.from(sigText, 'base64url');
      const want = mac(found.key, mediaKey, expires, keyId);
      // Signature first (constant time), so an expired-looking forgery is called a forgery.
      if (given.length !== SIG_BYTES || !timingSafeEqual(given, want)) return { ok: false, reason: 'bad_signature', message: 'the link signature does not match this media key and expiry' };
      if (expires * 1000 <= now()) return { ok: false, reason: 'expired', message: `the link expired at ${new Date(expires * 1000).toISOString()}` };
      // Every link the old key signed has expired by then; one that has not was made with the
      // retired key afterwards (a leaked key: the reason to rotate), or under a longer lifetime.
      if (found.retiredAt !== null && now() >= retiredKeyAcceptedUntil(found.retiredAt, o.ttlSeconds).getTime()) {
        return { ok: false, reason: 'retired_key', message: `the link was signed with a media link key retired at ${found.retiredAt.toISOString()}, no longer accepted` };
      }
      return { ok: true, keyId, expiresAt: new Date(expires * 1000) };
    },
  };
}
