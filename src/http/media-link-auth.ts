/**
 * GET /media/:key accepts a signed link (src/media/media-links.ts) in place of a bearer: the
 * link stands for the one medium it names, until it expires. A bad or expired link is refused
 * with 403 and the reason; a request without link parameters falls through to the bearer.
 */
import type { Context } from 'koa';
import type { MediaLinks } from '../media/media-links.js';
import type { RequestAuthenticator } from './access-control.js';

export function mediaLinkAuthenticator(links: MediaLinks): RequestAuthenticator {
  return {
    routes: ['GET /media/:key'],
    async authenticate(ctx: Context) {
      const key = (ctx.params as Record<string, string | undefined>)['key'] ?? '';
      const check = await links.verify(key, new URLSearchParams(ctx.querystring));
      if (check.ok) {
        return {
          principal: { kind: 'media_link', id: `${check.keyId}@${Math.floor(check.expiresAt.getTime() / 1000)}`, display: `signed media link (expires ${check.expiresAt.toISOString()})`, role: null },
          permissions: new Set(['media.fetch'] as const),
        };
      }
      if (check.reason === 'absent') return null;
      return { refused: { code: check.reason === 'expired' ? 'MEDIA_LINK_EXPIRED' : 'MEDIA_LINK_INVALID', reason: `media_link_${check.reason}`, message: check.message } };
    },
  };
}
