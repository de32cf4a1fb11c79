/** Signed media links: HMAC over media key and expiry, refused when altered, expired, signed with an unknown key or with a key retired longer ago than a link lives. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RETIRED_KEY_GRACE_SECONDS, createMediaLinks } from '../../src/media/media-links.js';
import { parseEnv } from '../../src/config/env.js';

const mediaKey = 'ab'.repeat(32);

function setup(ttlSeconds = 600) {
  let now = Date.UTC(2026, 11, 7, 12, 0, 0);
  const keys = new Map<string, { key: Buffer; retiredAt: Date | null }>([['ml-1', { key: randomBytes(32), retiredAt: null }]]);
  let current = 'ml-1';
  const links = createMediaLinks({ keys: { current: () => ({ id: current, key: keys.get(current)!.key }), byId: async (id) => keys.get(id) }, ttlSeconds, now: () => now });
  /** Links signed with key `id` whatever the current key is (a process that has not seen a rotation, or a leaked key). */
  const signWith = (id: string) => createMediaLinks({ keys: { current: () => ({ id, key: keys.get(id)!.key }), byId: async () => undefined }, ttlSeconds, now: () => now }).sign(mediaKey);
  return {
    links,
    signWith,
    advance: (ms: number) => (now += ms),
    rotate: () => {
      keys.get(current)!.retiredAt = new Date(now);
      keys.set('ml-2', { key: randomBytes(32), retiredAt: null });
      current = 'ml-2';
    },
    drop: (id: string) => keys.delete(id),
  };
}

describe('media links', () => {
  it('are valid for the configured lifetime and no longer', async () => {
    const t = setup(600);
    const q = new URLSearchParams(t.links.sign(mediaKey));
    expect(await t.links.verify(mediaKey, q)).toMatchObject({ ok: true, keyId: 'ml-1' });
    t.advance(599_000);
    expect((await t.links.verify(mediaKey, q)).ok).toBe(true);
    t.advance(1000);
    expect(await t.links.verify(mediaKey, q)).toMatchObject({ ok: false, reason: 'expired' });
  });

  it('bind the media key, the expiry and the key id', async () => {
    const t = setup();
    const q = new URLSearchParams(t.links.sign(mediaKey));
    expect(await t.links.verify('cd'.repeat(32), q)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const later = new URLSearchParams(q);
    later.set('expires', String(Number(q.get('expires')) + 3600));
    expect(await t.links.verify(mediaKey, later)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const short = new URLSearchParams(q);
    short.set('sig', q.get('sig')!.slice(0, 20));
    expect(await t.links.verify(mediaKey, short)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const noSig = new URLSearchParams(q);
    noSig.delete('sig');
    expect(await t.links.verify(mediaKey, noSig)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(await t.links.verify(mediaKey, new URLSearchParams())).toMatchObject({ ok: false, reason: 'absent' });
  });

  it('signed before a key rotation stay valid while the old key is kept', async () => {
    const t = setup();
    const before = new URLSearchParams(t.links.sign(mediaKey));
    t.rotate();
    const after = new URLSearchParams(t.links.sign(mediaKey));
    expect(after.get('kid')).toBe('ml-2');
    expect((await t.links.verify(mediaKey, before)).ok).toBe(true);
    t.drop('ml-1');
    expect(await t.links.verify(mediaKey, before)).toMatchObject({ ok: false, reason: 'unknown_key' });
    expect((await t.links.verify(mediaKey, after)).ok).toBe(true);
  });

  it('signed with a retired key are accepted for the link lifetime after the rotation, then refused', async () => {
    const t = setup(600);
    const old = new URLSearchParams(t.links.sign(mediaKey));
    t.advance(300_000);
    t.rotate();
    // A link the old key signed before the rotation works until its own expiry.
    expect((await t.links.verify(mediaKey, old)).ok).toBe(true);
    t.advance(300_000);
    expect(await t.links.verify(mediaKey, old)).toMatchObject({ ok: false, reason: 'expired' });
    // One signed with the old key after the rotation (a process that had not seen the new key
    // yet, or whoever holds a leaked key) is accepted only until lifetime + grace after it.
    const late = new URLSearchParams(t.signWith('ml-1'));
    expect((await t.links.verify(mediaKey, late)).ok).toBe(true);
    t.advance((300 + RETIRED_KEY_GRACE_SECONDS) * 1000 - 1);
    expect((await t.links.verify(mediaKey, late)).ok).toBe(true);
    t.advance(1);
    expect(await t.links.verify(mediaKey, late)).toMatchObject({ ok: false, reason: 'retired_key' });
    // A forgery with a far expiry under the retired key is refused the same way.
    expect(await t.links.verify(mediaKey, new URLSearchParams(t.signWith('ml-1')))).toMatchObject({ ok: false, reason: 'retired_key' });
    // The current key is not affected.
    expect((await t.links.verify(mediaKey, new URLSearchParams(t.links.sign(mediaKey))))).toMatchObject({ ok: true, keyId: 'ml-2' });
  });

  it('take their lifetime from MEDIA_LINK_TTL (default 7 days, 0 for unsigned links)', () => {
    expect(parseEnv({}).MEDIA_LINK_TTL).toBe(7 * 86_400);
    expect(parseEnv({ MEDIA_LINK_TTL: '24h' }).MEDIA_LINK_TTL).toBe(86_400);
    expect(parseEnv({ MEDIA_LINK_TTL: '900s' }).MEDIA_LINK_TTL).toBe(900);
    expect(parseEnv({ MEDIA_LINK_TTL: '0' }).MEDIA_LINK_TTL).toBe(0);
    expect(() => parseEnv({ MEDIA_LINK_TTL: 'forever' })).toThrow(/MEDIA_LINK_TTL: a duration such as 900s, 24h or 7d/);
  });
});
