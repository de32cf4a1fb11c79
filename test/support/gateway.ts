/** Starts a whole gateway in-process for integration tests, on port 0 with a unique queue prefix. */
import type { Authenticator } from '../../src/http/access-control.js';
import type { OidcOptions } from '../../src/http/oidc-authenticator.js';
import type { OutboundStatusListener } from '../../src/core/outbound.js';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSwitchboard, type StartedSwitchboard, type Switchboard } from '../../src/app.js';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import { createLogger } from '../../src/core/logger.js';
import { TEST_APP_SECRET, TEST_VERIFY_TOKEN } from './whatsapp-webhook.js';
import { uniquePrefix } from './services.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface TestGateway {
  url: string;
  adminToken: string;
  /** The gateway's DATA_DIR (media files under media/). */
  dataDir: string;
  app: Switchboard;
  started: StartedSwitchboard;
  admin(pathAndQuery: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

export async function startGateway(o: {
  databaseUrl: string;
  redisUrl: string | null;
  fhirBaseUrl: string;
  channelsDir?: string;
  queuePrefix?: string;
  logStream?: NodeJS.WritableStream;
  sweepIntervalMs?: number;
  outboxGraceMs?: number;
  /** Extra environment for `${VAR}` interpolation in channel files (e.g. LAB_MLLP_URL). */
  env?: Record<string, string>;
  /** ENCRYPTION_KEYS (default: a keyring generated into the gateway's temporary DATA_DIR). */
  encryptionKeys?: string;
  /** Further credentials (e.g. API tokens of each role). */
  authenticators?: readonly Authenticator[];
  authThrottle?: { limit: number; windowMs: number; lockoutMs: number };
  trustProxy?: boolean;
  oidc?: OidcOptions;
  /** MEDIA_LINK_TTL in seconds. */
  mediaLinkTtlSeconds?: number;
  /** How often the gateway re-reads the encryption key table (default 5 s). */
  keyRefreshMs?: number;
  consoleSignIn?: { clientId: string; scope: string; resource?: string | null };
  outboundStatusListener?: OutboundStatusListener;
}): Promise<TestGateway> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-gw-'));
  const adminToken = `test-admin-token-${uniquePrefix()}`;
  const app = createSwitchboard({
    role: 'all',
    port: 0,
    host: '127.0.0.1',
    dataDir,
    channelsDir: o.channelsDir ?? path.join(repoRoot, 'channels'),
    databaseUrl: o.databaseUrl,
    redisUrl: o.redisUrl ?? undefined,
    queuePrefix: o.queuePrefix ?? uniquePrefix(),
    env: { WHATSAPP_APP_SECRET: TEST_APP_SECRET, WHATSAPP_VERIFY_TOKEN: TEST_VERIFY_TOKEN, ...o.env },
    fhirBaseUrl: o.fhirBaseUrl,
    fhirSandboxPort: 0,
    adminToken,
    ...(o.authenticators && { authenticators: o.authenticators }),
    ...(o.authThrottle && { authThrottle: o.authThrottle }),
    ...(o.trustProxy && { trustProxy: true }),
    ...(o.oidc && { oidc: o.oidc }),
    ...(o.mediaLinkTtlSeconds !== undefined && { mediaLinkTtlSeconds: o.mediaLinkTtlSeconds }),
    ...(o.keyRefreshMs !== undefined && { keyRefreshMs: o.keyRefreshMs }),
    ...(o.consoleSignIn && { consoleSignIn: o.consoleSignIn }),
    ...(o.outboundStatusListener && { outboundStatusListener: o.outboundStatusListener }),
    encryptionKeys: o.encryptionKeys,
    registry: createConnectorRegistry(),
    logger: createLogger({ level: 'info', ...(o.logStream ? { destination: o.logStream } : { level: 'silent' }) }),
    shutdownTimeoutMs: 5000,
    jobLockMs: 5000,
    queueDurability: 'strict',
    outboxGraceMs: o.outboxGraceMs ?? 0,
    sweepIntervalMs: o.sweepIntervalMs ?? 60_000,
  });
  let started: StartedSwitchboard;
  try {
    started = await app.start();
  } catch (err) {
    await app.stop();
    throw err;
  }
  const url = `http://127.0.0.1:${started.port}`;
  return {
    url,
    adminToken,
    dataDir,
    app,
    started,
    admin: (p, init = {}) => fetch(`${url}${p}`, { ...init, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', ...(init.headers ?? {}) } }),
    stop: () => app.stop(),
  };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
