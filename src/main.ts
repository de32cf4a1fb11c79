/**
 * Entry point: `npm start`. Reads the environment, starts every part (embedded ones where nothing
 * is configured), prints where things are, and stops cleanly on SIGTERM/SIGINT.
 */
import path from 'node:path';
import { QueueDurabilityError, createSwitchboard } from './app.js';
import { ConfigError } from './core/errors.js';
import { createLogger } from './core/logger.js';
import { formatStartFailure } from './core/start-failure.js';
import { createConnectorRegistry } from './connectors/registry.js';
import { EnvError, effectiveEnv, parseEnv } from './config/env.js';
import { MissingKeyError } from './crypto/key-provider.js';
import { KeyringError } from './crypto/keyring.js';
import { parseRoleMap } from './http/oidc-authenticator.js';
import { ListenerConfigError } from './http/listener.js';
import { RedisClusterPrefixError } from './queue/queue-backend.js';

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = parseEnv(process.env);
  } catch (err) {
    process.stderr.write(`switchboard: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ level: cfg.LOG_LEVEL });
  const { env, defaulted } = effectiveEnv(process.env, cfg.SWITCHBOARD_ENV);
  const host = cfg.HOST ?? (defaulted.length > 0 ? '127.0.0.1' : '0.0.0.0');
  const app = createSwitchboard({
    role: cfg.SWITCHBOARD_ROLE,
    port: cfg.PORT,
    host,
    dataDir: cfg.DATA_DIR,
    channelsDir: cfg.CHANNELS_DIR,
    databaseUrl: cfg.DATABASE_URL,
    runtimeDir: cfg.SWITCHBOARD_RUNTIME_DIR,
    redisUrl: cfg.REDIS_URL,
    redisCluster: cfg.REDIS_CLUSTER_NODES,
    queuePrefix: cfg.QUEUE_PREFIX,
    env,
    fhirBaseUrl: cfg.FHIR_BASE_URL,
    fhirSandboxPort: cfg.FHIR_SANDBOX_PORT,
    adminToken: cfg.ADMIN_TOKEN,
    publicBaseUrl: cfg.PUBLIC_BASE_URL?.replace(/\/$/, ''),
    mediaToken: cfg.MEDIA_TOKEN,
    mediaLinkTtlSeconds: cfg.MEDIA_LINK_TTL,
    pruneIntervalMs: cfg.STORE_PRUNE_INTERVAL,
    auditRetentionYears: cfg.AUDIT_RETENTION_YEARS,
    encryptionKeys: cfg.ENCRYPTION_KEYS,
    encryptionKeysFile: cfg.ENCRYPTION_KEYS_FILE,
    production: cfg.SWITCHBOARD_ENV === 'production',
    consoleSessionMinutes: cfg.CONSOLE_SESSION_MINUTES,
    consoleSignIn: { clientId: cfg.OIDC_CONSOLE_CLIENT_ID, scope: cfg.OIDC_CONSOLE_SCOPE, ...(cfg.OIDC_CONSOLE_RESOURCE !== undefined && { resource: cfg.OIDC_CONSOLE_RESOURCE === 'none' ? null : cfg.OIDC_CONSOLE_RESOURCE }) },
    trustProxy: cfg.TRUST_PROXY,
    ...(cfg.OIDC_ISSUER !== undefined && {
      oidc: {
        issuer: cfg.OIDC_ISSUER,
        audience: cfg.OIDC_AUDIENCE!,
        roleClaim: cfg.OIDC_ROLE_CLAIM,
        roleMap: cfg.OIDC_ROLE_MAP === undefined ? undefined : parseRoleMap(cfg.OIDC_ROLE_MAP),
        ...(cfg.OIDC_ALGORITHMS !== undefined && { algorithms: cfg.OIDC_ALGORITHMS.split(',') }),
      },
    }),
    authThrottle: { limit: cfg.AUTH_FAILURE_LIMIT, windowMs: cfg.AUTH_FAILURE_WINDOW_SECONDS * 1000, lockoutMs: cfg.AUTH_LOCKOUT_SECONDS * 1000 },
    httpTimeouts: { headersMs: cfg.HTTP_HEADERS_TIMEOUT_MS, requestMs: cfg.HTTP_REQUEST_TIMEOUT_MS, keepAliveMs: cfg.HTTP_KEEP_ALIVE_TIMEOUT_MS },
    tls: cfg.TLS_CERT_FILE !== undefined && cfg.TLS_KEY_FILE !== undefined ? { certFile: cfg.TLS_CERT_FILE, keyFile: cfg.TLS_KEY_FILE, reloadIntervalMs: cfg.TLS_RELOAD_INTERVAL_MS } : undefined,
    registry: createConnectorRegistry(),
    logger,
    shutdownTimeoutMs: cfg.SHUTDOWN_TIMEOUT_MS,
    jobLockMs: cfg.JOB_LOCK_MS,
    queueDurability: cfg.REDIS_DURABILITY,
  });

  let started: Awaited<ReturnType<typeof app.start>> | undefined;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: draining in-flight work');
    // The logger writes synchronously (src/core/logger.ts), so "stopped" is out before exit.
    const exit = (code: number) => process.exit(code);
    app.stop().then(
      () => exit(0),
      () => exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Ctrl-C signals the whole process group, the embedded PostgreSQL included: it shuts down while
  // the workers drain, and a library connection without an error listener (BullMQ's LISTEN
  // client) can then throw. Only while stopping, and only a lost database connection, is that
  // expected; anything else still crashes as it should.
  process.on('uncaughtException', (err) => {
    const lostDatabase = /Connection terminated|terminating connection due to administrator command|ECONNRESET|ECONNREFUSED/.test(String(err.message));
    if (lostDatabase && (stopping || cfg.DATABASE_URL === undefined)) {
      // The embedded database only goes away when this process stops it or the process group
      // is signalled (SIGINT from a terminal arrives here too, at about the same time).
      logger.debug({ err: { message: err.message } }, 'database connection lost while stopping');
      shutdown('SIGINT');
      return;
    }
    // Before the gateway is up, a crash is a failed start: one line with the reason, no trace.
    if (started === undefined) {
      logger.debug({ err }, 'start-up failed');
      logger.flush(() => {
        process.stderr.write(formatStartFailure(err));
        process.exit(1);
      });
      return;
    }
    process.stderr.write(`switchboard: ${err.stack ?? String(err)}\n`);
    process.exit(1);
  });

  try {
    started = await app.start();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchboard: refusing to start: invalid channel configuration\n${err.message}\n`);
    } else if (err instanceof QueueDurabilityError) {
      process.stderr.write(`switchboard: refusing to start: ${err.message}\n`);
    } else if (err instanceof KeyringError || err instanceof MissingKeyError || err instanceof ListenerConfigError || err instanceof RedisClusterPrefixError) {
      process.stderr.write(`switchboard: refusing to start: ${err.message}\n`);
    } else if (err instanceof EnvError) {
      process.stderr.write(`switchboard: ${err.message}\n`);
    } else {
      logger.debug({ err }, 'start-up failed');
      process.stderr.write(formatStartFailure(err));
    }
    await app.stop().catch(() => undefined);
    process.exit(1);
  }

  const lines: string[] = ['', 'Switchboard is running.'];
  const base = `${cfg.TLS_CERT_FILE !== undefined ? 'https' : 'http'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${started.port}`;
  if (started.webhooks) {
    for (const c of started.channels) {
      if (c.source.path !== undefined) lines.push(`  webhook  ${c.id}: ${base}${c.source.path}  (GET verify, POST events)`);
      else lines.push(`  polling  ${c.id}`);
    }
    lines.push(`  health   ${base}/healthz   ready: ${base}/readyz   metrics: ${base}/metrics`);
    lines.push(`  admin    ${base}/admin/dead-letters  (Authorization: Bearer <ADMIN_TOKEN>)`);
    if (started.console) lines.push(`  console  ${base}${started.console.path}  (sign in with an API token${started.console.built ? '' : '; NOT BUILT: run npm run build:console'})`);
  } else {
    lines.push(`  role     worker (HTTP serves only ${base}/healthz, /readyz and /metrics)`);
  }
  lines.push(
    `  store    ${started.database === 'embedded' ? `embedded PostgreSQL in ${started.databaseDirectory ?? cfg.DATA_DIR} (its address and credentials: ${path.join(cfg.DATA_DIR, 'postgres-credentials.json')})` : 'DATABASE_URL'}`,
  );
  lines.push(`  queues   ${started.queues}`);
  lines.push(`  FHIR     ${started.fhirBaseUrl ?? '(none)'}${started.fhirSandbox ? '  (sandbox; demo Patient Jane Demo, +15551234567)' : ''}`);
  for (const m of started.mllpSandboxes) lines.push(`  HL7      ${m.role}: ${m.url}  (sandbox ${m.role} peer answering real ACKs)`);
  if (started.graphSandbox) lines.push(`  replies  care-team replies in the FHIR sandbox go to the SANDBOX Graph API ${started.graphSandbox} (nothing reaches WhatsApp); try: npm run sample -- --reply`);
  // The token itself is never printed: stdout often ends up in a log collector.
  if (started.adminTokenGenerated) lines.push(`  ADMIN_TOKEN generated and saved in ${path.join(cfg.DATA_DIR, 'admin-token')} (mode 600; for the console: cat ${path.join(cfg.DATA_DIR, 'admin-token')})`);
  else if (started.webhooks) {
    lines.push(`  token    admin token ${cfg.ADMIN_TOKEN !== undefined ? 'from ADMIN_TOKEN' : `in ${path.join(cfg.DATA_DIR, 'admin-token')} (npx switchboard dlq reads it there)`}`);
  }
  if (started.keyringGenerated) lines.push(`  WARNING: encryption keyring generated in ${started.keyringGenerated}; keep it safe (without it the data cannot be read) and set ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE for real traffic.`);
  if (defaulted.length > 0) {
    lines.push(`  WARNING: development defaults in use for ${defaulted.join(', ')}; set them (and SWITCHBOARD_ENV=production) for real traffic.`);
  }
  if (started.webhooks) {
    lines.push('', 'Try it: send a signed sample WhatsApp message and see the resulting FHIR Communication:');
    // The sample finds the admin token in DATA_DIR, like every client command.
    lines.push(`  PORT=${started.port}${cfg.DATA_DIR === '.data' ? '' : ` DATA_DIR=${cfg.DATA_DIR}`} npm run sample`);
  }
  lines.push('');
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(formatStartFailure(err));
  process.exit(1);
});
