/**
 * Conventional security headers on every answer, errors and 404s included: no MIME sniffing, no
 * referrer, no framing, HSTS over TLS, and no caching of admin API answers. A route that sets its
 * own Content-Security-Policy (the console's HTML) or Cache-Control keeps it.
 */
import type Koa from 'koa';

/** For answers that are not the console's HTML: nothing may load from them, nobody may frame them. */
export const defaultContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'";
export const strictTransportSecurity = 'max-age=31536000; includeSubDomains';

/** The headers every answer carries (HSTS over TLS). */
function baseHeaders(secure: boolean): Record<string, string> {
  return {
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cross-Origin-Opener-Policy': 'same-origin',
    ...(secure && { 'Strict-Transport-Security': strictTransportSecurity }),
  };
}

export function securityHeaders(o: { tls: boolean }): Koa.Middleware {
  return async (ctx, next) => {
    // Behind a TLS-terminating proxy too (X-Forwarded-Proto: https, believed only with TRUST_PROXY).
    ctx.set(baseHeaders(o.tls || ctx.secure));
    try {
      await next();
    } finally {
      if (!ctx.response.get('Content-Security-Policy')) ctx.set('Content-Security-Policy', defaultContentSecurityPolicy);
      if (ctx.path === '/admin' || ctx.path.startsWith('/admin/')) ctx.set('Cache-Control', 'no-store');
    }
  };
}

/**
 * A whole answer, written straight to the socket, for the requests Node gives up on before the
 * app sees them (header or request timeout, a malformed request): the same headers as any other
 * answer, a reason in words, and the connection closed.
 */
export function rawAnswer(status: number, statusText: string, text: string, secure: boolean): string {
  const headers: Record<string, string> = {
    ...baseHeaders(secure),
    'Content-Security-Policy': defaultContentSecurityPolicy,
    'Cache-Control': 'no-store',
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    Connection: 'close',
  };
  return `HTTP/1.1 ${status} ${statusText}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${text}`;
}
