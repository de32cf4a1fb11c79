/** Runs the real entry point (`src/main.ts`) as a child process, for restart and kill -9 tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './gateway.js';

export interface GatewayProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

export async function spawnGateway(env: Record<string, string>, timeoutMs = 60_000, opts: { detached?: boolean; ready?: RegExp } = {}): Promise<GatewayProcess> {
  // `node --import tsx` (not the tsx CLI, which runs a second process) so that the signal hits
  // the gateway process itself.
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'main.ts')], {
    cwd: repoRoot,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, as in a terminal: a signal to the group reaches the embedded
    // PostgreSQL too (Ctrl-C), see kill().
    detached: opts.detached === true,
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  // 'close', not 'exit': the output is complete only once stdout and stderr are closed.
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), timeoutMs);
    const check = () => {
      const m = (opts.ready ?? /webhook\s+\S+: (http:\/\/127\.0\.0\.1:\d+)\//).exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    child,
    output: () => out,
    kill: async (signal) => {
      if (opts.detached === true && child.pid !== undefined) process.kill(-child.pid, signal);
      else child.kill(signal);
      return exited;
    },
  };
}

/** Runs the entry point until it exits; for start-up refusals. */
export async function runGatewayToExit(env: Record<string, string>, timeoutMs = 60_000): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'main.ts')], {
    cwd: repoRoot,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(timer);
  return { code, output: out };
}
