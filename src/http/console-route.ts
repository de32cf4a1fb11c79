/**
 * The operator console at /console: the static assets Vite built into console/dist, served by the
 * HTTP role on the gateway's own port. The assets are public (no PHI in them); every piece of
 * data comes from the admin API with the signed-in user's token.
 *
 * The files are read once at start into memory (a few hundred KiB), so only files that exist in
 * the build are ever served: no path from a request touches the file system.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Koa from 'koa';
import type { Logger } from '../core/logger.js';

export const CONSOLE_PATH = '/console';

/** console/dist of this package, found from this file whether it runs from src/ or a build. */
export function defaultConsoleDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'console', 'dist');
}

export interface ConsoleRouteOptions {
  /** The built assets (console/dist). */
  dir: string;
  logger: Logger;
  /** Signed-in sessions end after this many idle minutes (the console forgets the token). */
  sessionIdleMinutes: number;
  /** Sign-in at an OpenID provider (OIDC_ISSUER): the console's public client and the API's audience as resource. */
  oidc?: { issuer: string; clientId: string; resource?: string; scope: string };
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  /** Vite names files under assets/ by content hash: cache them for good. */
  immutable: boolean;
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

// The console loads only its own scripts and styles and talks only to this origin (and to the
// OpenID provider, for discovery and the code exchange, when sign-in there is configured).
const contentSecurityPolicy = (connect: readonly string[]) => [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  `connect-src ${["'self'", ...connect].join(' ')}`,
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'",
];

async function loadAssets(dir: string): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const full = path.join(e.parentPath, e.name);
    const rel = path.relative(dir, full).split(path.sep).join('/');
    const type = contentTypes[path.extname(e.name).toLowerCase()];
    if (type === undefined) continue;
    const body = await readFile(full);
    assets.set(rel, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`, immutable: rel.startsWith('assets/') });
  }
  return assets;
}

/** The message shown at /console when the assets were never built (e.g. installed with --ignore-scripts). */
export const consoleNotBuilt = 'The console has not been built: run `npm run build:console` (npm install and npm ci run it through the prepare script), then restart.';

export async function createConsoleMiddleware(o: ConsoleRouteOptions): Promise<{ middleware: Koa.Middleware; built: boolean }> {
  const built = existsSync(path.join(o.dir, 'index.html'));
  const assets = built ? await loadAssets(o.dir) : new Map<string, Asset>();
  if (!built) o.logger.warn({ dir: o.dir }, consoleNotBuilt);
  const config = Buffer.from(JSON.stringify({ sessionIdleMinutes: o.sessionIdleMinutes, ...(o.oidc && { oidc: o.oidc }) }));
  const csp = contentSecurityPolicy(o.oidc ? [new URL(o.oidc.issuer).origin] : []).join('; ');

  const middleware: Koa.Middleware = async (ctx, next) => {
    if (ctx.path !== CONSOLE_PATH && !ctx.path.startsWith(`${CONSOLE_PATH}/`)) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      return;
    }
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    const rel = ctx.path.slice(CONSOLE_PATH.length + 1);
    if (rel === 'config.json') {
      ctx.set('Cache-Control', 'no-store');
      ctx.type = 'application/json';
      ctx.body = config;
      return;
    }
    if (!built) {
      ctx.status = 503;
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = `${consoleNotBuilt}\n`;
      return;
    }
    // A path with no file extension is a page of the console: its single HTML document.
    const asset = assets.get(rel) ?? (path.extname(rel) === '' ? assets.get('index.html') : undefined);
    if (!asset) {
      ctx.status = 404;
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = 'not found\n';
      return;
    }
    ctx.set('ETag', asset.etag);
    ctx.set('Cache-Control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    if (asset.type.startsWith('text/html')) {
      ctx.set('Content-Security-Policy', csp);
      ctx.set('X-Frame-Options', 'DENY');
    }
    if (ctx.get('If-None-Match') === asset.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = asset.type;
    ctx.body = asset.body;
  };
  return { middleware, built };
}
