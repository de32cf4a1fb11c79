/** A CliIo that collects what a command prints, for running commands in-process. */
import type { CliIo } from '../../src/cli/io.js';

export type CapturedIo = CliIo & { out: string; err: string };

/** `DATA_DIR` defaults to a folder that does not exist, so a command never finds a stray keyring. */
export function capturedIo(env: Record<string, string>, o: { cwd?: string; signal?: AbortSignal } = {}): CapturedIo {
  const io: CapturedIo = {
    out: '',
    err: '',
    stdout: (t: string) => void (io.out += t),
    stderr: (t: string) => void (io.err += t),
    cwd: o.cwd ?? process.cwd(),
    env: { DATA_DIR: '/nonexistent-data-dir', ...env },
    ...(o.signal ? { signal: o.signal } : {}),
  };
  return io;
}
