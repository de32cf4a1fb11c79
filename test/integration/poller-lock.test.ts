/**
 * One poller per channel, whatever the number of worker processes: each PollRunner takes a
 * PostgreSQL advisory lock per channel before polling it (src/pipeline/poll-runner.ts). Two
 * runners on two pools stand for two worker processes on one real database; the channel's pull
 * source records who polls when. When the polling runner stops, the other takes the channel over;
 * when its database connection is lost (the lock goes with it), it stops polling until a lock is
 * held again. Never do two poll one channel at once.
 */
import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SourceInstance } from '../../src/connectors/types.js';
import { createLogger } from '../../src/core/logger.js';
import { PollRunner } from '../../src/pipeline/poll-runner.js';
import type { RuntimeChannel } from '../../src/pipeline/runtime-channel.js';
import { MessageStore } from '../../src/store/message-store.js';
import { runMigrations } from '../../src/store/migrations.js';
import { createPlaintextCodec } from '../../src/store/payload-codec.js';
import { waitFor } from '../support/gateway.js';
import { createTestDatabase } from '../support/services.js';

const logger = createLogger({ level: 'silent' });

/** Who polls the channel, as the source sees it. */
class PollLog {
  readonly active = new Set<string>();
  readonly events: string[] = [];
  maxConcurrent = 0;

  /** A pull source that polls until its signal aborts, recording each run under `worker`. */
  source(worker: string): SourceInstance {
    return {
      path: undefined,
      maxBodyBytes: 1024,
      acceptedResponse: { status: 200 },
      handleGet: () => ({ status: 405 }),
      authenticate: () => null,
      checkEnvelope: () => null,
      parse: () => ({ messages: [], statuses: [], ignored: [], source_errors: [] }),
      poll: async ({ signal }) => {
        this.active.add(worker);
        this.events.push(`${worker} started`);
        this.maxConcurrent = Math.max(this.maxConcurrent, this.active.size);
        await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
        this.active.delete(worker);
        this.events.push(`${worker} stopped`);
      },
    };
  }
}

function channel(id: string, source: SourceInstance): RuntimeChannel {
  return { id, file: `${id}.yaml`, source, filter: undefined, destinations: [], routing: new Map(), media: undefined };
}

let databaseUrl: string;
const pools: pg.Pool[] = [];
const runners: PollRunner[] = [];

/** A worker process: its own pool and poll runner. */
function worker(): PollRunner {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  pool.on('error', () => undefined); // a terminated idle client; the runner sees its own
  pools.push(pool);
  const runner = new PollRunner({ pool, store: new MessageStore(pool, createPlaintextCodec()), logger, enqueueIngest: async () => undefined });
  runners.push(runner);
  return runner;
}

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: databaseUrl });
  try {
    await runMigrations(pool);
  } finally {
    await pool.end();
  }
});

afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stop()));
  await Promise.all(pools.splice(0).map((p) => p.end()));
});

describe('one poller per channel (advisory lock)', () => {
  it('two workers on one channel: one polls; when it stops, the other takes over', async () => {
    const log = new PollLog();
    const [a, b] = [worker(), worker()];
    a.start([channel('lock-stop', log.source('a'))]);
    b.start([channel('lock-stop', log.source('b'))]);
    const first = await waitFor('a poller', async () => [...log.active][0]);
    // The other worker's attempt comes and goes: it keeps retrying every few seconds.
    await new Promise((r) => setTimeout(r, 1500));
    expect([...log.active]).toEqual([first]);
    expect(log.events).toEqual([`${first} started`]);

    const second = first === 'a' ? 'b' : 'a';
    await (first === 'a' ? a : b).stop();
    await waitFor(`${second} takes over`, async () => log.active.has(second), 15_000);
    expect(log.events).toEqual([`${first} started`, `${first} stopped`, `${second} started`]);
    expect(log.maxConcurrent).toBe(1);
  });

  it('each channel has its own lock: two channels are polled at once', async () => {
    const log = new PollLog();
    const [a, b] = [worker(), worker()];
    a.start([channel('lock-one', log.source('a:one')), channel('lock-two', log.source('a:two'))]);
    b.start([channel('lock-one', log.source('b:one')), channel('lock-two', log.source('b:two'))]);
    await waitFor('both channels polled', async () => log.active.size === 2);
    const polled = [...log.active].map((w) => w.split(':')[1]).sort();
    expect(polled).toEqual(['one', 'two']);
  });

  it('a poller whose database connection is lost stops polling, and the channel is polled again under a lock held anew', async () => {
    const log = new PollLog();
    const [a, b] = [worker(), worker()];
    a.start([channel('lock-lost', log.source('a'))]);
    await waitFor('a polls', async () => log.active.has('a'));
    b.start([channel('lock-lost', log.source('b'))]);

    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    try {
      const holder = async () =>
        (
          await admin.query<{ pid: number }>(
            `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND objid = (hashtext('switchboard:poll:lock-lost')::bigint & 4294967295)::oid`,
          )
        ).rows.map((r) => r.pid);
      const [lost] = await holder();
      expect(lost).toBeDefined();
      await admin.query('SELECT pg_terminate_backend($1)', [lost]);

      // The poll that held the lock on that connection is stopped; polling resumes only under a
      // lock taken again, on another connection (whichever worker gets it first).
      await waitFor('polling resumes', async () => log.events.length >= 3, 15_000);
      expect(log.events.slice(0, 2)).toEqual(['a started', 'a stopped']);
      expect(log.events[2]).toMatch(/^[ab] started$/);
      const now = await holder();
      expect(now).toHaveLength(1);
      expect(now[0]).not.toBe(lost);
      expect(log.active.size).toBe(1);
      expect(log.maxConcurrent).toBe(1);
    } finally {
      await admin.end();
    }
  });
});
