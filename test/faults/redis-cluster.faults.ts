/**
 * Scale-out on a Redis Cluster (issue 13): a local three-node Redis Cluster (three
 * `redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`, AOF everysec,
 * noeviction), the gateway as one `http` and two `worker` processes of the real entry point with a
 * hash-tagged QUEUE_PREFIX unique to the run, one PostgreSQL. Under a steady stream of signed
 * WhatsApp webhooks (a) the workers are killed with SIGKILL mid-delivery, (b) the primary that
 * serves the queues' slot is killed with SIGKILL and started again (webhooks get 503 meanwhile);
 * every acknowledged message must reach the FHIR server exactly once (counted by identifier),
 * with none lost and none duplicated. The report blocks carry the figures, the node that serves
 * the queues' slot and the Redis connections each process holds. Before that: a cluster primary
 * that can lose jobs makes the gateway refuse to start, naming that node.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_ID, DESTINATION, type FaultEnvironment, startEnvironment } from './support/environment.js';
import { fiveKillsInThreeRounds, slowCommunicationWrites } from './support/kill-rounds.js';
import { connectionsOf, missingClusterTools } from './support/redis-cluster.js';
import { acknowledgedWithin, describeDeployment, statusesWithin } from './support/scenario.js';
import { runGatewayToExit } from '../support/gateway-process.js';
import { reportMissing } from '../support/missing-service.js';

/** Correctness, not speed: a gentler stream and a longer bound than the single-Redis suite, since three Redis nodes share the cores too. */
const RATE = 10;
const QUIET_TIMEOUT_MS = 180_000;

/** Without redis-server or redis-cli the cluster scenarios are skipped loudly; with CI=true the file fails. */
const missing = missingClusterTools();
if (missing.length > 0) {
  reportMissing(missing.join(' and '), 'the Redis Cluster fault scenarios are', 'Install them: apt-get install -y redis-server redis-tools');
}
const skip = missing.length > 0;

let env: FaultEnvironment;

beforeAll(async () => {
  if (!skip) env = await startEnvironment({ redis: false, redisCluster: true });
});
afterAll(async () => {
  await env?.close();
});

describe.skipIf(skip)('Redis Cluster: durability of every primary', () => {
  it('refuses to start when one cluster primary can lose jobs, naming that node', async () => {
    const cluster = env.redisCluster!;
    const victim = 2;
    const port = cluster.ports[victim]!;
    await cluster.onNode(victim, 'CONFIG', 'SET', 'appendonly', 'no');
    try {
      const r = await runGatewayToExit({
        SWITCHBOARD_ROLE: 'http',
        DATABASE_URL: await env.postgres.createDatabase(`faults_cluster_refusal_${Date.now()}`),
        REDIS_CLUSTER_NODES: cluster.seeds,
        QUEUE_PREFIX: '{faults-cluster-refusal}',
        FHIR_BASE_URL: env.proxy.url,
        CHANNELS_DIR: env.channelsDir,
        DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'sb-cluster-refusal-')),
        REDIS_DURABILITY: 'strict',
      });
      expect(r.code).toBe(1);
      expect(r.output).toContain('switchboard: refusing to start: the queue backend can lose accepted messages');
      expect(r.output).toContain(`127.0.0.1:${port}: appendonly is "no"`);
      // The two sound primaries are not blamed.
      for (const other of cluster.ports.filter((p) => p !== port)) expect(r.output).not.toContain(`127.0.0.1:${other}:`);
    } finally {
      await cluster.onNode(victim, 'CONFIG', 'SET', 'appendonly', 'yes');
    }
  });
});

