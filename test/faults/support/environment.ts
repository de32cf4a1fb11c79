/**
 * Everything a fault scenario runs against, started by the suite itself on loopback: a
 * restartable redis-server (or a three-node Redis Cluster), a restartable PostgreSQL, the real FHIR sandbox (in this process)
 * behind a body-aware fault proxy, a channels dir (a copy of the shipped channel with short retry
 * and circuit settings and a mapping that throws on a poison marker), and the gateway as an
 * `http` process plus `worker` processes.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import YAML from 'yaml';
import { startFhirSandbox, type FhirSandbox } from '../../../src/sandbox/fhir-sandbox.js';
import { TEST_APP_SECRET, TEST_VERIFY_TOKEN } from '../../support/whatsapp-webhook.js';
import { startFaultProxy, type FaultProxy } from '../../support/fault-proxy.js';
import { GatewayRoleProcess, repoRoot } from './gateway-role.js';
import { POISON_MAPPING_MARKER } from './load-generator.js';
import { PostgresServer } from './postgres-server.js';
import { createKeyringProvider, parseKeyring } from '../../../src/crypto/keyring.js';
import { openEncryptingCodec, type EncryptingCodec } from '../../../src/store/encrypting-codec.js';
import { indexKinds } from '../../../src/store/message-store.js';
import { RedisServer } from './redis-server.js';
import { RedisClusterServers } from './redis-cluster.js';

export const CHANNEL_ID = 'whatsapp-to-ehr';
export const DESTINATION = 'ehr';
export const IDENTIFIER_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';
export const ADMIN_TOKEN = 'fault-suite-admin-token-0123456789';
/** Short lock: a killed worker's active jobs are recovered in seconds (about twice this). */
export const JOB_LOCK_MS = 3000;

/** Retry and circuit settings of the suite's channel copy: short, so a scenario settles in seconds. */
export const SUITE_RETRY = { attempts: 8, initial_delay_ms: 200, max_delay_ms: 2000, max_age_ms: 3_600_000 };
export const SUITE_CIRCUIT = { enabled: true, failure_threshold: 5, open_ms: 1000, max_open_ms: 4000 };

export interface FaultEnvironment {
  tmp: string;
  redis: RedisServer | undefined;
  redisCluster: RedisClusterServers | undefined;
  postgres: PostgresServer;
  fhir: FhirSandbox;
  proxy: FaultProxy;
  channelsDir: string;
  /** Keep the gateway logs after close (a scenario failed); returns where they are kept. */
  keepLogs(): string;
  close(): Promise<void>;
}

/**
 * The shipped channel, with the suite's retry/circuit settings, and the shipped mapping wrapped
 * so that a message whose text carries the poison marker makes it throw (JSONata `$error`).
 */
async function writeChannels(dir: string): Promise<string> {
  const channels = path.join(dir, 'channels');
  const mappings = path.join(dir, 'mappings');
  await mkdir(channels, { recursive: true });
  await mkdir(mappings, { recursive: true });
  const doc = YAML.parse(await readFile(path.join(repoRoot, 'channels', `${CHANNEL_ID}.yaml`), 'utf8')) as {
    destinations: { name: string; mapping: string; retry?: unknown; circuit_breaker?: unknown }[];
  };
  const dest = doc.destinations.find((d) => d.name === DESTINATION);
  if (!dest) throw new Error(`the shipped channel has no destination "${DESTINATION}"`);
  dest.retry = SUITE_RETRY;
  dest.circuit_breaker = SUITE_CIRCUIT;
  const mappingName = path.basename(dest.mapping);
  await writeFile(path.join(channels, `${CHANNEL_ID}.yaml`), YAML.stringify(doc));
  const original = await readFile(path.join(repoRoot, 'mappings', mappingName), 'utf8');
  const poisoned = `/* Fault suite: the shipped mapping, made to throw on a poison marker. */
(
  $contains($string($.text), '${POISON_MAPPING_MARKER}')
    ? $error('fault suite: poison marker in the message')
    : (
${original}
      )
)
`;
  await writeFile(path.join(mappings, mappingName), poisoned);
  return channels;
}

