/**
 * One gateway process (`node --import tsx src/main.ts`) in a given role. The banner it prints
 * once started gives its port; its output goes to a log file for post-mortems. Like an
 * orchestrator with a restart policy, it restarts the process when it exits on its own (a crash)
 * and records the crash: a crash is a finding, and the restart lets the suite still measure
 * whether any message was lost because of it.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exited, sleep, spawnOwned, stopChild, until } from './processes.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export type GatewayRole = 'http' | 'worker';

export interface Crash {
  name: string;
  at: number;
  exit: string;
  /** The end of its output (the error that killed it). */
  tail: string;
  /** A clean exit after a SIGTERM/SIGINT this suite did not send (something else on the machine). */
  external: boolean;
}

const MAX_SUPERVISED_RESTARTS = 10;

export class GatewayRoleProcess {
  private child: ChildProcess | undefined;
  private out = '';
  private log: WriteStream | undefined;
  private starts = 0;
  private partial = '';
  /** `"alert":"<name>"` log lines seen over every run of this process, by name. */
  readonly alerts = new Map<string, number>();
  /** Exits nobody asked for. */
  readonly crashes: Crash[] = [];
  /** The supervised restart after a crash, while it runs. */
  restarting: Promise<void> | undefined;
  private expectExit = false;
  private closed = false;
  port = 0;

  constructor(
    readonly name: string,
    readonly role: GatewayRole,
    private readonly env: Record<string, string>,
    private readonly logFile: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  running(): boolean {
    return this.child !== undefined && !exited(this.child);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process and waits (bounded) for its banner; throws with its output if it exits. */
  async start(timeoutMs = 120_000): Promise<void> {
    if (this.running()) throw new Error(`${this.name} is already running`);
    this.expectExit = false;
    this.starts++;
    this.out = '';
    this.log ??= createWriteStream(this.logFile, { flags: 'a' });
    this.log.write(`\n----- ${this.name} start #${this.starts} at ${new Date().toISOString()}\n`);
    const child = spawnOwned(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'main.ts')], {
      cwd: repoRoot,
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? '/tmp',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        SWITCHBOARD_ROLE: this.role,
        // Diagnostics only: SIGUSR2 writes a Node report (JS stack, handles) when a start hangs.
        NODE_OPTIONS: `--report-on-signal --report-signal=SIGUSR2 --report-directory=${path.dirname(this.logFile)}`,
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.partial = '';
    const onData = (c: Buffer) => {
      const s = c.toString();
      this.out = (this.out + s).slice(-200_000);
      this.log?.write(s);
      const lines = (this.partial + s).split('\n');
      this.partial = (lines.pop() ?? '').slice(-100_000);
      for (const line of lines) {
        const m = /"alert":"([a-z_]+)"/.exec(line);
        if (m?.[1]) this.alerts.set(m[1], (this.alerts.get(m[1]) ?? 0) + 1);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    const m = await until(
      `${this.name} to print its banner`,
      async () => {
        if (exited(child)) throw new Error(`${this.name} exited with ${child.exitCode ?? child.signalCode}:\n${this.out.slice(-4000)}`);
        if (!this.out.includes('Switchboard is running.')) return undefined;
        return /(http:\/\/127\.0\.0\.1:(\d+))\/healthz/.exec(this.out);
      },
      timeoutMs,
      50,
    ).catch(async (err: unknown) => {
      this.expectExit = true;
      const report = exited(child) ? '' : await this.nodeReport(child);
      await stopChild(child, 'SIGKILL');
      throw new Error(`${(err as Error).message}${report ? `\n${report}` : ''}`);
    });
    this.port = Number(m[2]);
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child || this.expectExit || this.closed) return;
    const exit = `${code ?? signal}`;
    this.log?.write(`\n----- ${this.name} CRASHED (exit ${exit}) at ${new Date().toISOString()}\n`);
    const tail = this.out.slice(-2500);
    const external = code === 0 && /"signal":"SIG(TERM|INT)","msg":"shutting down/.test(tail);
    this.crashes.push({ name: this.name, at: Date.now(), exit, tail, external });
    if (this.crashes.length > MAX_SUPERVISED_RESTARTS) return;
    this.restarting = sleep(1000)
      .then(() => (this.running() || this.closed ? undefined : this.start()))
      .catch((err: unknown) => {
        this.crashes.push({ name: this.name, at: Date.now(), exit: 'restart failed', tail: (err as Error).message.slice(-2500), external: false });
      })
      .finally(() => {
        this.restarting = undefined;
      });
  }

  /** Asks a hung process for a Node diagnostic report and summarises where it is. */
  private async nodeReport(child: ChildProcess): Promise<string> {
    const dir = path.dirname(this.logFile);
    const before = new Set(await readdir(dir));
    child.kill('SIGUSR2');
    for (let i = 0; i < 50; i++) {
      await sleep(100);
      const file = (await readdir(dir)).find((f) => f.startsWith('report.') && f.endsWith('.json') && !before.has(f));
      if (!file) continue;
      await sleep(300);
      try {
        const r = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as {
          javascriptStack?: { message?: string; stack?: string[] };
          libuv?: { type: string; is_active?: boolean; remoteEndpoint?: { port?: number } }[];
        };
        const handles = new Map<string, number>();
        for (const h of r.libuv ?? []) if (h.is_active) handles.set(h.type, (handles.get(h.type) ?? 0) + 1);
        return `node report (${path.join(dir, file)}): JS stack: ${(r.javascriptStack?.stack ?? []).slice(0, 8).join(' | ') || r.javascriptStack?.message || '(idle event loop)'}; active handles: ${JSON.stringify(Object.fromEntries(handles))}`;
      } catch {
        return `node report written to ${path.join(dir, file)}`;
      }
    }
    return 'no node report (process unresponsive to SIGUSR2)';
  }

  /** kill -9: no drain, no cleanup; its active jobs are recovered as stalled. */
  async kill9(): Promise<void> {
    await this.restarting;
    if (!this.child) return;
    this.expectExit = true;
    await stopChild(this.child, 'SIGKILL', 10_000);
    this.log?.write(`\n----- ${this.name} SIGKILLed at ${new Date().toISOString()}\n`);
  }

  /** SIGTERM: graceful drain (bounded by SHUTDOWN_TIMEOUT_MS in the child, then SIGKILL here). */
  async stop(): Promise<void> {
    await this.restarting;
    if (!this.child) return;
    this.expectExit = true;
    await stopChild(this.child, 'SIGTERM', 30_000);
  }

  output(): string {
    return this.out;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.expectExit = true;
    await this.restarting;
    if (this.child) await stopChild(this.child, 'SIGKILL', 10_000);
    await new Promise<void>((r) => (this.log ? this.log.end(() => r()) : r()));
    this.log = undefined;
  }
}
