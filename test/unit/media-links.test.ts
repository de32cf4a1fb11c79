/** Signed media links: HMAC over media key and expiry, refused when altered, expired or signed with an unknown key. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createMediaLinks } from '../../src/media/media-links.js';
import { parseEnv } from '../../src/config/env.js';

const mediaKey = 'ab'.repeat(32);

function setup(ttlSeconds = 600) {
  let now = Date.UTC(2026, 11, 7, 12, 0, 0);
  const keys = new Map([['ml-1', randomBytes(32)]]);
  let current = 'ml-1';
  const links = createMediaLinks({ keys: { current: () => ({ id: current, key: keys.get(current)! }), byId: (id) => keys.get(id) }, ttlSeconds, now: () => now });
  return {
    links,
    advance: (ms: number) => (now += ms),
    rotate: () => {
      keys.set('ml-2', randomBytes(32));
      current = 'ml-2';
    },
    drop: (id: string) => keys.delete(id),
  };
}

describe('media links', () => {
  it('are valid for the configured lifetime and no longer', () => {
    const t = setup(600);
    const q = new URLSearchParams(t.links.sign(mediaKey));
    expect(t.links.verify(mediaKey, q)).toMatchObject({ ok: true, keyId: 'ml-1' });
    t.advance(599_000);
    expect(t.links.verify(mediaKey, q).ok).toBe(true);
    t.advance(1000);
    expect(t.links.verify(mediaKey, q)).toMatchObject({ ok: false, reason: 'expired' });
  });

  it('bind the media key, the expiry and the key id', () => {
    const t = setup();
    const q = new URLSearchParams(t.links.sign(mediaKey));
    expect(t.links.verify('cd'.repeat(32), q)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const later = new URLSearchParams(q);
    later.set('expires', String(Number(q.get('expires')) + 3600));
    expect(t.links.verify(mediaKey, later)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const short = new URLSearchParams(q);
    short.set('sig', q.get('sig')!.slice(0, 20));
    expect(t.links.verify(mediaKey, short)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const noSig = new URLSearchParams(q);
    noSig.delete('sig');
    expect(t.links.verify(mediaKey, noSig)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(t.links.verify(mediaKey, new URLSearchParams())).toMatchObject({ ok: false, reason: 'absent' });
  });

  it('signed before a key rotation stay valid while the old key is kept', () => {
    const t = setup();
    const before = new URLSearchParams(t.links.sign(mediaKey));
    t.rotate();
    const after = new URLSearchParams(t.links.sign(mediaKey));
    expect(after.get('kid')).toBe('ml-2');
    expect(t.links.verify(mediaKey, before).ok).toBe(true);
    t.drop('ml-1');
    expect(t.links.verify(mediaKey, before)).toMatchObject({ ok: false, reason: 'unknown_key' });
    expect(t.links.verify(mediaKey, after).ok).toBe(true);
  });

  it('take their lifetime from MEDIA_LINK_TTL (default 7 days, 0 for unsigned links)', () => {
    expect(parseEnv({}).MEDIA_LINK_TTL).toBe(7 * 86_400);
    expect(parseEnv({ MEDIA_LINK_TTL: '24h' }).MEDIA_LINK_TTL).toBe(86_400);
    expect(parseEnv({ MEDIA_LINK_TTL: '900s' }).MEDIA_LINK_TTL).toBe(900);
    expect(parseEnv({ MEDIA_LINK_TTL: '0' }).MEDIA_LINK_TTL).toBe(0);
    expect(() => parseEnv({ MEDIA_LINK_TTL: 'forever' })).toThrow(/MEDIA_LINK_TTL: a duration such as 900s, 24h or 7d/);
  });
});
