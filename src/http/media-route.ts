/**
 * GET /media/:key serves stored media (the URL put into FHIR Attachments). Authenticated with a
 * bearer credential with the media.fetch permission (MEDIA_TOKEN, an analyst or admin); every access
 * audited and logged by key and outcome only.
 */
import Router from '@koa/router';
import type { Logger } from '../core/logger.js';
import { MEDIA_KEY, type MediaStore } from '../media/media-store.js';
import { errorBody } from './webhook-route.js';
import type { AuditRecorder } from '../core/audit.js';
import { requestPrincipal } from './access-control.js';

export function createMediaRouter(deps: { store: MediaStore; logger: Logger; audit: AuditRecorder }): Router {
  const router = new Router();
  router.get('/media/:key', async (ctx) => {
    const principal = requestPrincipal(ctx);
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
