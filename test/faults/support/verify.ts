/**
 * After a scenario: wait (bounded) until the system is quiet, then check every message against
 * the receiver and the dead-letter queue, and print the report block other tooling parses.
 */
import type { Cluster, Redis } from 'ioredis';
import { CHANNEL_ID, IDENTIFIER_SYSTEM, type Deployment } from './environment.js';
import type { LoadGenerator, MessageKind, SentMessage } from './load-generator.js';
import { sleep } from './processes.js';

export interface DeadLetterItem {
  id: string;
  sourceMessageId: string;
  lastErrorCode: string | null;
  destination: string;
  attempts: number;
}

export interface Verdict {
  sent: number;
  acknowledged: number;
  delivered: number;
  deadLettered: number;
  duplicated: number;
  lost: number;
  /** Everything that makes the scenario fail, in words. */
  problems: string[];
  /** Facts for the report that are not part of the parsed block. */
  notes: string[];
}

const FINAL = new Set(['delivered', 'dead_lettered', 'dropped', 'discarded']);
const EXPECTED_CAUSE: Record<Exclude<MessageKind, 'good'>, string> = {
  'poison-mapping': 'MAPPING_EVALUATE',
  'poison-422': 'FHIR_HTTP_PERMANENT',
};

/**
 * Communications at the FHIR server (queried directly, not through the proxy), by identifier
 * value. Pages with `_offset` (the sandbox's search Bundles carry no `next` link) until the
 * Bundle's `total` is reached.
 */
export async function countCommunications(fhirBase: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const pageSize = 1000;
  let seen = 0;
  for (let page = 0; page < 1000; page++) {
    const r = await fetch(`${fhirBase}/Communication?_count=${pageSize}&_offset=${page * pageSize}`, {
      headers: { accept: 'application/fhir+json' },
      signal: AbortSignal.timeout(30_000),
    });
    if (r.status !== 200) throw new Error(`FHIR search answered ${r.status}`);
    const b = (await r.json()) as { total?: number; entry?: { resource: { identifier?: { system?: string; value?: string }[] } }[] };
    const entries = b.entry ?? [];
    for (const e of entries) {
      for (const id of e.resource.identifier ?? []) {
        if (id.system === IDENTIFIER_SYSTEM && id.value) counts.set(id.value, (counts.get(id.value) ?? 0) + 1);
      }
    }
    seen += entries.length;
    if (entries.length < pageSize) {
      if (b.total !== undefined && seen !== b.total) throw new Error(`FHIR paging saw ${seen} Communications of ${b.total}`);
      return counts;
    }
  }
  throw new Error('FHIR paging did not end');
}

/** The dead-letter queue of the channel, through the admin API of the http process (paged). */
export async function listDeadLetters(d: Deployment): Promise<DeadLetterItem[]> {
  const out: DeadLetterItem[] = [];
  let query = `channel=${CHANNEL_ID}&limit=1000`;
  for (let page = 0; page < 1000; page++) {
    const r = await d.admin(`/admin/dead-letters?${query}`);
    if (r.status !== 200) throw new Error(`GET /admin/dead-letters answered ${r.status}: ${await r.text()}`);
    const b = (await r.json()) as { items: DeadLetterItem[]; next: { after_at: string; after_id: string } | null };
    out.push(...b.items);
    if (!b.next) break;
    query = `channel=${CHANNEL_ID}&limit=1000&after_at=${encodeURIComponent(b.next.after_at)}&after_id=${b.next.after_id}`;
  }
  return out;
}

/** Store states of the deliveries of the given messages (wamids), by wamid. */
async function storeStates(d: Deployment, wamids: readonly string[]): Promise<Map<string, string[]>> {
  const wamidByIndex = new Map(wamids.map((w) => [d.sourceIndex(w).toString('hex'), w]));
  const r = await d.db.query<{ ix: Buffer; state: string }>(
    `SELECT m.source_index AS ix, d.state FROM messages m JOIN deliveries d ON d.message_id = m.id
     WHERE m.channel_id = $1 AND m.source_index = ANY($2::bytea[])`,
    [CHANNEL_ID, [...wamidByIndex.keys()].map((h) => Buffer.from(h, 'hex'))],
  );
  const byWamid = new Map<string, string[]>();
  for (const row of r.rows) {
    const wamid = wamidByIndex.get(row.ix.toString('hex'));
    if (wamid !== undefined) byWamid.set(wamid, [...(byWamid.get(wamid) ?? []), row.state]);
  }
  return byWamid;
}

/**
 * Quiet: every acknowledged message of this scenario has reached a final state in the store and
 * none of its messages is pending, twice in a row. Bounded by `timeoutMs`.
 */
