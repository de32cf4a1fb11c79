/**
 * The composition root: the one place that creates the store, queues, channels, workers and the
 * HTTP edge, and the one place that stops them in reverse order.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Router from '@koa/router';
import pg from 'pg';
import type { ConnectorRegistry } from './connectors/types.js';
import type { Logger } from './core/logger.js';
import { bootstrapPrincipal, createAdminRouter } from './http/admin-routes.js';
import { AuditStore } from './store/audit-store.js';
import { createAuditRouter } from './http/audit-routes.js';
import { CONSOLE_PATH, createConsoleMiddleware, defaultConsoleDir } from './http/console-route.js';
import { createMediaRouter } from './http/media-route.js';
import { mediaLinkAuthenticator } from './http/media-link-auth.js';
import { createMediaLinks } from './media/media-links.js';
import { apiTokenAuthenticator, identityOf, staticTokenAuthenticator, type Authenticator } from './http/access-control.js';
import { createTokenRouter } from './http/token-routes.js';
import { AuthThrottle } from './http/auth-throttle.js';
import { oidcAuthenticator, type OidcOptions } from './http/oidc-authenticator.js';
import { ApiTokenStore } from './store/api-token-store.js';
import { createFileMediaStore, removeMediaFile } from './media/media-store.js';
import { startHttpServer, type RunningHttpServer } from './http/http-server.js';
import { checkTlsFiles, type ListenerTimeouts, type ListenerTls } from './http/listener.js';
import { createWebhookMiddleware } from './http/webhook-route.js';
import { ChannelRuntime } from './channels/channel-runtime.js';
import type Koa from 'koa';
import { Pipeline } from './pipeline/pipeline.js';
import { createMetrics } from './core/metrics.js';
import { PollRunner } from './pipeline/poll-runner.js';
import type { RuntimeChannel } from './pipeline/runtime-channel.js';
import { assertClusterPrefix, createPostgresQueueBackend, createRedisBackend, createRedisClusterBackend, type QueueBackend, type RedisClusterConnection } from './queue/queue-backend.js';
import { startFhirSandbox } from './sandbox/fhir-sandbox.js';
import { startMllpSandbox, type MllpSandboxRole } from './sandbox/mllp-sandbox.js';
import { startGraphApiSandbox } from './sandbox/graph-api-sandbox.js';
import { gatewayProvided } from './mapping-tests/mapping-test-env.js';
import { devDefaults } from './config/env.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './store/embedded-postgres.js';
import { MessageStore } from './store/message-store.js';
import { OutboundStore } from './store/outbound-store.js';
import type { OutboundStatusListener } from './core/outbound.js';
import { OutboundStatusDispatch } from './pipeline/outbound-status-dispatch.js';
import { sourceStatusListener } from './pipeline/source-status-listener.js';
import { RetentionStore, startRetentionPruner } from './store/retention-store.js';
import { runMigrations } from './store/migrations.js';
import { openEncryptingCodec } from './store/encrypting-codec.js';
import { createPlaintextCodec } from './store/payload-codec.js';
import type { KeyProvider } from './crypto/key-provider.js';
import { resolveKeyring } from './crypto/keyring.js';

export type Role = 'all' | 'http' | 'worker';

export interface SwitchboardOptions {
  role: Role;
  port: number;
  host: string;
  dataDir: string;
  channelsDir: string;
  /** Unset: embedded PostgreSQL under dataDir. */
  databaseUrl?: string | undefined;
  /** As root only: where the embedded PostgreSQL's binaries (and, for a private dataDir, its cluster) are staged. */
  runtimeDir?: string | undefined;
  /** Unset (and no redisCluster): BullMQ's PostgreSQL backend on the store's database. */
  redisUrl?: string | undefined;
  /** A Redis Cluster's seed nodes (REDIS_CLUSTER_NODES) instead of one Redis; queuePrefix must carry a hash tag. */
  redisCluster?: RedisClusterConnection | undefined;
  queuePrefix: string;
  /** Environment for `${VAR}` interpolation in channel files (FHIR_BASE_URL is filled in when the sandbox runs). */
  env: Record<string, string | undefined>;
  /** Unset: the FHIR sandbox is started and FHIR_BASE_URL points at it. */
  fhirBaseUrl?: string | undefined;
  fhirSandboxPort: number;
  /** Base URL under which this gateway is reachable by destinations (media links). Unset: http://host:port. */
  publicBaseUrl?: string | undefined;
  /** Bearer token for GET /media/:key (the admin token is accepted too). */
  mediaToken?: string | undefined;
  /** Lifetime of signed media links in seconds (MEDIA_LINK_TTL, default 7 days); 0: plain URLs that need a bearer (MEDIA_TOKEN). */
  mediaLinkTtlSeconds?: number;
  /** How often the encryption key table is re-read (another process's `keys rotate`; default 5 s). */
  keyRefreshMs?: number;
  /** Retention runs in the worker role every this many ms (STORE_PRUNE_INTERVAL, default 1 hour); 0: never (cron `switchboard store prune`). */
  pruneIntervalMs?: number;
  /** AUDIT_RETENTION_YEARS (default 6): audit entries older than this many whole years go. */
  auditRetentionYears?: number;
  /** Unset: generated once and kept in dataDir/admin-token. */
  adminToken?: string | undefined;
  /** Bad credentials from one address: after `limit` within `windowMs`, 429 for `lockoutMs` (doubling, up to 15 min). Default 10 / 60 s / 60 s. */
  /** Single sign-on: bearer JWTs of this OpenID provider (OIDC_ISSUER, OIDC_AUDIENCE, OIDC_ROLE_CLAIM, OIDC_ROLE_MAP). */
  oidc?: OidcOptions;
  /** TRUST_PROXY: client addresses (audit, throttling) from X-Forwarded-For, as set by a reverse proxy. */
  trustProxy?: boolean;
  authThrottle?: { limit: number; windowMs: number; lockoutMs: number };
  /** Further credentials tried after ADMIN_TOKEN and MEDIA_TOKEN (named API tokens, OpenID Connect). */
  authenticators?: readonly Authenticator[];
  registry: ConnectorRegistry;
  logger: Logger;
  shutdownTimeoutMs: number;
  /** Worker job lock; a dead worker's jobs are recovered after about twice this. */
  jobLockMs: number;
  /** Outbox sweep: grace before re-enqueueing, and period. */
  outboxGraceMs?: number;
  sweepIntervalMs?: number;
  /** strict: refuse to start on a Redis that can lose jobs; warn: log loudly and go on. */
  queueDurability: 'strict' | 'warn';
  /** Hot reload of channel and mapping files (default on). */
  watch?: boolean;
  /** Key-encryption keys: `id:base64,...` newest first (ENCRYPTION_KEYS), or a file of them. */
  encryptionKeys?: string | undefined;
  encryptionKeysFile?: string | undefined;
  /** A KMS or Vault provider instead of the local keyring. */
  keyProvider?: KeyProvider | undefined;
  /** SWITCHBOARD_ENV=production: refuse to start without configured keys. */
  production?: boolean;
  /**
   * The bench's encryption-off comparison only: messages and media stored in plaintext. No
   * environment variable or channel file reaches it (src/main.ts never sets it).
   */
  plaintextStoreForBenchmark?: boolean;
  /** The operator console's built assets (default: console/dist of this package). */
  consoleDir?: string;
  /** Console sessions end after this many idle minutes (CONSOLE_SESSION_MINUTES, default 30). */
  consoleSessionMinutes?: number;
  /** HTTP header/request/keep-alive timeouts (HTTP_*_TIMEOUT_MS; defaults 10 s, 30 s, 65 s). */
  httpTimeouts?: ListenerTimeouts;
  /** HTTPS on the listener (TLS_CERT_FILE, TLS_KEY_FILE), reloaded when the files change. */
  tls?: ListenerTls | undefined;
  /** With `oidc`: the console signs in at the provider as this public client (authorization code + PKCE). */
  /** The console's client at the OpenID provider; `resource`: the resource indicator it sends (default the OIDC audience, null for none). */
  consoleSignIn?: { clientId: string; scope: string; resource?: string | null };
  /**
   * Told of each status of a message sent to a patient (sent, delivered, read, failed), in order,
   * once recorded (e.g. the write-back to the originating Communication). Default: recorded only.
   */
  outboundStatusListener?: OutboundStatusListener;
}

