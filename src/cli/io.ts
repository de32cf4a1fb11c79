/** What a command may touch of the outside world, passed in so that commands run in tests too. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Working directory: relative paths are resolved against it. */
  cwd: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Aborted to stop long-running commands (`map --watch`). */
  signal?: AbortSignal;
}

export function processIo(signal?: AbortSignal): CliIo {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    cwd: process.cwd(),
    env: process.env,
    ...(signal === undefined ? {} : { signal }),
  };
}

/** Exit codes: 0 ok, 1 failures found, 2 usage. */
export const EXIT_OK = 0;
export const EXIT_FAILURES = 1;
export const EXIT_USAGE = 2;
