/**
 * Messages exchanged over IPC between the bench orchestrator (bench/run.ts) and its children:
 * the system under test (bench/sut-*.ts) and the load generator (bench/generator.ts).
 *
 * Times are milliseconds on the machine's monotonic clock (CLOCK_MONOTONIC via
 * process.hrtime), which every process on the same machine shares, so a send time taken in the
 * generator and a create time taken in the orchestrator can be subtracted.
 */

/** Monotonic milliseconds, comparable across processes on one machine. */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

// ---- system under test --------------------------------------------------------------------

export type SutKind = 'baseline' | 'switchboard';
export type QueueKind = 'redis' | 'postgres';

export interface SutConfig {
  kind: SutKind;
  queue: QueueKind;
  /** Set for the redis scenarios. */
  redisUrl?: string;
  /** Baseline-postgres: the queue database. Switchboard: the store database (and queues when no Redis). */
  databaseUrl: string;
  fhirBaseUrl: string;
  appSecret: string;
  verifyToken: string;
  /** Baseline only: the fixed `$patient` binding (the demo Patient). */
  patient?: { reference: string; display: string };
  /** Baseline only: worker concurrency. */
  concurrency: number;
  queuePrefix: string;
  repoRoot: string;
  /** A directory of its own inside the bench's temporary directory (removed with it). */
  dataDir: string;
  /** Switchboard only: `shipped` = channels/ as it is; `ehr-only` = a copy of whatsapp-to-ehr alone. */
  channels: 'shipped' | 'ehr-only';
  /** Switchboard only: false runs the plaintext store (the encryption-off comparison). */
  encryption: boolean;
  /** Switchboard only: more `${VAR}` values for channel files (partners the bench points at a sink). */
  extraEnv: Record<string, string>;
}

export type ToSut = { type: 'phase-begin' } | { type: 'phase-end' } | { type: 'stop' };

export interface SutPhaseStats {
  peakRssBytes: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  /** Event-loop utilisation (0..1) over the phase. */
  elu: number;
}

export type FromSut =
  | { type: 'ready'; url: string; webhookPath: string; pid: number; description: string }
  | { type: 'phase-stats'; stats: SutPhaseStats }
  | { type: 'stopped'; peakRssBytes: number }
  | { type: 'fatal'; message: string };

// ---- generator ----------------------------------------------------------------------------

export interface GeneratorRun {
  type: 'run';
  phase: string;
  url: string;
  /** Offered rate, messages per second (open loop). */
  rate: number;
  durationMs: number;
  appSecret: string;
  /** WhatsApp sender (wa_id), digits only. */
  from: string;
  /** Unique per run: goes into every wamid. */
  runId: string;
  /** Requests outstanding at once before the generator gives up on the phase. */
  maxInFlight: number;
  /** A request with no answer after this is counted as an error. */
  requestTimeoutMs: number;
}

export type ToGenerator = GeneratorRun | { type: 'abort'; phase: string } | { type: 'exit' };

/** [wamid, sendMs] */
export type SentRecord = [string, number];
/** [wamid, ackMs, status (0 = transport error or timeout)] */
export type AckRecord = [string, number, number];

export interface GeneratorDone {
  type: 'done';
  phase: string;
  scheduled: number;
  sent: number;
  /** Largest delay between a message's scheduled send time and the actual send, ms. */
  maxLagMs: number;
  /** Messages not sent because maxInFlight was reached (the gateway stopped answering). */
  cappedAt: number | null;
  aborted: boolean;
  /** Requests still unanswered when the generator stopped waiting. */
  unanswered: number;
  firstSendMs: number;
  lastSendMs: number;
  cpuUserUs: number;
  cpuSystemUs: number;
}

export type FromGenerator =
  | { type: 'ready'; pid: number }
  | { type: 'sent'; phase: string; recs: SentRecord[] }
  | { type: 'acked'; phase: string; recs: AckRecord[] }
  | GeneratorDone;
