/**
 * A local Redis Cluster of three primaries the suite owns: three `redis-server --cluster-enabled
 * yes` children (AOF everysec, noeviction, loopback only, each with its own free port, cluster bus
 * port and directory), joined with `redis-cli --cluster create … --cluster-replicas 0`, ready once
 * every node reports `cluster_state:ok`. A node can be killed and started again with its data and
 * its cluster configuration file.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { freePort, sleep, spawnOwned, stopChild, until, which } from './processes.js';
import { durableRedisArgs, waitForPing } from './redis-server.js';

interface ClusterNode {
  port: number;
  busPort: number;
  dir: string;
  child: ChildProcess | undefined;
  log: string;
}

/** What the Redis Cluster scenarios need on the machine; empty when all is there. */
export function missingClusterTools(): string[] {
  return ['redis-server', 'redis-cli'].filter((b) => which(b) === null);
}

async function run(cmd: string, args: readonly string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  const c = spawnOwned(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  c.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  c.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((r) => c.once('close', (x) => r(x)));
  clearTimeout(timer);
  return { code, out };
}

function nodeClient(port: number): Redis {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  r.on('error', () => undefined);
  return r;
}

export class RedisClusterServers {
  private constructor(
    private readonly bin: string,
    private readonly nodes: ClusterNode[],
  ) {}

  static async start(dir: string, size = 3): Promise<RedisClusterServers> {
    const bin = which('redis-server');
    const cli = which('redis-cli');
    if (!bin || !cli) throw new Error('redis-server and redis-cli are needed for the Redis Cluster scenarios (apt-get install -y redis-server redis-tools)');
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < size; i++) {
      const nodeDir = path.join(dir, `node${i + 1}`);
      await mkdir(nodeDir, { recursive: true });
      // The bus port defaults to port + 10000, which a free port above 55535 cannot have: pick both.
      nodes.push({ port: await freePort(), busPort: await freePort(), dir: nodeDir, child: undefined, log: '' });
    }
    const s = new RedisClusterServers(bin, nodes);
    try {
      await Promise.all(nodes.map((_, i) => s.startNode(i)));
      const created = await run(cli, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], 60_000);
      if (created.code !== 0) throw new Error(`redis-cli --cluster create failed (exit ${created.code}):\n${created.out.slice(-3000)}`);
      await s.waitUntilOk();
    } catch (err) {
      await s.stop();
      throw err;
    }
    return s;
  }

  /** REDIS_CLUSTER_NODES for the gateway: every node as a seed. */
  get seeds(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  }

  get ports(): readonly number[] {
    return this.nodes.map((n) => n.port);
  }

  running(i: number): boolean {
    const c = this.nodes[i]!.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** A cluster client for the suite's own look-ups; disconnect it after use. */
  client(): Cluster {
    const c = new Cluster(
      this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
      { enableOfflineQueue: true, redisOptions: { maxRetriesPerRequest: 1 }, clusterRetryStrategy: () => null },
    );
    c.on('error', () => undefined);
    return c;
  }

  async startNode(i: number): Promise<void> {
    if (this.running(i)) return;
    const n = this.nodes[i]!;
    const args = [
      ...durableRedisArgs(n.port, n.dir),
      '--cluster-enabled', 'yes',
      '--cluster-port', String(n.busPort),
      '--cluster-config-file', path.join(n.dir, 'nodes.conf'),
      '--cluster-node-timeout', '5000',
    ];
    const c = spawnOwned(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout!.on('data', (b: Buffer) => (n.log = (n.log + b.toString()).slice(-20_000)));
    c.stderr!.on('data', (b: Buffer) => (n.log = (n.log + b.toString()).slice(-20_000)));
    n.child = c;
    await waitForPing(`redis-server (cluster node ${i + 1})`, n.port, () => this.running(i), () => n.log);
  }

  /** Every node answers CLUSTER INFO with cluster_state:ok (all slots served). */
  async waitUntilOk(timeoutMs = 30_000): Promise<void> {
    await until(
      'every Redis Cluster node to report cluster_state:ok',
      async () => {
        for (const n of this.nodes) {
          const r = nodeClient(n.port);
          try {
            await r.connect();
            const info = (await r.call('CLUSTER', 'INFO')) as string;
            if (!/cluster_state:ok/.test(info)) return false;
          } finally {
            r.disconnect();
          }
        }
        return true;
      },
      timeoutMs,
      100,
    );
  }

  /** Runs a command on one node (not through the cluster): CONFIG SET, INFO, CLUSTER KEYSLOT. */
  async onNode(i: number, ...args: [string, ...(string | number)[]]): Promise<unknown> {
    const r = nodeClient(this.nodes[i]!.port);
    try {
      await r.connect();
      return await r.call(...args);
    } finally {
      r.disconnect();
    }
  }

  /** The index of the node that serves the slot of this hash tag. */
  async nodeServing(tag: string): Promise<number> {
    const slot = Number(await this.onNode(0, 'CLUSTER', 'KEYSLOT', `{${tag}}`));
    const slots = (await this.onNode(0, 'CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][];
    const owner = slots.find(([from, to]) => slot >= from && slot <= to);
    const i = this.nodes.findIndex((n) => n.port === owner?.[2][1]);
    if (i < 0) throw new Error(`no node serves slot ${slot}`);
    return i;
  }

  /** Client connections open on each node (INFO clients: connected_clients, the probe's own included). */
  async connectedClients(): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < this.nodes.length; i++) {
      const info = String(await this.onNode(i, 'INFO', 'clients'));
      out.push(Number(/connected_clients:(\d+)/.exec(info)?.[1] ?? NaN));
    }
    return out;
  }

  async stopNode(i: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const n = this.nodes[i]!;
    if (!n.child) return;
    await stopChild(n.child, signal, 15_000);
    n.child = undefined;
  }

  /** Kills node `i`, waits `downMs`, starts it again with its AOF and nodes.conf, and waits for cluster_state:ok. */
  async restartNode(i: number, signal: 'SIGTERM' | 'SIGKILL', downMs: number): Promise<{ downAt: number; startingAt: number; upAt: number }> {
    await this.stopNode(i, signal);
    const downAt = Date.now();
    await sleep(downMs);
    const startingAt = Date.now();
    await this.startNode(i);
    await this.waitUntilOk();
    return { downAt, startingAt, upAt: Date.now() };
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.stopNode(i, 'SIGTERM')));
  }
}

/**
 * Established TCP connections from process `pid` to any of `ports` on loopback, per port (Linux:
 * the process's socket inodes matched against /proc/net/tcp). Undefined where /proc cannot tell.
 */
export async function connectionsOf(pid: number, ports: readonly number[]): Promise<number[] | undefined> {
  try {
    const inodes = new Set<string>();
    for (const fd of await readdir(`/proc/${pid}/fd`)) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) inodes.add(m[1]!);
    }
    const counts = ports.map(() => 0);
    for (const line of (await readFile('/proc/net/tcp', 'utf8')).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[2]: remote address:port in hex, f[3]: state (01 = established), f[9]: inode.
      if (f.length < 10 || f[3] !== '01' || !inodes.has(f[9]!)) continue;
      const i = ports.indexOf(parseInt(f[2]!.split(':')[1]!, 16));
      if (i >= 0) counts[i]!++;
    }
    return counts;
  } catch {
    return undefined;
  }
}