export async function startEnvironment(o: { redis: boolean; redisCluster?: boolean }): Promise<FaultEnvironment> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'switchboard-faults-'));
  // As root, PostgreSQL runs as user 'postgres', which must be able to enter these directories.
  await chmod(tmp, 0o755);
  const cleanups: (() => Promise<void>)[] = [];
  const keptLogs = path.join(os.tmpdir(), `${path.basename(tmp)}-logs`);
  let keep = false;
  const close = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    if (keep) await rename(path.join(tmp, 'logs'), keptLogs).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  };
  const keepLogs = () => {
    keep = true;
    return keptLogs;
  };
  try {
    const [postgres, redis, redisCluster, fhir] = await Promise.all([
      PostgresServer.start(path.join(tmp, 'postgres')),
      o.redis ? RedisServer.start(path.join(tmp, 'redis')) : Promise.resolve(undefined),
      o.redisCluster === true ? RedisClusterServers.start(path.join(tmp, 'redis-cluster')) : Promise.resolve(undefined),
      startFhirSandbox({ port: 0, seed: true }),
    ]);
    cleanups.push(() => postgres.stop());
    if (redis) cleanups.push(() => redis.stop('SIGTERM'));
    if (redisCluster) cleanups.push(() => redisCluster.stop());
    cleanups.push(() => fhir.close());
    const proxy = await startFaultProxy(fhir.baseUrl, { responseHeaders: { 'content-type': 'application/fhir+json' }, freshConnections: true });
    cleanups.push(() => proxy.close());
    const channelsDir = await writeChannels(tmp);
    return { tmp, redis, redisCluster, postgres, fhir, proxy, channelsDir, keepLogs, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export type QueueKind = 'redis' | 'redis-cluster' | 'postgres';

export interface Deployment {
  name: string;
  queue: QueueKind;
  databaseUrl: string;
  queuePrefix: string;
  http: GatewayRoleProcess;
  workers: GatewayRoleProcess[];
  /** The suite's own connection to the store, for waiting until quiet and for diagnostics. */
  db: pg.Pool;
  /** The store keeps source ids only as keyed blind indexes: the index of a wamid, for the suite's own queries. */
  sourceIndex(wamid: string): Buffer;
  webhookUrl(): string;
  admin(pathAndQuery: string): Promise<Response>;
  logDir: string;
  close(): Promise<void>;
}

/** A fresh database and queue prefix, an http process and `workers` worker processes. */
export async function deploy(
  env: FaultEnvironment,
  o: { name: string; queue: QueueKind; workers: number; /** Another channels directory (default the suite's). */ channelsDir?: string; /** More environment for the gateway processes. */ env?: Record<string, string> },
): Promise<Deployment> {
  const suffix = randomBytes(4).toString('hex');
  const databaseUrl = await env.postgres.createDatabase(`faults_${o.name.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${suffix}`);
  const unique = `faults-${o.name.replace(/[^A-Za-z0-9_-]/g, '-')}-${suffix}`;
  // On a Redis Cluster the prefix carries a hash tag: every queue key in one slot.
  const queuePrefix = o.queue === 'redis-cluster' ? `{${unique}}` : unique;
  const logDir = path.join(env.tmp, 'logs', o.name);
  await mkdir(logDir, { recursive: true });
  const dataDir = path.join(env.tmp, 'data', o.name);
  await mkdir(dataDir, { recursive: true });
  const keyring = `faults:${randomBytes(32).toString('base64')}`;
  const gwEnv: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    QUEUE_PREFIX: queuePrefix,
    FHIR_BASE_URL: env.proxy.url,
    CHANNELS_DIR: o.channelsDir ?? env.channelsDir,
    DATA_DIR: dataDir,
    SWITCHBOARD_ENV: 'production',
    ENCRYPTION_KEYS: keyring,
    WHATSAPP_APP_SECRET: TEST_APP_SECRET,
    WHATSAPP_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
    ADMIN_TOKEN,
    JOB_LOCK_MS: String(JOB_LOCK_MS),
    SHUTDOWN_TIMEOUT_MS: '5000',
    REDIS_DURABILITY: 'strict',
    ...o.env,
  };
  if (o.queue === 'redis') {
    if (!env.redis) throw new Error('this environment has no Redis');
    gwEnv['REDIS_URL'] = env.redis.url;
  }
  if (o.queue === 'redis-cluster') {
    if (!env.redisCluster) throw new Error('this environment has no Redis Cluster');
    gwEnv['REDIS_CLUSTER_NODES'] = env.redisCluster.seeds;
  }
  const http = new GatewayRoleProcess(`${o.name}-http`, 'http', gwEnv, path.join(logDir, 'http.log'));
  const workers = Array.from({ length: o.workers }, (_, i) => new GatewayRoleProcess(`${o.name}-worker${i + 1}`, 'worker', gwEnv, path.join(logDir, `worker${i + 1}.log`)));
  const db = new pg.Pool({ connectionString: databaseUrl, max: 3, connectionTimeoutMillis: 3000 });
  db.on('error', () => undefined);
  let codec: EncryptingCodec | undefined;
  const close = async () => {
    await Promise.allSettled([http.close(), ...workers.map((w) => w.close())]);
    codec?.close();
    await db.end().catch(() => undefined);
  };
  try {
    // All at once, as an orchestrator would start them (migrations run under an advisory lock).
    await Promise.all([http.start(), ...workers.map((w) => w.start())]);
    // The same keyring as the gateway's, to compute blind indexes (the keys exist once it started).
    codec = await openEncryptingCodec(db, createKeyringProvider(parseKeyring(keyring, 'fault suite keyring'), 'fault suite keyring'));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    name: o.name,
    queue: o.queue,
    databaseUrl,
    queuePrefix,
    http,
    workers,
    db,
    sourceIndex: (wamid) => codec!.index(indexKinds.sourceId, wamid),
    logDir,
    webhookUrl: () => `${http.url}/webhooks/${CHANNEL_ID}`,
    admin: (p) => fetch(`${http.url}${p}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(15_000) }),
    close,
  };
}
