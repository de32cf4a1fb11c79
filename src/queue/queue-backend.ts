/**
 * BullMQ on one of two backends: Redis when REDIS_URL (one server) or REDIS_CLUSTER_NODES (a Redis
 * Cluster) is set (production), otherwise BullMQ's PostgreSQL backend on the message store's
 * database (zero-config). Queue and Worker construction goes through here so the rest of the code
 * never knows which one it runs on.
 */
import {
  PostgresConnection,
  PostgresQueueBackend,
  Queue,
  Worker,
  withBackend,
  type BackendFactory,
  type JobsOptions,
  type PostgresConnectionOptions,
  type Processor,
  type WorkerOptions,
} from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from '../core/logger.js';

export type BackendKind = 'redis' | 'postgres';

export interface QueueHandle<T> {
  readonly name: string;
  add(jobName: string, data: T, opts: JobsOptions): Promise<void>;
  /** Several jobs in one round trip (Redis: one MULTI; PostgreSQL: one transaction). */
  addBulk(jobs: readonly { name: string; data: T; opts: JobsOptions }[]): Promise<void>;
  counts(): Promise<Record<string, number>>;
  /**
   * Removes the job with this id if BullMQ has failed it (e.g. "stalled more than allowable
   * limit" after its worker died twice), so that adding it again runs it. Returns whether it did.
   */
  removeIfFailed(jobId: string): Promise<boolean>;
  /** Pauses the queue for every worker process (the pause is stored in the backend). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  isPaused(): Promise<boolean>;
  close(): Promise<void>;
}

export interface WorkerHandle {
  readonly name: string;
  isRunning(): boolean;
  /** Holds the whole queue (every worker process) for `ms`; pair with `throw rateLimitError()`. */
  rateLimit(ms: number): Promise<void>;
  close(force?: boolean): Promise<void>;
}

export interface WorkerSettings {
  concurrency: number;
  /**
   * Job lock duration: a job whose worker died is taken over after at most about twice this
   * (lock expiry plus the stalled-job check interval). Lower recovers faster; too low makes busy
   * workers look dead. BullMQ's default is 30 000 ms.
   */
  lockDurationMs: number;
  /** Delay before the next attempt; receives attempts made so far and the thrown error. */
  backoff: (attemptsMade: number, err: Error | undefined) => number;
  /** Called when the processor throws (before BullMQ schedules the retry). */
  onFailed?: (jobId: string | undefined, err: Error) => void;
}

export interface QueueBackend {
  readonly kind: BackendKind;
  /** Safe to print: no credentials. */
  readonly description: string;
  queue<T>(name: string): QueueHandle<T>;
  worker<T>(name: string, processor: Processor<T>, settings: WorkerSettings): WorkerHandle;
  ping(): Promise<void>;
  /**
   * Durability settings that would lose jobs (Redis: eviction policy, persistence). Empty when
   * all is well; `unverifiable` when the server does not let us read its configuration.
   */
  durabilityProblems(): Promise<{ problems: string[]; unverifiable: boolean }>;
  /**
   * The process is stopping: connection errors of workers (a database or Redis going away while
   * they drain) are expected from now on and logged at debug, not as warnings.
   */
  beginShutdown(): void;
  close(): Promise<void>;
}

const BACKOFF_TYPE = 'switchboard';

/** Completed jobs are short-lived (the store keeps the outcome); failed ones are kept a week. */
export const defaultJobOptions: JobsOptions = {
  removeOnComplete: { count: 1000 },
  removeOnFail: { age: 7 * 24 * 3600 },
};

/** Thrown after `rateLimit()`: the job goes back to waiting without spending an attempt. */
export function rateLimitError(): Error {
  return Worker.RateLimitError();
}

export function backoffJobOption(): JobsOptions['backoff'] {
  return { type: BACKOFF_TYPE };
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable url)';
  }
}

function wrapQueue<T>(q: Queue): QueueHandle<T> {
  return {
    name: q.name,
    async add(jobName, data, opts) {
      await q.add(jobName, data, { ...defaultJobOptions, ...opts });
    },
    async addBulk(jobs) {
      if (jobs.length === 1) await q.add(jobs[0]!.name, jobs[0]!.data, { ...defaultJobOptions, ...jobs[0]!.opts });
      else if (jobs.length > 1) await q.addBulk(jobs.map((j) => ({ name: j.name, data: j.data, opts: { ...defaultJobOptions, ...j.opts } })));
    },
    async counts() {
      return q.getJobCounts();
    },
    async removeIfFailed(jobId) {
      const job = await q.getJob(jobId);
      if (!job || !(await job.isFailed())) return false;
      await job.remove();
      return true;
    },
    pause: () => q.pause(),
    resume: () => q.resume(),
    isPaused: () => q.isPaused(),
    close: () => q.close(),
  };
}

