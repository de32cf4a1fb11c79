/**
 * One fault scenario from stream to report, on a running deployment: its own wamid set, a steady
 * signed webhook stream, the fault (run while the stream flows), a bounded wait for quiet,
 * verification and the report block. A fault that itself fails (a process that will not come
 * back) is a finding: it is reported, and the checks still run.
 */
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploy, type Deployment, type FaultEnvironment } from './environment.js';
import { passAll, type FaultRule } from '../../support/fault-proxy.js';
import { LoadGenerator, type MessageKind } from './load-generator.js';
import { sleep } from './processes.js';
import { formatReport, verify, waitUntilQuiet, type Verdict } from './verify.js';
import { openQueueClient } from './queue-probe.js';

export interface Window {
  name: string;
  from: number;
  to: number;
}

export interface ScenarioContext {
  env: FaultEnvironment;
  d: Deployment;
  load: LoadGenerator;
  /** A line for the report (what was done, when). */
  note(text: string): void;
  /** A time window the checks use (e.g. "postgres-down"). */
  window(w: Window): void;
}

export interface ScenarioSpec {
  /** Short id, e.g. "a-worker-kill" (kept logs are under it). */
  name: string;
  /** Title of the report block. */
  title: string;
  ratePerSec: number;
  kindOf?: (seq: number) => MessageKind;
  proxyRule?: FaultRule;
  /** Stream before the fault starts. */
  leadMs: number;
  /** The fault, run while the stream flows; its duration sets the scenario's. */
  fault(ctx: ScenarioContext): Promise<void>;
  /** Stream after the fault ends (recovery under load). */
  tailMs: number;
  quietTimeoutMs: number;
  /** Scenario-specific checks; return problems in words. */
  check?(ctx: ScenarioContext, windows: readonly Window[]): Promise<string[]> | string[];
}

export interface ScenarioResult {
  verdict: Verdict;
  report: string;
  durationMs: number;
}

function print(text: string): void {
  // Straight to the terminal (and to FAULTS_REPORT_FILE when set), not through vitest's console capture.
  process.stdout.write(`${text}\n`);
  const file = process.env['FAULTS_REPORT_FILE'];
  if (file) appendFileSync(file, `${text}\n`);
}

/** Brings back any gateway process a previous scenario left dead, so each scenario starts whole. */
async function ensureRunning(d: Deployment): Promise<void> {
  for (const p of [d.http, ...d.workers]) {
    await p.restarting;
    if (!p.running()) await p.start();
  }
}

const processes = (d: Deployment) => [d.http, ...d.workers];

