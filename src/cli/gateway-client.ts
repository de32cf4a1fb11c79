/**
 * How every client command (`dlq`, and later `tokens`, `audit`, ...) finds a running gateway and
 * talks to its admin API, the same way everywhere:
 *   gateway: --url, else SWITCHBOARD_URL, else http://127.0.0.1:$PORT, else http://127.0.0.1:8080
 *   token:   --token, else ADMIN_TOKEN, else the file DATA_DIR/admin-token (DATA_DIR default .data)
 * When the gateway cannot be reached the error says which address was tried, where it came from,
 * and how to point the command elsewhere.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CommandFailure } from './args.js';
import type { CliIo } from './io.js';

/** The options every client command accepts, for its parseArgs table. */
export const gatewayOptions = {
  url: { type: 'string' },
  token: { type: 'string' },
} as const;

/** The help lines for those options, for a command's usage text. */
export const gatewayOptionsUsage = `  --url <url>           gateway base URL (default: SWITCHBOARD_URL, else http://127.0.0.1:$PORT,
                        else http://127.0.0.1:8080)
  --token <token>       admin token (default: ADMIN_TOKEN, else the file DATA_DIR/admin-token)`;

export interface GatewayAddress {
  /** Base URL without a trailing slash. */
  base: string;
  /** Where it came from, for messages: "--url", "SWITCHBOARD_URL", "PORT=9000", "the default". */
  from: string;
}

export function gatewayAddress(io: Pick<CliIo, 'env'>, url?: string): GatewayAddress {
  const strip = (u: string) => u.replace(/\/+$/, '');
  if (url !== undefined && url !== '') return { base: strip(url), from: '--url' };
  const env = io.env['SWITCHBOARD_URL'];
  if (env !== undefined && env !== '') return { base: strip(env), from: 'SWITCHBOARD_URL' };
  const port = io.env['PORT'];
  if (port !== undefined && port !== '') return { base: `http://127.0.0.1:${port}`, from: `PORT=${port}` };
  return { base: 'http://127.0.0.1:8080', from: 'the default (no --url, SWITCHBOARD_URL or PORT)' };
}

export function adminToken(io: Pick<CliIo, 'env' | 'cwd'>, token?: string): string {
  if (token !== undefined && token !== '') return token;
  const env = io.env['ADMIN_TOKEN'];
  if (env !== undefined && env !== '') return env;
  const dataDir = io.env['DATA_DIR'] ?? '.data';
  const file = path.resolve(io.cwd, dataDir, 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw new CommandFailure(
    `no admin token: pass --token, set ADMIN_TOKEN, or run where ${path.join(dataDir, 'admin-token')} exists (set DATA_DIR to the gateway's data folder)`,
  );
}

/** The gateway could not be reached at all (no HTTP answer). */
export class GatewayUnreachable extends CommandFailure {
  override readonly name = 'GatewayUnreachable';
}

/** The gateway answered, but not with 2xx (the reason is its own). */
export class GatewayRefused extends CommandFailure {
  override readonly name = 'GatewayRefused';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface GatewayClient {
  readonly address: GatewayAddress;
  get(pathAndQuery: string): Promise<Response>;
  post(pathAndQuery: string, body: unknown): Promise<Response>;
  /** GET, then the JSON body; a non-2xx answer throws with the gateway's reason. */
  getJson(pathAndQuery: string, what: string): Promise<unknown>;
  postJson(pathAndQuery: string, body: unknown, what: string): Promise<unknown>;
}

function causeText(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused (nothing listens there)';
  if (cause?.code === 'ENOTFOUND') return 'host not found';
  if ((err as Error).name === 'TimeoutError') return 'no answer in time';
  return cause?.message ?? (err as Error).message;
}

/** The reason a gateway gave for a non-2xx answer (its JSON error message, else the text). */
export async function answerReason(r: Response): Promise<string> {
  const text = await r.text();
  try {
    const body = JSON.parse(text) as { error?: { message?: string; code?: string } };
    if (body.error?.message !== undefined) return body.error.message;
  } catch {
    /* not JSON: the text itself */
  }
  return text === '' ? r.statusText : text;
}

export function connectGateway(io: CliIo, options: { url?: string | undefined; token?: string | undefined }, timeoutMs = 60_000): GatewayClient {
  const address = gatewayAddress(io, options.url);
  const bearer = adminToken(io, options.token);
  const headers = { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' };
  const call = async (p: string, init: RequestInit): Promise<Response> => {
    const signal = io.signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([io.signal, AbortSignal.timeout(timeoutMs)]);
    try {
      return await fetch(`${address.base}${p}`, { ...init, headers, signal });
    } catch (err) {
      throw new GatewayUnreachable(
        `cannot reach the gateway at ${address.base} (from ${address.from}): ${causeText(err)}. ` +
          'Point at the running gateway with --url <url> or SWITCHBOARD_URL, or set PORT to the port it listens on.',
      );
    }
  };
  const json = async (r: Response, what: string): Promise<unknown> => {
    if (!r.ok) {
      const reason = await answerReason(r);
      throw new GatewayRefused(`${what}: HTTP ${r.status}: ${reason}${r.status === 401 ? ' (wrong admin token? pass --token or set ADMIN_TOKEN)' : ''}`, r.status);
    }
    const text = await r.text();
    return text === '' ? {} : (JSON.parse(text) as unknown);
  };
  const get = (p: string) => call(p, { method: 'GET' });
  const post = (p: string, body: unknown) => call(p, { method: 'POST', body: JSON.stringify(body) });
  return {
    address,
    get,
    post,
    getJson: async (p, what) => json(await get(p), what),
    postJson: async (p, body, what) => json(await post(p, body), what),
  };
}