function workerOptionsFor(settings: WorkerSettings): Omit<WorkerOptions, 'connection'> {
  return {
    concurrency: settings.concurrency,
    lockDuration: settings.lockDurationMs,
    stalledInterval: settings.lockDurationMs,
    // A job whose worker died is taken over; after three such deaths BullMQ fails it, and the
    // outbox sweeper revives it while the store still says the work is pending.
    maxStalledCount: 3,
    settings: {
      backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) => settings.backoff(attemptsMade, err),
    },
  };
}

function wrapWorker(w: Worker, settings: WorkerSettings, logger: Logger, stopping: () => boolean): WorkerHandle {
  w.on('failed', (job, err) => settings.onFailed?.(job?.id, err));
  // An 'error' listener is required: without it an emitted error would crash the process.
  w.on('error', (err) => {
    if (stopping() || w.closing) logger.debug({ queue: w.name, err: { message: err.message } }, 'queue worker error while stopping');
    else logger.warn({ queue: w.name, err: { message: err.message } }, 'queue worker error');
  });
  return {
    name: w.name,
    isRunning: () => w.isRunning(),
    rateLimit: (ms) => w.rateLimit(ms),
    close: (force) => w.close(force),
  };
}

/** The Redis a Redis backend runs on: one server, or the seed nodes of a Redis Cluster. */
export interface RedisClusterConnection {
  /** Seed nodes; the client discovers the others (and every primary) from them. */
  nodes: readonly { host: string; port: number }[];
  username?: string | undefined;
  password?: string | undefined;
  /** rediss: TLS to every node. */
  tls: boolean;
}

/** Refused at start: on a Redis Cluster the queue keys would spread over slots (CROSSSLOT). */
export class RedisClusterPrefixError extends Error {
  constructor(prefix: string) {
    super(
      `QUEUE_PREFIX "${prefix}" has no hash tag: on a Redis Cluster every key of a queue must hash to one slot; put the part that names this deployment in braces, e.g. QUEUE_PREFIX={${prefix.replace(/[{}]/g, '') || 'switchboard'}}`,
    );
    this.name = 'RedisClusterPrefixError';
  }
}

/**
 * The hash tag Redis Cluster would hash the prefix's keys by: the text between the first `{` and
 * the first `}` after it, when not empty (Redis's own rule). Undefined: no tag, the whole key is
 * hashed and one queue's keys land in different slots.
 */
export function hashTagOf(prefix: string): string | undefined {
  const open = prefix.indexOf('{');
  if (open < 0) return undefined;
  const close = prefix.indexOf('}', open + 1);
  return close > open + 1 ? prefix.slice(open + 1, close) : undefined;
}

/** Throws RedisClusterPrefixError unless the prefix puts every queue key into one slot. */
export function assertClusterPrefix(prefix: string): void {
  if (hashTagOf(prefix) === undefined) throw new RedisClusterPrefixError(prefix);
}

type RedisClient = Redis | Cluster;

/** What differs between one Redis and a cluster; the backend on top is the same. */
interface RedisConnections {
  description: string;
  /** Producers fail fast so the webhook can answer 503 instead of hanging on a dead Redis. */
  producer: RedisClient;
  /** A new connection for one worker: it must never give up on a command (BullMQ requires maxRetriesPerRequest null). */
  workerConnection(): RedisClient;
  /** The servers whose configuration decides durability: the one Redis, or every primary. */
  servers(): { name: string; client: Redis }[];
}