export async function runScenario(env: FaultEnvironment, d: Deployment, spec: ScenarioSpec): Promise<ScenarioResult> {
  const t0 = Date.now();
  const notes: string[] = [];
  const windows: Window[] = [];
  const faultProblems: string[] = [];
  if (env.redis && !env.redis.running()) await env.redis.start();
  if (!env.postgres.running()) await env.postgres.start();
  await ensureRunning(d);
  const crashesBefore = processes(d).map((p) => p.crashes.length);
  env.proxy.setRule(spec.proxyRule ?? passAll);
  env.proxy.injected.clear();
  notes.push(`deployment ${d.name}: 1 http + ${d.workers.length} worker process(es); ${spec.ratePerSec} webhooks/s`);
  const load = new LoadGenerator({ url: d.webhookUrl(), ratePerSec: spec.ratePerSec, ...(spec.kindOf && { kindOf: spec.kindOf }) });
  const streamStart = Date.now();
  const ctx: ScenarioContext = {
    env,
    d,
    load,
    note: (text) => notes.push(`t+${((Date.now() - streamStart) / 1000).toFixed(1)}s ${text}`),
    window: (w) => windows.push(w),
  };
  let verdict: Verdict;
  try {
    load.start();
    await sleep(spec.leadMs);
    try {
      await spec.fault(ctx);
    } catch (err) {
      faultProblems.push(`the fault step failed: ${(err as Error).message.slice(0, 2000)}`);
      ctx.note('fault step failed; restoring services');
      if (env.redis && !env.redis.running()) await env.redis.start().catch(() => undefined);
      if (!env.postgres.running()) await env.postgres.start().catch(() => undefined);
      await ensureRunning(d).catch((e: unknown) => faultProblems.push(`could not restore the gateway: ${(e as Error).message.slice(0, 2000)}`));
    }
    await sleep(spec.tailMs);
    ctx.note(`stream stopped after ${load.sent()} messages; waiting for the sender's retries`);
    await load.stop();
    ctx.note(`sender done; responses by status (0 = network error): ${JSON.stringify(load.statusCounts())}`);
    env.proxy.setRule(spec.proxyRule ?? passAll);
    const q = await waitUntilQuiet(d, load, spec.quietTimeoutMs);
    notes.push(q.quiet ? `quiet ${q.waitedMs} ms after the sender finished` : `NOT quiet after ${q.waitedMs} ms: ${q.unsettled} acknowledged message(s) unsettled in the store`);
    verdict = await verify(d, load, env.fhir.baseUrl, d.queue === 'postgres' ? undefined : () => openQueueClient(env, d));
    verdict.problems.unshift(...faultProblems);
    processes(d).forEach((p, i) => {
      for (const c of p.crashes.slice(crashesBefore[i])) {
        if (c.external) {
          notes.push(`${c.name} was stopped at t+${((c.at - streamStart) / 1000).toFixed(1)}s by a SIGTERM this suite did not send (another process on the machine); restarted`);
          continue;
        }
        const error = c.tail.split('\n').filter((l) => /Error|error|throw|at /.test(l) && !l.startsWith('{')).slice(0, 8).join(' | ');
        verdict.problems.unshift(`${c.name} crashed (exit ${c.exit}) at t+${((c.at - streamStart) / 1000).toFixed(1)}s and was restarted: ${error || c.tail.slice(-600)}`);
      }
    });
    if (spec.check) verdict.problems.push(...(await spec.check(ctx, windows)));
    const injected = [...env.proxy.injected.entries()].map(([s, n]) => `${s}×${n}`).join(', ');
    if (injected) notes.push(`FHIR proxy injected: ${injected}`);
  } finally {
    await load.stop();
    env.proxy.setRule(passAll);
  }
  const durationMs = Date.now() - t0;
  notes.push(`scenario time: ${(durationMs / 1000).toFixed(1)} s`);
  if (verdict.problems.length > 0 || process.env['FAULTS_KEEP_LOGS'] === '1') notes.push(`gateway logs will be kept in ${path.join(env.keepLogs(), d.name)}`);
  const report = formatReport(spec.title, verdict, notes);
  print(report);
  return { verdict, report, durationMs };
}

/** 2xx answers to requests that began after `from` and ended before `to`. */
export function acknowledgedWithin(load: LoadGenerator, from: number, to: number): number {
  return load.responses.filter((r) => r.status >= 200 && r.status < 300 && r.startedAt >= from && r.endedAt <= to).length;
}

/** Answers with `status` to requests that began after `from` and ended before `to`. */
export function statusesWithin(load: LoadGenerator, from: number, to: number, status: number): number {
  return load.responses.filter((r) => r.status === status && r.startedAt >= from && r.endedAt <= to).length;
}

export interface ScenarioTest extends Omit<ScenarioSpec, 'ratePerSec' | 'quietTimeoutMs'> {
  /** The test's name. */
  test: string;
  /** Defaults to the suite's rate. */
  ratePerSec?: number;
  /** Defaults to the suite's bound. */
  quietTimeoutMs?: number;
  /** Expectations beyond "no problems", on the result. */
  expectAlso?(result: ScenarioResult): void;
}

export interface DeploymentSuite {
  /** The describe block's title. */
  title: string;
  environment: () => FaultEnvironment;
  deployment: Parameters<typeof deploy>[1];
  ratePerSec: number;
  quietTimeoutMs: number;
  /** Skip the block (loudly reported by the caller), e.g. when redis-server is missing. */
  skip?: boolean;
  /** Bound of each scenario's test, when the suite's default (vitest.faults.config.ts) is too short for its stream and quiet bound. */
  testTimeoutMs?: number;
  scenarios: readonly ScenarioTest[];
}

/**
 * The suite's skeleton, once: a describe block on one deployment (deployed before its scenarios,
 * closed after) with one test per scenario, each run from stream to report and expected to end
 * with no problems.
 */
export function describeDeployment(suite: DeploymentSuite): void {
  describe.skipIf(suite.skip ?? false)(suite.title, () => {
    let d: Deployment | undefined;
    beforeAll(async () => {
      d = await deploy(suite.environment(), suite.deployment);
    });
    afterAll(async () => {
      await d?.close();
    });
    for (const { test, expectAlso, ...spec } of suite.scenarios) {
      it(test, async () => {
        if (!d) throw new Error(`deployment ${suite.deployment.name} did not start`);
        const r = await runScenario(suite.environment(), d, { ratePerSec: suite.ratePerSec, quietTimeoutMs: suite.quietTimeoutMs, ...spec });
        expect(r.verdict.problems).toEqual([]);
        expectAlso?.(r);
      }, suite.testTimeoutMs);
    }
  });
}