export async function waitUntilQuiet(d: Deployment, load: LoadGenerator, timeoutMs: number): Promise<{ quiet: boolean; waitedMs: number; unsettled: number }> {
  const started = Date.now();
  const sent = [...load.messages.keys()];
  const acked = load.acknowledged().map((m) => m.wamid);
  let calm = 0;
  let unsettled = acked.length;
  while (Date.now() - started < timeoutMs) {
    try {
      const s = await storeStates(d, sent);
      unsettled = acked.filter((w) => !(s.get(w) ?? []).some((st) => FINAL.has(st))).length;
      const pending = [...s.values()].some((states) => states.includes('pending'));
      calm = unsettled === 0 && !pending ? calm + 1 : 0;
      if (calm >= 2) return { quiet: true, waitedMs: Date.now() - started, unsettled: 0 };
    } catch {
      calm = 0; // the store may still be coming back; keep waiting
    }
    await sleep(1000);
  }
  return { quiet: false, waitedMs: Date.now() - started, unsettled };
}

/** What the store and the queue know about one message: for bug reports on lost messages. */
/** Opens a connected client on the deployment's Redis (undefined: PostgreSQL queues). */
export type QueueClientOpener = () => Promise<Redis | Cluster | undefined>;

async function diagnose(d: Deployment, m: SentMessage, openQueue: QueueClientOpener | undefined): Promise<string> {
  const parts: string[] = [`${m.wamid} (${m.kind}, seq ${m.seq}, tries ${m.tries}, statuses ${JSON.stringify(Object.fromEntries(m.statuses))})`];
  try {
    // Raw payloads are encrypted: find the events through the message's blind index.
    const ev = await d.db.query<{ id: string; state: string; received_at: Date }>(
      `SELECT DISTINCT e.id, e.state, e.received_at FROM inbound_events e JOIN messages m ON m.event_id = e.id
       WHERE m.channel_id = $1 AND m.source_index = $2 ORDER BY e.received_at`,
      [CHANNEL_ID, d.sourceIndex(m.wamid)],
    );
    parts.push(`events: ${ev.rows.map((e) => `${e.id}=${e.state}`).join(', ') || 'none'}`);
    const dl = await d.db.query<{ id: string; state: string; generation: number; attempts: number; last_error_code: string | null }>(
      `SELECT d.id, d.state, d.generation, d.attempts, d.last_error_code FROM deliveries d JOIN messages m ON m.id = d.message_id
       WHERE m.channel_id = $1 AND m.source_index = $2`,
      [CHANNEL_ID, d.sourceIndex(m.wamid)],
    );
    parts.push(`deliveries: ${dl.rows.map((x) => `${x.id} ${x.state} g${x.generation} attempts=${x.attempts} code=${x.last_error_code}`).join(', ') || 'none'}`);
    const queues = { ingest: 'ingest', deliver: `deliver.${CHANNEL_ID}.ehr` };
    const jobIds = [...ev.rows.map((e) => ({ queue: queues.ingest, id: e.id })), ...dl.rows.map((x) => ({ queue: queues.deliver, id: `${x.id}-g${x.generation}` }))];
    if (d.queue === 'postgres') {
      for (const j of jobIds) {
        const r = await d.db.query<{ state: string; attempts_made: number; attempts_started: number; stalled_count: number; failed_reason: string | null; locked_until_ms: string | null }>(
          'SELECT state, attempts_made, attempts_started, stalled_count, failed_reason, locked_until_ms FROM bullmq.job WHERE queue = $1 AND id = $2',
          [j.queue, j.id],
        );
        const row = r.rows[0];
        parts.push(
          row
            ? `${j.queue}/${j.id}: ${row.state} atm=${row.attempts_made} ats=${row.attempts_started} stc=${row.stalled_count} lockedUntil=${row.locked_until_ms ? new Date(Number(row.locked_until_ms)).toISOString() : '-'} failedReason=${JSON.stringify(row.failed_reason)}`
            : `${j.queue}/${j.id}: no job`,
        );
      }
    } else {
      const r = await openQueue?.();
      if (r) {
        try {
          for (const j of jobIds) {
            const h = await r.hgetall(`${d.queuePrefix}:${j.queue}:${j.id}`);
            if (Object.keys(h).length === 0) {
              parts.push(`${j.queue}/${j.id}: no job`);
              continue;
            }
            const where: string[] = [];
            for (const set of ['wait', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'paused', 'waiting-children']) {
              const key = `${d.queuePrefix}:${j.queue}:${set}`;
              const type = await r.type(key);
              const member = type === 'zset' ? (await r.zscore(key, j.id)) !== null : type === 'list' ? (await r.lpos(key, j.id)) !== null : false;
              if (member) where.push(set);
            }
            parts.push(`${j.queue}/${j.id}: in [${where.join(',') || 'no set'}] atm=${h['atm'] ?? '-'} ats=${h['ats'] ?? '-'} stc=${h['stc'] ?? '-'} failedReason=${JSON.stringify(h['failedReason'] ?? null)}`);
          }
        } finally {
          r.disconnect();
        }
      }
    }
  } catch (err) {
    parts.push(`(diagnosis failed: ${(err as Error).message})`);
  }
  return parts.join('\n      ');
}

