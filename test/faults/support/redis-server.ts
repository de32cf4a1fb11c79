/**
 * A redis-server child the suite controls: AOF everysec, noeviction, loopback only, on a fixed
 * port and directory so it can be stopped (SIGTERM or SIGKILL) and started again with its data.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { freePort, sleep, spawnOwned, stopChild, until, which } from './processes.js';

/** How every redis-server of the suite runs: loopback only, AOF everysec, noeviction. */
export function durableRedisArgs(port: number, dir: string): string[] {
  return [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--protected-mode', 'yes',
    '--dir', dir,
    '--save', '',
    '--appendonly', 'yes',
    '--appendfsync', 'everysec',
    '--maxmemory-policy', 'noeviction',
    '--loglevel', 'warning',
  ];
}

/** Waits until the redis-server on `port` answers PING (not LOADING after replaying its AOF). */
export async function waitForPing(what: string, port: number, alive: () => boolean, output: () => string): Promise<void> {
  await until(
    `${what} on port ${port} to answer PING`,
    async () => {
      if (!alive()) throw new Error(`redis-server exited:\n${output()}`);
      const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
      r.on('error', () => undefined);
      try {
        await r.connect();
        return (await r.ping()) === 'PONG';
      } finally {
        r.disconnect();
      }
    },
    15_000,
    50,
  );
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private log = '';

  private constructor(
    private readonly bin: string,
    readonly port: number,
    readonly dir: string,
  ) {}

  static async start(dir: string): Promise<RedisServer> {
    const bin = which('redis-server');
    if (!bin) throw new Error('redis-server is not installed: the fault suite needs it (apt-get install -y redis-server)');
    await mkdir(dir, { recursive: true });
    const s = new RedisServer(bin, await freePort(), dir);
    await s.start();
    return s;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    if (this.running()) return;
    const args = durableRedisArgs(this.port, this.dir);
    const c = spawnOwned(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout!.on('data', (b: Buffer) => (this.log = (this.log + b.toString()).slice(-20_000)));
    c.stderr!.on('data', (b: Buffer) => (this.log = (this.log + b.toString()).slice(-20_000)));
    this.child = c;
    await waitForPing('redis-server', this.port, () => this.running(), () => this.log);
  }

  /** SIGTERM: Redis flushes its AOF and exits. SIGKILL: a crash (AOF everysec keeps what was written). */
  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (!this.child) return;
    await stopChild(this.child, signal, 15_000);
    this.child = undefined;
  }

  /** `downAt`: the process is gone; `startingAt`: the new one is being started; `upAt`: it answers PING. */
  async restart(signal: 'SIGTERM' | 'SIGKILL', downMs: number): Promise<{ downAt: number; startingAt: number; upAt: number }> {
    await this.stop(signal);
    const downAt = Date.now();
    await sleep(downMs);
    const startingAt = Date.now();
    await this.start();
    return { downAt, startingAt, upAt: Date.now() };
  }

  output(): string {
    return this.log;
  }
}
