/** The shape of a bench run's results: printed by bench/report.ts, written as JSON by bench/run.ts. */
import type { QueueKind, SutKind, SutPhaseStats } from './protocol.js';
import type { QueueBacklog } from './backlog-probe.js';
import type { Percentiles } from './stats.js';

/** `encryption: false`: the same gateway with a plaintext store, to measure what encryption costs. */
export const SCENARIOS = {
  'baseline-redis': { kind: 'baseline', queue: 'redis', encryption: false },
  'switchboard-redis': { kind: 'switchboard', queue: 'redis', encryption: true },
  'switchboard-redis-plaintext': { kind: 'switchboard', queue: 'redis', encryption: false },
  'baseline-postgres': { kind: 'baseline', queue: 'postgres', encryption: false },
  'switchboard-postgres': { kind: 'switchboard', queue: 'postgres', encryption: true },
  'switchboard-postgres-plaintext': { kind: 'switchboard', queue: 'postgres', encryption: false },
} as const satisfies Record<string, { kind: SutKind; queue: QueueKind; encryption: boolean }>;
export type ScenarioName = keyof typeof SCENARIOS;

export interface BenchOptions {
  quick: boolean;
  /** Offered rate of the fixed-rate phase (the latency comparison), msg/s. */
  rate: number;
  durationS: number;
  warmupS: number;
  /** Offered rates of the max-sustained search, ascending. */
  rates: number[];
  /** Bisections between the last passing and the first failing step. */
  bisect: number;
  stepS: number;
  /** After the last send of a phase: time allowed for its messages to be delivered. */
  drainS: number;
  /** After a scenario's last phase: time allowed for any backlog before undelivered = lost. */
  finalDrainS: number;
  /** A step passes only with p99 end-to-end latency at or under this. */
  p99Ms: number;
  /** A step is cut short when its oldest undelivered message is older than this. */
  abortAfterMs: number;
  scenarios: ScenarioName[];
  /** Baseline worker concurrency (Switchboard's delivery default is 8). */
  concurrency: number;
  /** Index the FHIR sandbox's conditional-create search (see bench/fhir-recorder.ts). */
  fhirIndex: boolean;
  /** Switchboard's channels: the shipped directory, or a copy of whatsapp-to-ehr alone. */
  channels: 'shipped' | 'ehr-only';
  /** V8 CPU profile of each gateway process, written to .bench/profiles/. */
  profile: boolean;
  /** After the search: a phase at 60 % of the bare pipeline's max sustained rate, for every scenario. */
  at60: boolean;
}

export interface CpuPerMessage {
  /** µs of CPU per delivered message. */
  gateway: number | null;
  redis: number | null;
  postgres: number | null;
  /** The bench process: FHIR sandbox + recorder + orchestration. */
  fhirServer: number | null;
  generator: number | null;
}

/** `at60`: after the search, at 60 % of the bare pipeline's max sustained rate (not a search step). */
export type PhaseKind = 'warmup' | 'fixed' | 'step' | 'at60';

export interface PhaseResult {
  name: string;
  kind: PhaseKind;
  offeredRate: number;
  plannedDurationS: number;
  /** First to last send, seconds. */
  sendWindowS: number;
  scheduled: number;
  sent: number;
  acked2xx: number;
  /** Non-2xx answers by status (0 = transport error or timeout). */
  rejected: Record<string, number>;
  unanswered: number;
  /** Delivered by the end of the phase's drain window. */
  delivered: number;
  /** Acknowledged 2xx but not delivered within the drain window (may still arrive later). */
  undeliveredInWindow: number;
  duplicates: number;
  e2e: Percentiles | null;
  ack: Percentiles | null;
  /** Deliveries per second over the send window (after its first second). */
  deliveredPerS: number | null;
  generatorMaxLagMs: number;
  generatorCappedAt: number | null;
  abortedForBacklog: boolean;
  drainMs: number;
  sut: SutPhaseStats | null;
  /** Largest backlog (waiting + delayed) and active count seen per queue, sampled every second. */
  backlog: QueueBacklog[];
  /** Most client connections the system under test held on its database during the phase. */
  pgConnectionsPeak: number | null;
  cpuPerMessageUs: CpuPerMessage;
  pass: boolean;
  reasons: string[];
}

export interface ScenarioResult {
  name: ScenarioName;
  kind: SutKind;
  queue: QueueKind;
  /** Switchboard: values encrypted at rest (false: the plaintext store, for comparison). */
  encryption: boolean;
  description: string;
  startupMs: number;
  phases: PhaseResult[];
  /** Highest offered rate that passed (the fixed-rate phase counts as a step). */
  maxSustained: number | null;
  /** Highest deliveries per second seen in any measured phase. */
  peakDeliveredPerS: number | null;
  peakRssBytes: number | null;
  /** Most client connections the system under test held on its database, whole scenario. */
  pgConnectionsPeak: number | null;
  /** Rows added to the message store (public schema, every table) per delivered message. */
  storeRowsPerMessage: number | null;
  totals: {
    sent: number;
    acked2xx: number;
    rejected: number;
    unanswered: number;
    delivered: number;
    /** Acknowledged 2xx and never delivered, even after the final drain: a failure of the run. */
    lost: number;
    lostSample: string[];
    duplicates: number;
    duplicateSample: string[];
    finalDrainMs: number;
  };
  fhir: { indexedSearches: number; scannedSearches: number };
  /** Machine load when the scenario started and ended (others share the machine). */
  conditions: { start: Conditions; end: Conditions } | null;
  /** Load-independent work per delivered message over the measured phases (retries included). */
  workPerMessage: {
    messages: number;
    redisCommands: number | null;
    pgTransactions: number | null;
    pgRowsWritten: number | null;
    pgRowsRead: number | null;
    fhirSearches: number | null;
    fhirCreates: number | null;
  } | null;
  /**
   * Growth of the message store (tables, indexes and TOAST of the public schema, queues excluded)
   * over the scenario, divided by delivered messages. Switchboard only.
   */
  storeBytesPerMessage: number | null;
  error?: string;
}

export interface Conditions {
  at: string;
  loadavg: [number, number, number];
  cpuPressure: string | undefined;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  command: string;
  options: BenchOptions;
  machine: {
    node: string;
    platform: string;
    kernel: string;
    cpuModel: string;
    cpus: number;
    memTotalBytes: number;
    redis: string | null;
    postgres: string | null;
    packages: Record<string, string>;
  };
  conditions: { start: Conditions; end: Conditions };
  scenarios: ScenarioResult[];
  /** Lost or duplicated messages, scenarios that did not complete: the run failed (exit code 1). */
  failures: string[];
  /** Conditions that make figures less trustworthy (saturated machine, fixed rate not sustained). */
  warnings: string[];
}