async function whenReady(client: RedisClient, ms: number): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('Redis not ready')), ms);
    client.once('ready', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** The durability settings of one server, in words; `undefined` when CONFIG GET is refused. */
async function serverDurability(client: Redis, name: string | undefined): Promise<string[] | undefined> {
  const read = async (key: string) => {
    const r = (await client.call('CONFIG', 'GET', key)) as string[];
    return r[1] ?? '';
  };
  let policy: string;
  let appendonly: string;
  let appendfsync: string;
  try {
    policy = await read('maxmemory-policy');
    appendonly = await read('appendonly');
    appendfsync = await read('appendfsync');
  } catch {
    return undefined;
  }
  const at = name === undefined ? '' : `${name}: `;
  const problems: string[] = [];
  if (policy !== 'noeviction') {
    problems.push(`${at}maxmemory-policy is "${policy}": Redis may evict queued jobs under memory pressure; set maxmemory-policy noeviction`);
  }
  if (appendonly !== 'yes') {
    problems.push(`${at}appendonly is "no": a Redis crash loses every queued job since the last snapshot; set appendonly yes (appendfsync everysec)`);
  } else if (appendfsync === 'no') {
    problems.push(`${at}appendfsync is "no": the OS decides when jobs reach disk; set appendfsync everysec`);
  }
  return problems;
}

function redisBackendOn(c: RedisConnections, opts: { prefix: string; logger: Logger }): QueueBackend {
  let stopping = false;
  c.producer.on('error', (err: Error) => opts.logger.debug({ err: { message: err.message } }, 'redis producer connection error'));
  const workerConnections: RedisClient[] = [];
  const queues: QueueHandle<unknown>[] = [];
  return {
    kind: 'redis',
    description: c.description,
    queue<T>(name: string) {
      const h = wrapQueue<T>(new Queue(name, { connection: c.producer, prefix: opts.prefix }));
      queues.push(h as QueueHandle<unknown>);
      return h;
    },
    worker<T>(name: string, processor: Processor<T>, settings: WorkerSettings) {
      const conn = c.workerConnection();
      conn.on('error', (err: Error) => opts.logger.debug({ err: { message: err.message } }, 'redis worker connection error'));
      workerConnections.push(conn);
      return wrapWorker(new Worker<T>(name, processor, { ...workerOptionsFor(settings), connection: conn, prefix: opts.prefix }) as Worker, settings, opts.logger, () => stopping);
    },
    async ping() {
      const servers = c.servers();
      if (servers.length === 0) throw new Error('no Redis primary connected');
      await Promise.all(servers.map((s) => s.client.ping()));
    },
    async durabilityProblems() {
      try {
        await whenReady(c.producer, 10_000);
      } catch {
        return { problems: [], unverifiable: true };
      }
      const servers = c.servers();
      const named = servers.length > 1;
      const problems: string[] = [];
      let unverifiable = servers.length === 0;
      for (const s of servers) {
        const found = await serverDurability(s.client, named ? s.name : undefined);
        if (found === undefined) unverifiable = true;
        else problems.push(...found);
      }
      return { problems, unverifiable };
    },
    beginShutdown() {
      stopping = true;
    },
    async close() {
      await Promise.allSettled(queues.map((q) => q.close()));
      for (const w of workerConnections) w.disconnect();
      c.producer.disconnect();
    },
  };
}

export function createRedisBackend(url: string, opts: { prefix: string; logger: Logger }): QueueBackend {
  const producer = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
  return redisBackendOn(
    {
      description: `Redis ${redact(url)} (prefix ${opts.prefix})`,
      producer,
      workerConnection: () => new Redis(url, { maxRetriesPerRequest: null }),
      servers: () => [{ name: redact(url), client: producer }],
    },
    opts,
  );
}

/**
 * BullMQ on a Redis Cluster. Every key of a queue must live in one slot, so the prefix must carry
 * a hash tag (`{switchboard}`): all queues of this deployment then share one slot, hence one
 * primary at a time; the cluster brings failover to a replica and room for other deployments,
 * not a faster queue. The durability check and readiness cover every primary.
 */
export function createRedisClusterBackend(cluster: RedisClusterConnection, opts: { prefix: string; logger: Logger }): QueueBackend {
  assertClusterPrefix(opts.prefix);
  if (cluster.nodes.length === 0) throw new Error('a Redis Cluster needs at least one seed node');
  const nodes = cluster.nodes.map((n) => ({ host: n.host, port: n.port }));
  const redisOptions = {
    ...(cluster.username !== undefined && { username: cluster.username }),
    ...(cluster.password !== undefined && { password: cluster.password }),
    ...(cluster.tls && { tls: {} }),
  };
  const producer = new Cluster(nodes, { enableOfflineQueue: false, redisOptions: { ...redisOptions, maxRetriesPerRequest: 1 } });
  const seeds = nodes.map((n) => `${n.host}:${n.port}`).join(',');
  return redisBackendOn(
    {
      description: `Redis Cluster ${cluster.tls ? 'rediss' : 'redis'}://${seeds} (prefix ${opts.prefix}, slot of {${hashTagOf(opts.prefix)}})`,
      producer,
      workerConnection: () => new Cluster(nodes, { redisOptions: { ...redisOptions, maxRetriesPerRequest: null } }),
      servers: () => producer.nodes('master').map((n) => ({ name: `${n.options.host}:${n.options.port}`, client: n })),
    },
    opts,
  );
}

/** Connections of the shared queue pool (plus one LISTEN connection), per process. */
export const POSTGRES_QUEUE_POOL_MAX = 10;

/**
 * A PostgreSQL queue backend that runs on a connection shared by every queue and worker of the
 * process: closing one (a worker replaced on hot reload) leaves the connection to the others;
 * the QueueBackend closes it once, at the end.
 */
class SharedConnectionBackend extends PostgresQueueBackend {
  /** The listeners the base class put on the shared connection, removed on close. */
  detach: () => void = () => undefined;
  override async close(): Promise<void> {
    await this.disconnectBlocking();
    this.detach();
  }
  override async disconnect(): Promise<void> {
    await this.disconnectBlocking();
  }
}

export function createPostgresQueueBackend(url: string, opts: { schema: string; logger: Logger; poolMax?: number }): QueueBackend {
  let stopping = false;
  // One pool (bounded) and one LISTEN connection for every queue and worker of this process:
  // BullMQ's own factory would open a pool per queue and per worker, plus a LISTEN connection
  // per worker. The LISTEN channel is shared by all queues (the payload names the queue), so one
  // subscription serves every worker.
  const connection = new PostgresConnection({ connectionString: url, schema: opts.schema, migrate: true, max: opts.poolMax ?? POSTGRES_QUEUE_POOL_MAX, keepAlive: true });
  connection.setMaxListeners(0);
  connection.on('error', (err: Error) => {
    if (stopping) opts.logger.debug({ err: { message: err.message } }, 'queue database connection error while stopping');
    else opts.logger.warn({ err: { message: err.message } }, 'queue database connection error');
  });
  const factory: BackendFactory<PostgresQueueBackend, PostgresConnectionOptions> = (name, queueOpts) => {
    const events = ['error', 'ready', 'close', 'listenerinvalidated'] as const;
    const before = new Map(events.map((e) => [e, new Set(connection.listeners(e))]));
    const b = new SharedConnectionBackend(connection, name, queueOpts, true);
    const added = events.flatMap((e) => connection.listeners(e).filter((l) => !before.get(e)!.has(l)).map((l) => [e, l] as const));
    b.detach = () => {
      for (const [e, l] of added) connection.removeListener(e, l as (...args: unknown[]) => void);
    };
    return b;
  };
  const { Queue: PgQueue, Worker: PgWorker } = withBackend(factory);
  // The connection option is unused by the factory above (it shares `connection`), but required.
  const connectionOption = { connectionString: url, schema: opts.schema };
  const queues: QueueHandle<unknown>[] = [];
  let pingQueue: Queue | undefined;
  return {
    kind: 'postgres',
    description: `PostgreSQL ${redact(url)} (schema ${opts.schema})`,
    queue<T>(name: string) {
      const q = new PgQueue(name, { connection: connectionOption }) as unknown as Queue;
      pingQueue ??= q;
      const h = wrapQueue<T>(q);
      queues.push(h as QueueHandle<unknown>);
      return h;
    },
    worker<T>(name: string, processor: Processor<T>, settings: WorkerSettings) {
      const w = new PgWorker<T>(name, processor, { ...workerOptionsFor(settings), connection: connectionOption }) as unknown as Worker;
      return wrapWorker(w, settings, opts.logger, () => stopping);
    },
    async ping() {
      if (!pingQueue) throw new Error('no queue created yet');
      await pingQueue.getJobCounts('waiting');
    },
    // PostgreSQL commits are durable; nothing to check beyond what the store already relies on.
    durabilityProblems: async () => ({ problems: [], unverifiable: false }),
    beginShutdown() {
      stopping = true;
    },
    async close() {
      await Promise.allSettled(queues.map((q) => q.close()));
      await connection.close();
    },
  };
}
