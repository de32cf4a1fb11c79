/**
 * Looks inside the queue backend (read-only) to time a fault precisely: how many jobs are running
 * again after having been recovered from a dead worker (stalled once already).
 */
import { Cluster, Redis } from 'ioredis';
import { CHANNEL_ID, DESTINATION, type Deployment, type FaultEnvironment } from './environment.js';

const QUEUES = ['ingest', `deliver.${CHANNEL_ID}.${DESTINATION}`];

/**
 * A connected client on the deployment's Redis (one server or the cluster), for the suite's own
 * read-only look-ups; undefined on the PostgreSQL queue backend. Disconnect it after use.
 */
export async function openQueueClient(env: FaultEnvironment, d: Deployment): Promise<Redis | Cluster | undefined> {
  if (d.queue === 'redis-cluster' && env.redisCluster) {
    const c = env.redisCluster.client();
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the Redis Cluster client did not become ready')), 10_000);
      c.once('ready', () => {
        clearTimeout(t);
        resolve();
      });
    });
    return c;
  }
  if (d.queue === 'redis' && env.redis) {
    const r = new Redis(env.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
    r.on('error', () => undefined);
    await r.connect();
    return r;
  }
  return undefined;
}

export async function recoveredJobsActive(env: FaultEnvironment, d: Deployment): Promise<number> {
  if (d.queue === 'postgres') {
    const r = await d.db.query<{ n: string }>(`SELECT count(*) AS n FROM bullmq.job WHERE queue = ANY($1::text[]) AND state = 'active' AND stalled_count >= 1`, [QUEUES]);
    return Number(r.rows[0]?.n ?? 0);
  }
  const r = await openQueueClient(env, d);
  if (!r) return 0;
  try {
    let n = 0;
    for (const q of QUEUES) {
      const ids = await r.lrange(`${d.queuePrefix}:${q}:active`, 0, -1);
      if (ids.length === 0) continue;
      const p = r.pipeline();
      for (const id of ids) p.hget(`${d.queuePrefix}:${q}:${id}`, 'stc');
      for (const [err, stc] of (await p.exec()) ?? []) if (!err && Number(stc) >= 1) n++;
    }
    return n;
  } finally {
    r.disconnect();
  }
}