export class QueueDurabilityError extends Error {
  constructor(readonly problems: string[]) {
    super(`the queue backend can lose accepted messages:\n${problems.map((p) => `  - ${p}`).join('\n')}\n(set REDIS_DURABILITY=warn to start anyway)`);
    this.name = 'QueueDurabilityError';
  }
}

export interface StartedSwitchboard {
  port: number;
  /** Every HTTP route served, as `METHOD path` (each with a declared permission). */
  routes: readonly string[];
  /** False for the worker role, which serves only health and readiness. */
  webhooks: boolean;
  adminToken: string;
  adminTokenGenerated: boolean;
  /** Set when a development keyring was generated into DATA_DIR on this start. */
  keyringGenerated: string | undefined;
  fhirBaseUrl: string | undefined;
  fhirSandbox: boolean;
  /** Sandbox HL7 partners started because LAB_MLLP_URL / INSURER_MLLP_URL were unset. */
  mllpSandboxes: { role: MllpSandboxRole; url: string }[];
  /** The sandbox Graph API the zero-config run's reply channel sends to (nothing reaches WhatsApp). */
  graphSandbox: string | undefined;
  database: 'embedded' | 'external';
  /** The embedded PostgreSQL's data directory (undefined with DATABASE_URL). */
  databaseDirectory: string | undefined;
  queues: string;
  channels: readonly RuntimeChannel[];
  /** The live channel set (hot reload). */
  runtime: ChannelRuntime;
  /** The operator console: its path on this port, and whether its assets were built. Undefined for the worker role. */
  console: { path: string; built: boolean } | undefined;
}

