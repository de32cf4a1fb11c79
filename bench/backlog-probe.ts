/**
 * Samples the backlog of the system under test's queues during a phase (waiting + delayed jobs,
 * and active ones), so the report can say which stage a backlog builds in: Switchboard's ingest
 * queue or its delivery queue, or the baseline's single queue. Reads through BullMQ itself.
 *
 * The probe's own Redis commands and PostgreSQL transactions are counted, so the work-per-message
 * figures can leave them out.
 */
import { Queue, createPostgresBackend, withBackend } from 'bullmq';
import { Redis } from 'ioredis';
import type { QueueKind, SutKind } from './protocol.js';

export interface QueueBacklog {
  queue: string;
  maxBacklog: number;
  maxActive: number;
}

export interface BacklogProbe {
  readonly queues: readonly string[];
  /** Probe calls made so far (one getJobCounts per queue each). */
  readonly calls: number;
  begin(): void;
  end(): Promise<QueueBacklog[]>;
  close(): Promise<void>;
}

const EVERY_MS = 1000;

export function queuesOf(kind: SutKind): string[] {
  return kind === 'baseline' ? ['baseline'] : ['ingest', 'deliver.whatsapp-to-ehr.ehr'];
}

export function createBacklogProbe(o: { kind: SutKind; queue: QueueKind; redisUrl?: string; databaseUrl: string; prefix: string }): BacklogProbe {
  const names = queuesOf(o.kind);
  let redis: Redis | undefined;
  let queues: Queue[];
  if (o.queue === 'redis') {
    redis = new Redis(o.redisUrl!, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    queues = names.map((n) => new Queue(n, { connection: redis!, prefix: o.prefix }));
  } else {
    const { Queue: PgQueue } = withBackend(createPostgresBackend);
    const connection = { connectionString: o.databaseUrl, schema: 'bullmq', max: 1, application_name: 'bench-probe' };
    queues = names.map((n) => new PgQueue(n, { connection }) as unknown as Queue);
  }
  let timer: NodeJS.Timeout | undefined;
  let maxima = names.map(() => ({ backlog: 0, active: 0 }));
  let inFlight: Promise<void> | undefined;
  let calls = 0;
  let closing: Promise<void> | undefined;
  const sample = async () => {
    await Promise.all(
      queues.map(async (q, i) => {
        calls++;
        const c = await q.getJobCounts('waiting', 'delayed', 'prioritized', 'active');
        const m = maxima[i]!;
        m.backlog = Math.max(m.backlog, (c['waiting'] ?? 0) + (c['delayed'] ?? 0) + (c['prioritized'] ?? 0));
        m.active = Math.max(m.active, c['active'] ?? 0);
      }),
    ).catch(() => undefined);
  };
  return {
    queues: names,
    get calls() {
      return calls;
    },
    begin() {
      maxima = names.map(() => ({ backlog: 0, active: 0 }));
      timer = setInterval(() => {
        inFlight ??= sample().finally(() => {
          inFlight = undefined;
        });
      }, EVERY_MS);
    },
    async end() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await inFlight;
      return names.map((queue, i) => ({ queue, maxBacklog: maxima[i]!.backlog, maxActive: maxima[i]!.active }));
    },
    close() {
      closing ??= (async () => {
        if (timer) clearInterval(timer);
        await inFlight;
        await Promise.allSettled(queues.map((q) => q.close()));
        redis?.disconnect();
      })();
      return closing;
    },
  };
}