export async function verify(d: Deployment, load: LoadGenerator, fhirBase: string, openQueue: QueueClientOpener | undefined): Promise<Verdict> {
  const problems: string[] = [];
  const notes: string[] = [];
  const counts = await countCommunications(fhirBase);
  const dead = await listDeadLetters(d);
  const deadBy = new Map<string, DeadLetterItem[]>();
  for (const x of dead) deadBy.set(x.sourceMessageId, [...(deadBy.get(x.sourceMessageId) ?? []), x]);

  const all = [...load.messages.values()];
  const acked = all.filter((m) => m.ackedAt !== undefined);
  let delivered = 0;
  let deadLettered = 0;
  const duplicated: SentMessage[] = [];
  const lost: SentMessage[] = [];
  const poisonDelivered: SentMessage[] = [];
  const goodDead: SentMessage[] = [];
  const wrongCause: string[] = [];
  const poisonNotDead: SentMessage[] = [];
  for (const m of all) {
    const n = counts.get(m.wamid) ?? 0;
    const dl = deadBy.get(m.wamid) ?? [];
    if (n >= 1) delivered++;
    if (n > 1) duplicated.push(m);
    if (dl.length > 0) deadLettered++;
    if (m.ackedAt !== undefined && n === 0 && dl.length === 0) lost.push(m);
    if (m.kind === 'good') {
      if (dl.length > 0) goodDead.push(m);
    } else {
      if (n > 0) poisonDelivered.push(m);
      if (m.ackedAt !== undefined && dl.length === 0) poisonNotDead.push(m);
      const expected = EXPECTED_CAUSE[m.kind];
      for (const x of dl) if (x.lastErrorCode !== expected) wrongCause.push(`${m.wamid} (${m.kind}): cause ${x.lastErrorCode}, expected ${expected}`);
    }
  }
  const list = (ms: SentMessage[]) => ms.slice(0, 10).map((m) => `${m.wamid} (${m.kind}, seq ${m.seq})`).join(', ') + (ms.length > 10 ? `, … ${ms.length - 10} more` : '');
  if (lost.length > 0) {
    const diag: string[] = [];
    for (const m of lost.slice(0, 5)) diag.push(await diagnose(d, m, openQueue));
    problems.push(`lost ${lost.length} acknowledged message(s): neither delivered nor dead-lettered:\n    ${diag.join('\n    ')}`);
  }
  if (duplicated.length > 0) problems.push(`duplicated ${duplicated.length} message(s) at the FHIR server: ${duplicated.slice(0, 10).map((m) => `${m.wamid}×${counts.get(m.wamid)}`).join(', ')}`);
  if (poisonDelivered.length > 0) problems.push(`poison message(s) delivered: ${list(poisonDelivered)}`);
  if (goodDead.length > 0) {
    const causes = new Map<string, number>();
    for (const m of goodDead) for (const x of deadBy.get(m.wamid) ?? []) causes.set(String(x.lastErrorCode), (causes.get(String(x.lastErrorCode)) ?? 0) + 1);
    problems.push(`good message(s) dead-lettered: ${list(goodDead)}; causes ${JSON.stringify(Object.fromEntries(causes))}`);
  }
  if (poisonNotDead.length > 0) problems.push(`acknowledged poison message(s) not in the dead-letter queue: ${list(poisonNotDead)}`);
  if (wrongCause.length > 0) problems.push(`dead-lettered with an unexpected cause: ${wrongCause.slice(0, 10).join('; ')}`);
  // Delivered or dead-lettered as seen from outside, yet not settled in the store: the store is
  // what operators see (and what per-conversation ordering waits on), so a delivery left pending
  // for good is a defect even when the receiver got the message.
  const settled = await storeStates(d, acked.map((m) => m.wamid));
  const stuck = acked.filter((m) => !lost.includes(m) && !(settled.get(m.wamid) ?? []).some((st) => FINAL.has(st)));
  if (stuck.length > 0) {
    const diag: string[] = [];
    for (const m of stuck.slice(0, 3)) diag.push(await diagnose(d, m, openQueue));
    problems.push(`${stuck.length} acknowledged message(s) reached the FHIR server or the dead-letter queue but their delivery is still pending in the store:\n    ${diag.join('\n    ')}`);
  }
  const unacked = all.filter((m) => m.ackedAt === undefined);
  if (unacked.length > 0) problems.push(`${unacked.length} message(s) never acknowledged within the sender's retry window: ${list(unacked)}`);

  return { sent: all.length, acknowledged: acked.length, delivered, deadLettered, duplicated: duplicated.length, lost: lost.length, problems, notes };
}

/** The report block. The six `key: N` lines are parsed by other tooling: keep them exact. */
export function formatReport(title: string, v: Verdict, notes: readonly string[]): string {
  const lines = [
    '',
    `=== fault scenario ${title} ===`,
    `sent: ${v.sent}`,
    `acknowledged: ${v.acknowledged}`,
    `delivered: ${v.delivered}`,
    `dead-lettered: ${v.deadLettered}`,
    `duplicated: ${v.duplicated}`,
    `lost: ${v.lost}`,
    ...[...notes, ...v.notes].map((n) => `# ${n}`),
    ...(v.problems.length === 0 ? ['# result: PASS'] : ['# result: FAIL', ...v.problems.map((p) => `# problem: ${p}`)]),
    `=== end of scenario ${title} ===`,
    '',
  ];
  return lines.join('\n');
}