export interface Switchboard {
  start(): Promise<StartedSwitchboard>;
  stop(): Promise<void>;
  /** For tests and the fault suite: the store and pipeline of a started instance. */
  readonly internals: { store: MessageStore | undefined; pipeline: Pipeline | undefined; audit: AuditStore | undefined; outbound: OutboundStore | undefined; pruner: { runOnce(): Promise<void> } | undefined };
}

async function adminTokenFrom(dataDir: string): Promise<{ token: string; generated: boolean }> {
  const file = path.resolve(dataDir, 'admin-token');
  if (existsSync(file)) return { token: (await readFile(file, 'utf8')).trim(), generated: false };
  await mkdir(path.resolve(dataDir), { recursive: true });
  const token = randomBytes(24).toString('base64url');
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  return { token, generated: true };
}

/** Connections of the message store's pool, per process (the queues' own are POSTGRES_QUEUE_POOL_MAX + 1). */
export const STORE_POOL_MAX = 20;

export function createSwitchboard(o: SwitchboardOptions): Switchboard {
  // Shutdown steps, run in reverse order of start; each logs one line when done.
  const stops: { step: string; run: () => Promise<void> }[] = [];
  const onStop = (step: string, run: () => Promise<void>): void => {
    stops.push({ step, run });
  };
  let stopping = false;
  let queueBackend: QueueBackend | undefined;
  const internals: Switchboard['internals'] = { store: undefined, pipeline: undefined, audit: undefined, outbound: undefined, pruner: undefined };
  const log = o.logger;

  async function start(): Promise<StartedSwitchboard> {
    // An unusable TLS_CERT_FILE / TLS_KEY_FILE, or queue keys a Redis Cluster would spread over
    // slots, stop the start before anything else runs.
    if (o.tls) await checkTlsFiles(o.tls);
    if (o.redisCluster) {
      if (o.redisUrl) throw new Error('both a Redis URL and Redis Cluster nodes were given: use one');
      assertClusterPrefix(o.queuePrefix);
    }
    // 1. FHIR: an external server, or the in-process sandbox.
    const env = { ...o.env };
    let fhirBaseUrl = o.fhirBaseUrl;
    let sandbox = false;
    if (fhirBaseUrl === undefined) {
      const fhir = await startFhirSandbox({ port: o.fhirSandboxPort, seed: true, logger: log.child({ component: 'fhir-sandbox' }) });
      onStop('FHIR sandbox closed', () => fhir.close());
      fhirBaseUrl = fhir.baseUrl;
      sandbox = true;
    }
    env['FHIR_BASE_URL'] = fhirBaseUrl;

    // Partner labs and insurers: real MLLP endpoints, or sandbox peers that answer real ACKs.
    const mllpSandboxes: { role: MllpSandboxRole; url: string }[] = [];
    for (const [role, variable] of [
      ['lab', 'LAB_MLLP_URL'],
      ['insurer', 'INSURER_MLLP_URL'],
    ] as const) {
      if (env[variable]) continue;
      if (o.role === 'http') {
        // The HTTP role never delivers: its channels need an address to build, not a peer.
        env[variable] = gatewayProvided[variable]?.value;
        continue;
      }
      const peer = await startMllpSandbox({ role, logger: log.child({ component: `mllp-sandbox-${role}` }) });
      onStop(`${role} MLLP sandbox closed`, () => peer.close());
      env[variable] = peer.url;
      mllpSandboxes.push({ role, url: peer.url });
    }

    // Replies to patients in the zero-config run: with the FHIR sandbox, the channels of
    // <channels>/sandbox/ run too (the care team's replies from the sandbox EHR to WhatsApp), and
    // without WHATSAPP_GRAPH_URL they are sent to the sandbox Graph API, which posts Meta's
    // status webhooks back to the inbound WhatsApp channel. Never with a real EHR.
    const sandboxChannelsDir = path.join(o.channelsDir, 'sandbox');
    const extraDirs = sandbox && existsSync(sandboxChannelsDir) ? [sandboxChannelsDir] : [];
    let graphSandbox: string | undefined;
    if (extraDirs.length > 0 && !env['WHATSAPP_GRAPH_URL']) {
      if (o.role === 'http') {
        env['WHATSAPP_GRAPH_URL'] = gatewayProvided['WHATSAPP_GRAPH_URL']?.value;
      } else {
        const graph = await startGraphApiSandbox({
          appSecret: env['WHATSAPP_APP_SECRET'] ?? devDefaults.WHATSAPP_APP_SECRET,
          webhookUrl: () => (publicBaseUrl === undefined ? undefined : `${publicBaseUrl}/webhooks/whatsapp-to-ehr`),
          logger: log.child({ component: 'graph-api-sandbox' }),
        });
        onStop('Graph API sandbox closed', () => graph.close());
        env['WHATSAPP_GRAPH_URL'] = graph.url;
        graphSandbox = graph.url;
      }
      env['WHATSAPP_ACCESS_TOKEN'] ||= gatewayProvided['WHATSAPP_ACCESS_TOKEN']?.value;
      // One secret for the sandbox Subscription's header, shared by the roles of this process.
      env['FHIR_SUBSCRIPTION_SECRET'] ||= randomBytes(32).toString('base64url');
      env['WHATSAPP_PHONE_NUMBER_ID'] ||= gatewayProvided['WHATSAPP_PHONE_NUMBER_ID']?.value;
    }

    // 2. Channels, before anything heavy starts: refuse to start on any invalid file (the error
    //    lists every problem with file:line:column).
    const runtime = new ChannelRuntime({ dir: o.channelsDir, extraDirs, registry: o.registry, env, logger: log });
    await runtime.load();
    onStop('channel file watcher closed', () => runtime.close());
    const channels = () => runtime.channels();

    // Key-encryption keys (before anything heavy starts: production refuses to start without them).
    let keyringGenerated: string | undefined;
    let provider = o.keyProvider;
    if (!provider) {
      const keyring = await resolveKeyring({ keys: o.encryptionKeys, keysFile: o.encryptionKeysFile, dataDir: o.dataDir, production: o.production === true });
      provider = keyring.provider;
      keyringGenerated = keyring.generatedFile;
      if (keyring.source === 'generated' || keyring.source === 'DATA_DIR') {
        log.warn({ alert: 'development_keyring', file: keyring.provider.description }, 'encryption keys are kept beside the data (DATA_DIR/encryption-keys): set ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE for real traffic');
      }
    }
    // 3. Database: external or embedded, then migrations.
    let databaseUrl = o.databaseUrl;
    let embedded: EmbeddedDatabase | undefined;
    if (databaseUrl === undefined) {
      embedded = await startEmbeddedPostgres(o.dataDir, log, o.runtimeDir);
      onStop('embedded PostgreSQL stopped', () => embedded!.stop());
      databaseUrl = embedded.url;
    }
    const pool = new pg.Pool({ connectionString: databaseUrl, max: STORE_POOL_MAX, connectionTimeoutMillis: 5000 });
    pool.on('error', (err) => {
      // While stopping, the database going away under an idle connection is expected.
      if (stopping) log.debug({ err: { message: err.message } }, 'idle database connection error while stopping');
      else log.warn({ err: { message: err.message } }, 'idle database connection error');
    });
    onStop('database pool closed', () => pool.end());
    const applied = await runMigrations(pool);
    if (applied.length > 0) log.info({ applied }, 'database migrations applied');
    // Encryption at rest: data keys in the database, wrapped by the key-encryption keys.
    const codec = await openEncryptingCodec(pool, provider, o.keyRefreshMs !== undefined ? { refreshMs: o.keyRefreshMs } : {});
    onStop('encryption keys released', async () => codec.close());
    const storeCodec = o.plaintextStoreForBenchmark === true ? createPlaintextCodec() : codec;
    const store = new MessageStore(pool, storeCodec);
    internals.store = store;
    const audit = new AuditStore(pool, codec);
    internals.audit = audit;
    const apiTokens = new ApiTokenStore(pool, audit);
    const indexed = await store.indexLegacyIdentifiers();
    if (indexed > 0) log.info({ rows: indexed }, 'identifiers of rows stored before encryption replaced by their blind index');

    // 4. Queues.
    const backend: QueueBackend = o.redisCluster
      ? createRedisClusterBackend(o.redisCluster, { prefix: o.queuePrefix, logger: log })
      : o.redisUrl
        ? createRedisBackend(o.redisUrl, { prefix: o.queuePrefix, logger: log })
        : createPostgresQueueBackend(databaseUrl, { schema: 'bullmq', logger: log });
    queueBackend = backend;
    onStop('queue connections closed', () => backend.close());
    const durability = await backend.durabilityProblems();
    if (durability.unverifiable) {
      log.warn({ alert: 'queue_durability_unverified' }, 'cannot read the Redis configuration (CONFIG disabled?): make sure maxmemory-policy is noeviction and appendonly is yes');
    } else if (durability.problems.length > 0) {
      if (o.queueDurability === 'strict') {
        throw new QueueDurabilityError(durability.problems);
      }
      log.error({ alert: 'queue_not_durable', problems: durability.problems }, 'the queue backend can lose accepted messages');
    }
    const metrics = createMetrics();
    // Media downloaded from chat platforms, content-addressed under DATA_DIR/media, served by URL.
    const mediaStore = createFileMediaStore(path.resolve(o.dataDir, 'media'), storeCodec);
    let publicBaseUrl = o.publicBaseUrl;
    // Attachment URLs are signed and expire (HMAC under the media link key), so destinations need no shared secret.
    const mediaLinkTtl = o.mediaLinkTtlSeconds ?? 7 * 24 * 3600;
    const mediaLinks = createMediaLinks({ keys: { current: () => codec.mediaLinkKey(), byId: (id) => codec.findMediaLinkKey(id) }, ttlSeconds: mediaLinkTtl });
    // Replies to patients: the ledger of sends, their statuses, the patients' conversations.
    const outbound = new OutboundStore(pool, storeCodec);
    internals.outbound = outbound;
    const statusDispatch = new OutboundStatusDispatch({ pool, store: outbound, listener: o.outboundStatusListener ?? sourceStatusListener(channels, log.child({ component: 'outbound-status' })), logger: log.child({ component: 'outbound-status' }) });
    const pipeline = new Pipeline({
      outbound,
      onOutboundActivity: () => statusDispatch.kick(),
      metrics,
      media: { store: mediaStore, mediaUrl: (key) => `${publicBaseUrl ?? ''}/media/${key}${mediaLinkTtl > 0 ? `?${mediaLinks.sign(key)}` : ''}` },
      backend,
      store,
      logger: log,
      channels,
      jobLockMs: o.jobLockMs,
      ...(o.outboxGraceMs !== undefined && { outboxGraceMs: o.outboxGraceMs }),
      ...(o.sweepIntervalMs !== undefined && { sweepIntervalMs: o.sweepIntervalMs }),
    });
    internals.pipeline = pipeline;
    onStop('workers drained and stopped', () => pipeline.stop(o.shutdownTimeoutMs));

    const runsWorkers = o.role !== 'http';
    if (runsWorkers) {
      pipeline.startWorkers();
      statusDispatch.start();
      onStop('outbound status dispatch stopped', () => statusDispatch.stop());
      await pipeline.sweep();
      pipeline.startSweeper();
      let pollers = new PollRunner({ pool, store, logger: log, enqueueIngest: (id) => pipeline.enqueueIngest(id), publicBaseUrl: () => publicBaseUrl });
      pollers.start(channels());
      runtime.onChange(async (next) => {
        await pipeline.syncWorkers();
        await pollers.stop();
        pollers = new PollRunner({ pool, store, logger: log, enqueueIngest: (id) => pipeline.enqueueIngest(id), publicBaseUrl: () => publicBaseUrl });
        pollers.start(next);
      });
      onStop('pollers stopped', () => pollers.stop());
      // Retention: expired partitions dropped on their own, one process at a time.
      const mediaDir = path.resolve(o.dataDir, 'media');
      const pruner = startRetentionPruner({
        retention: new RetentionStore(pool),
        audit,
        auditRetentionYears: o.auditRetentionYears ?? 6,
        removeMedia: (key) => removeMediaFile(mediaDir, key),
        logger: log.child({ component: 'retention' }),
        intervalMs: o.pruneIntervalMs ?? 3_600_000,
      });
      internals.pruner = pruner;
      onStop('retention pruner stopped', () => pruner.stop());
    }
    if (o.watch !== false) runtime.watch();

    // 5. HTTP edge.
    const token = o.adminToken ? { token: o.adminToken, generated: false } : await adminTokenFrom(o.dataDir);
    // The worker role serves only /healthz and /readyz (for probes); the others add webhooks and admin.
    const routers: Router[] = [];
    const middleware: Koa.Middleware[] = [];
    let consoleInfo: StartedSwitchboard['console'];
    if (o.role !== 'worker') {
      const operatorConsole = await createConsoleMiddleware({ dir: o.consoleDir ?? defaultConsoleDir(), logger: log, sessionIdleMinutes: o.consoleSessionMinutes ?? 30,
        ...(o.oidc && { oidc: { issuer: o.oidc.issuer, ...(o.consoleSignIn?.resource !== null && { resource: o.consoleSignIn?.resource ?? o.oidc.audience }), clientId: o.consoleSignIn?.clientId ?? 'switchboard-console', scope: o.consoleSignIn?.scope ?? 'openid' } }),
      });
      middleware.push(operatorConsole.middleware);
      consoleInfo = { path: `${CONSOLE_PATH}/`, built: operatorConsole.built };
      routers.push(
        createMediaRouter({
          store: mediaStore,
          logger: log,
          audit,
        }),
      );
      middleware.push(createWebhookMiddleware({ logger: log, channels, metrics, acceptEvent: (ch, e) => pipeline.acceptEvent(ch, e) }));
      routers.push(
        createAdminRouter({
          store,
          audit,
          channels,
          reloadStatus: () => runtime.status(),
          reload: () => runtime.reload(),
          enqueueDeliveries: (channelId, pending) => pipeline.enqueueDeliveries(channelId, pending),
          queueCounts: () => pipeline.counts(),
          destinations: () => pipeline.destinations(),
          pauseDestination: (channel, destination, reason, by) => pipeline.pauseForOperator(channel, destination, 'OPERATOR_PAUSE', reason, by),
          resumeDestination: (channel, destination, by) => pipeline.resumeDestination(channel, destination, by),
          allowOutboundResend: (deliveryId, generation) => outbound.allowResend(deliveryId, generation),
        }),
      );
      routers.push(createTokenRouter({ tokens: apiTokens }));
      routers.push(createAuditRouter({ trail: audit, audit }));
    }
    const http: RunningHttpServer = await startHttpServer({
      port: o.port,
      host: o.host,
      logger: log,
      routers,
      trustProxy: o.trustProxy === true,
      access: {
        audit,
        throttle: new AuthThrottle({ limit: 10, windowMs: 60_000, lockoutMs: 60_000, ...o.authThrottle, maxLockoutMs: 15 * 60_000 }),
        requestAuthenticators: [mediaLinkAuthenticator(mediaLinks)],
        authenticators: [
          staticTokenAuthenticator([
            { token: token.token, identity: identityOf(bootstrapPrincipal) },
            { token: o.mediaToken ?? '', identity: { principal: { kind: 'token', id: 'MEDIA_TOKEN', display: 'MEDIA_TOKEN', role: null }, permissions: new Set(['media.fetch']) } },
          ]),
          apiTokenAuthenticator(apiTokens),
          ...(o.oidc ? [oidcAuthenticator(o.oidc)] : []),
          ...(o.authenticators ?? []),
        ],
      },
      middleware,
      jwks: () => channels().flatMap((c) => c.destinations.flatMap((d) => d.publicJwks?.() ?? [])),
      ...(o.httpTimeouts && { timeouts: o.httpTimeouts }),
      tls: o.tls,
      metrics: async () => {
        // Sampled at scrape time: queue depths, dead letters, circuits of this process.
        metrics.queueJobs.reset();
        for (const [queue, counts] of Object.entries(await pipeline.counts())) {
          for (const [state, n] of Object.entries(counts)) metrics.queueJobs.set({ queue, state }, n);
        }
        metrics.deadLetters.reset();
        for (const d of await store.deadLetterCounts()) metrics.deadLetters.set({ channel: d.channelId, destination: d.destination }, d.count);
        metrics.circuitOpen.reset();
        for (const d of await pipeline.destinations()) {
          metrics.circuitOpen.set({ channel: d.channel, destination: d.destination }, d.circuit && d.circuit.state !== 'closed' ? 1 : 0);
        }
        return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
      },
      readiness: [
        { name: 'store', check: () => store.ping() },
        { name: 'queues', check: () => backend.ping() },
        ...(runsWorkers
          ? [
              {
                name: 'workers',
                check: async () => {
                  if (!pipeline.workersRunning()) throw new Error('workers are not running');
                },
              },
            ]
          : []),
      ],
    });
    publicBaseUrl ??= `${http.secure ? 'https' : 'http'}://${o.host === '0.0.0.0' ? '127.0.0.1' : o.host}:${http.port}`;
    // The HTTP edge stops first so no new work arrives while workers drain.
    onStop('HTTP server closed: no new webhooks', () => http.close());
    return {
      port: http.port,
      routes: http.routes,
      webhooks: o.role !== 'worker',
      adminToken: token.token,
      adminTokenGenerated: token.generated,
      keyringGenerated,
      fhirBaseUrl,
      fhirSandbox: sandbox,
      mllpSandboxes,
      graphSandbox,
      database: embedded ? 'embedded' : 'external',
      databaseDirectory: embedded?.directory,
      queues: backend.description,
      channels: channels(),
      runtime,
      console: consoleInfo,
    };
  }

  async function stop(): Promise<void> {
    // Each step gets a deadline: a dependency that is already gone (Redis, PostgreSQL) must not
    // keep the process from exiting.
    const stepDeadline = o.shutdownTimeoutMs + 5000;
    stopping = true;
    queueBackend?.beginShutdown();
    while (stops.length > 0) {
      const { step, run } = stops.pop()!;
      const started = Date.now();
      try {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((r) => {
          timer = setTimeout(() => r('timeout'), stepDeadline);
        });
        const result = await Promise.race([run().then(() => 'ok' as const), timedOut]);
        clearTimeout(timer);
        if (result === 'timeout') log.warn({ step, deadlineMs: stepDeadline }, `shutdown: ${step.split(/ (closed|stopped|drained|released)/)[0]} did not finish in time; moving on`);
        else log.info({ ms: Date.now() - started }, `shutdown: ${step}`);
      } catch (err) {
        log.warn({ step, err: { message: (err as Error).message } }, 'shutdown: error while stopping; moving on');
      }
    }
    log.info('stopped');
  }

  return { start, stop, internals };
}
