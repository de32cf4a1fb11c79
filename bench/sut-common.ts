/**
 * The IPC side shared by the two systems under test (bench/sut-baseline.ts and
 * bench/sut-switchboard.ts): reads the config, samples RSS, answers phase statistics, stops on
 * request or when the orchestrator goes away.
 */
import { performance } from 'node:perf_hooks';
import type { FromSut, SutConfig, ToSut } from './protocol.js';

export interface StartedSut {
  url: string;
  webhookPath: string;
  description: string;
  stop(): Promise<void>;
}

function send(m: FromSut): void {
  process.send?.(m);
}

export function sutConfig(): SutConfig {
  const raw = process.env['BENCH_SUT_CONFIG'];
  if (!raw) throw new Error('BENCH_SUT_CONFIG is not set; this file is started by bench/run.ts');
  return JSON.parse(raw) as SutConfig;
}

/** Runs `start`, reports readiness, then serves phase and stop commands until told to stop. */
export async function serveSut(start: (cfg: SutConfig) => Promise<StartedSut>): Promise<void> {
  const cfg = sutConfig();
  let peakRss = process.memoryUsage().rss;
  let phasePeak = peakRss;
  const sampler = setInterval(() => {
    const rss = process.memoryUsage().rss;
    if (rss > peakRss) peakRss = rss;
    if (rss > phasePeak) phasePeak = rss;
  }, 100);
  sampler.unref();

  let sut: StartedSut;
  try {
    sut = await start(cfg);
  } catch (err) {
    send({ type: 'fatal', message: (err as Error).stack ?? String(err) });
    process.exit(1);
  }

  let cpu0 = process.cpuUsage();
  let elu0 = performance.eventLoopUtilization();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const hardExit = setTimeout(() => process.exit(3), 20_000);
    hardExit.unref();
    try {
      await sut.stop();
    } catch (err) {
      process.stderr.write(`sut: error while stopping: ${(err as Error).message}\n`);
    }
    send({ type: 'stopped', peakRssBytes: peakRss });
    clearInterval(sampler);
    // Give the IPC message a moment to leave, then exit whatever handles remain.
    setTimeout(() => process.exit(0), 100);
  };
  process.on('message', (raw) => {
    const m = raw as ToSut;
    if (m.type === 'phase-begin') {
      phasePeak = process.memoryUsage().rss;
      cpu0 = process.cpuUsage();
      elu0 = performance.eventLoopUtilization();
    } else if (m.type === 'phase-end') {
      const rss = process.memoryUsage().rss;
      if (rss > phasePeak) phasePeak = rss;
      const cpu = process.cpuUsage(cpu0);
      const elu = performance.eventLoopUtilization(elu0);
      send({ type: 'phase-stats', stats: { peakRssBytes: phasePeak, cpuUserUs: cpu.user, cpuSystemUs: cpu.system, elu: elu.utilization } });
    } else if (m.type === 'stop') {
      void stop();
    }
  });
  process.on('disconnect', () => void stop());
  send({ type: 'ready', url: sut.url, webhookPath: sut.webhookPath, pid: process.pid, description: sut.description });
}
