/**
 * Reproduction (fault suite finding): a PostgreSQL connection that dies while MessageStore.tx()
 * holds it checked out from the pool (a restart, failover, pg_terminate_backend, network cut)
 * crashes the whole process with an unhandled 'error' event from the pg Client. pg emits
 * 'error' on the client when its socket ends; pg-pool only listens while the client is idle,
 * and tx() (like runMigrations and PollRunner) adds no listener while it holds the client.
 * In the fault suite both worker processes died this way when PostgreSQL was restarted.
 *
 * Here: a table lock makes a tx() (store.discard) wait inside its transaction, then its backend
 * is terminated. Expected: discard() rejects and the process lives on.
 *
 * Run: node --import tsx test/faults/repro/store-tx-connection-loss.ts   (a few seconds)
 * Exit code 1 = reproduced (process crashed), 0 = fixed.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { MessageStore } from '../../../src/store/message-store.js';
import { runMigrations } from '../../../src/store/migrations.js';
import { createPlaintextCodec } from '../../../src/store/payload-codec.js';
import { PostgresServer } from '../support/postgres-server.js';
import { until } from '../support/processes.js';

const tmp = await mkdtemp(path.join(os.tmpdir(), 'switchboard-repro-'));
await chmod(tmp, 0o755); // as root, PostgreSQL runs as 'postgres'
const server = await PostgresServer.start(path.join(tmp, 'pg'));
const cleanup = async () => {
  await server.stop().catch(() => undefined);
  await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
};
let crashed = false;
process.on('uncaughtException', (err) => {
  if (crashed) return;
  crashed = true;
  console.log(`REPRODUCED: the process would crash: uncaught ${err.name}: ${err.message}`);
  void cleanup().finally(() => process.exit(1));
});

const url = await server.createDatabase('repro');
// The application's pool, configured as in src/app.ts (with its pool 'error' listener).
const pool = new pg.Pool({ connectionString: url, max: 20, connectionTimeoutMillis: 5000 });
pool.on('error', (err) => console.log(`pool 'error' listener (idle client): ${err.message}`));
await runMigrations(pool);
const store = new MessageStore(pool, createPlaintextCodec());

// Another session holds a lock, so the store's transaction waits on its UPDATE.
const locker = new pg.Client({ connectionString: url });
await locker.connect();
await locker.query('BEGIN');
await locker.query('LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE');

const pending = store.discard(randomUUID(), 'repro', 'repro').then(
  () => 'resolved',
  (err: unknown) => `rejected: ${(err as Error).message}`,
);
const victim = await until(
  'the store transaction to wait on the lock',
  async () => (await locker.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = 'repro'`)).rows[0]?.pid,
  10_000,
  50,
);
console.log(`terminating the store's backend (pid ${victim}) mid-transaction`);
await locker.query('SELECT pg_terminate_backend($1)', [victim]);
console.log(`store.discard() ${await pending}`);
await new Promise((r) => setTimeout(r, 500));
await locker.query('ROLLBACK');
await locker.end();
await pool.end();
await cleanup();
console.log('not reproduced: the process survived');
process.exit(0);
