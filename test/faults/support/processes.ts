/**
 * Child processes the fault suite owns, with bounded waits, and one exit hook that kills whatever
 * is still running if the suite itself dies (no orphaned redis-server or gateway left behind).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import net from 'node:net';

const live = new Set<ChildProcess>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

/** Spawns a child that is SIGKILLed if this process exits first. */
export function spawnOwned(cmd: string, args: readonly string[], opts: SpawnOptions): ChildProcess {
  hookExit();
  const c = spawn(cmd, args, opts);
  live.add(c);
  c.once('exit', () => live.delete(c));
  return c;
}

export function exited(c: ChildProcess): boolean {
  return c.exitCode !== null || c.signalCode !== null;
}

/** Sends `signal` and waits (bounded) for the exit; escalates to SIGKILL after `graceMs`. */
export async function stopChild(c: ChildProcess, signal: NodeJS.Signals, graceMs = 15_000): Promise<void> {
  if (exited(c)) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill(signal);
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
  if ((await Promise.race([gone.then(() => 'ok' as const), timer])) === 'timeout') {
    c.kill('SIGKILL');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000).unref())]);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export async function portOpen(port: number): Promise<boolean> {
  return new Promise<boolean>((r) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.end();
      r(true);
    });
    s.on('error', () => r(false));
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` every `everyMs` until it returns a truthy value; throws after `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
    }
    await sleep(everyMs);
  }
}

export function which(bin: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p ? p : null;
}
