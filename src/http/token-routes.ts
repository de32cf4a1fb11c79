/**
 * Named API tokens over the admin API (permission tokens.manage): list, create (the secret is in
 * that one answer only), revoke. The store audits each change under the caller's principal.
 */
import Router from '@koa/router';
import { z } from 'zod';
import { SwitchboardError } from '../core/errors.js';
import { parseLifetime, roleSchema, tokenJson, tokenNameSchema, type ApiTokenStore } from '../store/api-token-store.js';
import { bad, jsonBody } from './admin-routes.js';
import { requestPrincipal } from './access-control.js';

const createBody = z
  .object({
    name: tokenNameSchema,
    role: roleSchema,
    expires: z
      .string()
      .refine((v) => parseLifetime(v) !== undefined, 'a lifetime such as 30m, 12h, 90d or 2w')
      .optional(),
  })
  .strict();


export function createTokenRouter(deps: { tokens: ApiTokenStore }): Router {
  const router = new Router({ prefix: '/admin' });
  router.get('/tokens', async (ctx) => {
    ctx.body = { items: (await deps.tokens.list()).map(tokenJson) };
  });
  router.post('/tokens', async (ctx) => {
    const body = await jsonBody(ctx, createBody);
    if (!body) return;
    try {
      const created = await deps.tokens.create(
        { name: body.name, role: body.role, lifetimeMs: body.expires === undefined ? undefined : parseLifetime(body.expires) },
        { principal: requestPrincipal(ctx), sourceAddress: ctx.ip },
      );
      ctx.status = 201;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { ...tokenJson(created.info), token: created.token };
    } catch (err) {
      if (err instanceof SwitchboardError && err.code === 'TOKEN_NAME_TAKEN') return bad(ctx, 409, err.code, err.message);
      throw err;
    }
  });
  router.post('/tokens/:name/revoke', async (ctx) => {
    try {
      ctx.body = tokenJson(await deps.tokens.revoke(ctx.params['name'] ?? '', { principal: requestPrincipal(ctx), sourceAddress: ctx.ip }));
    } catch (err) {
      if (err instanceof SwitchboardError && err.code === 'TOKEN_NOT_FOUND') return bad(ctx, 404, err.code, err.message);
      throw err;
    }
  });
  return router;
}
