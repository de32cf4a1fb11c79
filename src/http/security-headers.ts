/**
 * Conventional security headers on every answer, errors and 404s included: no MIME sniffing, no
 * referrer, no framing, HSTS over TLS, and no caching of admin API answers. A route that sets its
 * own Content-Security-Policy (the console's HTML) or Cache-Control keeps it.
 */
import type Koa from 'koa';

/** For answers that are not the console's HTML: nothing may load from them, nobody may frame them. */
export const defaultContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'";
export const strictTransportSecurity = 'max-age=31536000; includeSubDomains';

export function securityHeaders(o: { tls: boolean }): Koa.Middleware {
  return async (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    // Behind a TLS-terminating proxy too (X-Forwarded-Proto: https, believed only with TRUST_PROXY).
    if (o.tls || ctx.secure) ctx.set('Strict-Transport-Security', strictTransportSecurity);
    try {
      await next();
    } finally {
      if (!ctx.response.get('Content-Security-Policy')) ctx.set('Content-Security-Policy', defaultContentSecurityPolicy);
      if (ctx.path === '/admin' || ctx.path.startsWith('/admin/')) ctx.set('Cache-Control', 'no-store');
    }
  };
}
