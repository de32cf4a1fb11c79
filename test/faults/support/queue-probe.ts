/**
 * Looks inside the queue backend (read-only) to time a fault precisely: how many jobs are running
 * again after having been recovered from a dead worker (stalled once already).
 */
import { Redis } from 'ioredis';
import { CHANNEL_ID, DESTINATION, type Deployment, type FaultEnvironment } from './environment.js';

const QUEUES = ['ingest', `deliver.${CHANNEL_ID}.${DESTINATION}`];

export async function recoveredJobsActive(env: FaultEnvironment, d: Deployment): Promise<number> {
  if (d.queue === 'postgres') {
    const r = await d.db.query<{ n: string }>(`SELECT count(*) AS n FROM bullmq.job WHERE queue = ANY($1::text[]) AND state = 'active' AND stalled_count >= 1`, [QUEUES]);
    return Number(r.rows[0]?.n ?? 0);
  }
  if (!env.redis) return 0;
  const r = new Redis(env.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  r.on('error', () => undefined);
  try {
    await r.connect();
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
