/**
 * GET /media/:key serves stored media (the URL put into FHIR Attachments). Authenticated with a
 * bearer token (MEDIA_TOKEN, or the admin token), every access logged by key and outcome only.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Logger } from '../core/logger.js';
import { MEDIA_KEY, type MediaStore } from '../media/media-store.js';
import { errorBody } from './webhook-route.js';
import type { AuditRecorder } from '../core/audit.js';
import type { Principal } from '../core/principal.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** A bearer token GET /media accepts, and the principal it stands for in the audit trail. */
export interface MediaToken {
  token: string;
  principal: Principal;
}

export function createMediaRouter(deps: { store: MediaStore; tokens: readonly MediaToken[]; logger: Logger; audit: AuditRecorder }): Router {
  const router = new Router();
  const accepted = deps.tokens.filter((t) => t.token.length > 0).map((t) => ({ digest: digest(t.token), principal: t.principal }));
  router.get('/media/:key', async (ctx) => {
    const m = /^Bearer (.+)$/.exec(ctx.get('authorization'));
    const given = m?.[1] ? digest(m[1]) : undefined;
    const matched = given ? accepted.find((t) => timingSafeEqual(t.digest, given)) : undefined;
    const principal = (ctx.state as { principal?: Principal }).principal ?? matched?.principal;
    if (!given || !principal) {
      await deps.audit.record({ action: 'auth.failed', principal: null, outcome: 'failure', resources: [{ type: 'route', id: 'GET /media/:key' }], sourceAddress: ctx.ip });
      ctx.set('WWW-Authenticate', 'Bearer realm="switchboard-media"');
      ctx.status = given ? 403 : 401;
      ctx.type = 'application/json';
      ctx.body = errorBody(given ? 'FORBIDDEN' : 'UNAUTHENTICATED', 'media requires Authorization: Bearer <MEDIA_TOKEN>');
      deps.logger.warn({ audit: 'media_access', outcome: 'refused' }, 'media access refused');
      return;
    }
    const key = ctx.params['key'] ?? '';
    if (!MEDIA_KEY.test(key)) {
      ctx.status = 400;
      ctx.type = 'application/json';
      ctx.body = errorBody('KEY_INVALID', 'media keys are 64 hex digits');
      return;
    }
    const found = await deps.store.get(key);
    await deps.audit.record({ action: 'media.fetched', principal, outcome: found ? 'success' : 'failure', resources: [{ type: 'media', id: key }], sourceAddress: ctx.ip });
    deps.logger.info({ audit: 'media_access', key, outcome: found ? 'served' : 'not_found' }, 'media access');
    if (!found) {
      ctx.status = 404;
      ctx.type = 'application/json';
      ctx.body = errorBody('NOT_FOUND', 'no media with that key');
      return;
    }
    ctx.set('Cache-Control', 'private, no-store');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Content-Disposition', 'attachment');
    ctx.type = found.info.contentType;
    ctx.length = found.info.size;
    ctx.body = found.bytes;
  });
  return router;
}
