/**
 * Checking a client out of a pg pool safely. pg emits 'error' on a client whose connection dies
 * (a restart, a failover, a terminated backend); pg-pool listens only while the client is idle in
 * the pool, so a checked-out client without a listener turns a database restart into an uncaught
 * exception that kills the process. While we hold a client, we listen; a client that saw an error
 * is destroyed on release instead of going back to the pool.
 */
import type { Pool, PoolClient } from 'pg';

export async function withClient<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>, onLost?: (err: Error) => void): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
    onLost?.(err);
  };
  c.on('error', onError);
  try {
    return await fn(c);
  } finally {
    c.removeListener('error', onError);
    c.release(broken ?? false);
  }
}

/** Runs `fn` in a transaction on a checked-out client: committed if it resolves, rolled back if it throws. */
export async function withTransaction<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (c) => {
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}
