/**
 * Runs test/support/hl7-python-peer.py (Debian's python3-hl7 asyncio MLLP server) as a child
 * process on a free port and collects what it reports. Also finds `mllp_send`, python-hl7's
 * command-line client. Both come with `apt-get install python3-hl7` (.ci/run installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Debian's interpreter: python3-hl7 lives in its dist-packages (a pyenv python3 would not see it). */
export const DEBIAN_PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'hl7-python-peer.py');

export function pythonHl7Available(): boolean {
  const r = spawnSync(DEBIAN_PYTHON, ['-c', 'import hl7.mllp'], { stdio: 'ignore' });
  return r.status === 0;
}

export function mllpSendAvailable(): boolean {
  return spawnSync('sh', ['-c', 'command -v mllp_send'], { stdio: 'ignore' }).status === 0;
}

export interface PythonPeerEvent {
  event: 'ready' | 'message' | 'decode_error';
  port?: number;
  control_id?: string;
  message_type?: string;
  charset?: string;
  segments?: string[];
  field_counts?: number[];
  nte_3?: string[];
  reason?: string;
}

export interface PythonPeer {
  port: number;
  url: string;
  events: PythonPeerEvent[];
  waitFor(pred: (e: PythonPeerEvent) => boolean, timeoutMs?: number): Promise<PythonPeerEvent>;
  close(): Promise<void>;
}

export async function startPythonPeer(o: { encoding?: string; ack?: 'AA' | 'AE' | 'AR' } = {}): Promise<PythonPeer> {
  const args = [SCRIPT, ...(o.encoding ? ['--encoding', o.encoding] : []), ...(o.ack ? ['--ack', o.ack] : [])];
  const child: ChildProcess = spawn(DEBIAN_PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: PythonPeerEvent[] = [];
  const listeners = new Set<() => void>();
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as PythonPeerEvent);
    } catch {
      return;
    }
    for (const l of listeners) l();
  });
  const waitFor = (pred: (e: PythonPeerEvent) => boolean, timeoutMs = 10_000): Promise<PythonPeerEvent> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = events.find(pred);
        if (hit) {
          listeners.delete(onEvent);
          clearTimeout(timer);
          resolve(hit);
          return true;
        }
        return false;
      };
      const onEvent = (): void => void check();
      const timer = setTimeout(() => {
        listeners.delete(onEvent);
        reject(new Error(`python peer: timed out; stderr: ${stderr.slice(-500)}`));
      }, timeoutMs);
      listeners.add(onEvent);
      check();
    });
  const ready = await waitFor((e) => e.event === 'ready');
  const port = ready.port!;
  return {
    port,
    url: `mllp://127.0.0.1:${port}`,
    events,
    waitFor,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