describeDeployment({
  title: 'Redis Cluster queues (3 primaries, hash-tagged prefix): 1 http + 2 worker processes',
  environment: () => env,
  deployment: { name: 'redis-cluster', queue: 'redis-cluster', workers: 2 },
  ratePerSec: RATE,
  quietTimeoutMs: QUIET_TIMEOUT_MS,
  // Five kills with their restarts, the stream, and up to QUIET_TIMEOUT_MS of draining.
  testTimeoutMs: 480_000,
  skip,
  scenarios: [
    {
      test: '(a) kill -9 the worker processes (5 kills in 3 rounds) on a Redis Cluster',
      name: 'a-worker-kill-cluster',
      title: '(a) kill -9 the workers x5 [Redis Cluster queue]',
      proxyRule: slowCommunicationWrites(500),
      leadMs: 3000,
      fault: async (ctx) => {
        const cluster = ctx.env.redisCluster!;
        const tag = ctx.d.queuePrefix.slice(1, -1);
        const serving = await cluster.nodeServing(tag);
        ctx.note(`queues of prefix ${ctx.d.queuePrefix} in one slot, on node ${serving + 1} of 3 (127.0.0.1:${cluster.ports[serving]})`);
        ctx.note(`Redis connections open per node while streaming (1 http + 2 worker processes, plus this probe): ${(await cluster.connectedClients()).join(' / ')}`);
        await fiveKillsInThreeRounds(ctx);
      },
      tailMs: 3000,
      check: async (ctx) => {
        // Connections once the run is over: each process has by then used every queue and node it needs.
        for (const p of [ctx.d.http, ...ctx.d.workers]) {
          const held = p.pid === undefined ? undefined : await connectionsOf(p.pid, ctx.env.redisCluster!.ports);
          if (held) ctx.note(`${p.name} holds ${held.reduce((a, b) => a + b, 0)} Redis connections (node 1 / 2 / 3: ${held.join(' / ')})`);
        }
        const ready = await Promise.all([ctx.d.http, ...ctx.d.workers].map(async (p) => (await fetch(`${p.url}/readyz`, { signal: AbortSignal.timeout(5000) })).status));
        ctx.note(`readiness after the run (http, worker1, worker2): ${ready.join(', ')}`);
        const problems = ready.every((s) => s === 200) ? [] : [`/readyz answered ${ready.join(', ')} after the run (expected 200 from every process)`];
        // Queue depths in /metrics are read through the cluster: the delivery queue's completed jobs show.
        const metrics = await fetch(`${ctx.d.http.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
        const line = (await metrics.text())
          .split('\n')
          .find((l) => l.startsWith('switchboard_queue_jobs{') && l.includes(`queue="deliver.${CHANNEL_ID}.${DESTINATION}"`) && l.includes('state="completed"'));
        const completed = Number(line?.split(' ').pop() ?? 0);
        ctx.note(`/metrics: ${metrics.status}, completed delivery jobs kept in the queue: ${completed}`);
        if (metrics.status !== 200 || !(completed > 0)) problems.push(`/metrics answered ${metrics.status} without the delivery queue's completed jobs`);
        return problems;
      },
    },
    {
      test: '(b) kill -9 the primary that serves the queues, and start it again',
      name: 'b-cluster-primary-restart',
      title: '(b) kill -9 the queues\' primary, restart it [Redis Cluster queue]',
      leadMs: 4000,
      fault: async (ctx) => {
        const cluster = ctx.env.redisCluster!;
        const serving = await cluster.nodeServing(ctx.d.queuePrefix.slice(1, -1));
        ctx.note(`node ${serving + 1} (127.0.0.1:${cluster.ports[serving]}) SIGKILL`);
        const { downAt, startingAt, upAt } = await cluster.restartNode(serving, 'SIGKILL', 3000);
        ctx.window({ name: 'primary-down', from: downAt, to: startingAt });
        ctx.note(`node ${serving + 1} back, cluster_state:ok after ${upAt - downAt} ms`);
      },
      tailMs: 8000,
      check: (ctx, windows) => {
        const problems: string[] = [];
        for (const w of windows) {
          const s503 = statusesWithin(ctx.load, w.from, w.to, 503);
          ctx.note(`${w.name}: ${s503} × 503, ${acknowledgedWithin(ctx.load, w.from, w.to)} × 2xx while the primary was down`);
          if (s503 === 0) problems.push(`${w.name}: no 503 while the queues' primary was down (the sender was not told to retry)`);
        }
        return problems;
      },
    },
  ],
});
