/**
 * `switchboard store prune [--dry-run]`: retention by dropping whole time partitions, never row
 * by row. The audit trail's yearly partitions older than AUDIT_RETENTION_YEARS (default 6), each
 * drop recorded in the trail first so `audit verify` still passes; and the message store's weekly
 * partitions once their week is over, holding back what a pending or dead-lettered delivery still
 * needs (src/store/retention-store.ts). Both runs are audited (`store.pruned`).
 */
import path from 'node:path';
import { removeMediaFile } from '../../media/media-store.js';
import { RetentionStore, weekAuditDetail, weekAuditResources, type WeekPlan } from '../../store/retention-store.js';
import { UsageError, parseCommandArgs } from '../args.js';
import { EXIT_OK, type CliIo } from '../io.js';
import { cliPrincipal, openStoreAccess } from '../store-access.js';

export const DEFAULT_AUDIT_RETENTION_YEARS = 6;

export function auditCutoff(now: Date, years: number): Date {
  const d = new Date(now);
  d.setUTCFullYear(d.getUTCFullYear() - years);
  return d;
}

const size = (bytes: number): string => (bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(0)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`);

/** The lines that describe one week's partitions: dropped, or that would be. */
export function describeWeek(p: WeekPlan, verb: string): string[] {
  const lines = [`  week of ${p.week}:`];
  for (const t of p.partitions) lines.push(`    ${verb} ${t.name}: ${t.rows} rows, ${size(t.bytes)}`);
  const h = p.held;
  lines.push(
    `    held back (moved to a later week with their payloads): ${h.messages} messages with ${h.pendingDeliveries} pending and ${h.deadLetteredDeliveries} dead-lettered deliveries, ${h.eventsNotIngested} events not yet ingested`,
  );
  if (p.carried > 0) lines.push(`    carried to a later week without their payloads (metadata kept longer): ${p.carried} rows`);
  return lines;
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseCommandArgs(rest, { 'dry-run': { type: 'boolean', default: false } });
  if (sub !== 'prune') throw new UsageError(sub === undefined ? 'give a subcommand: prune' : `unknown subcommand "${sub}"`);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const raw = io.env['AUDIT_RETENTION_YEARS'];
  const years = raw === undefined || raw === '' ? DEFAULT_AUDIT_RETENTION_YEARS : Number(raw);
  if (!Number.isInteger(years) || years < 1) throw new UsageError(`AUDIT_RETENTION_YEARS=${raw}: a whole number of years, at least 1`);
  const cutoff = auditCutoff(new Date(), years);
  const dryRun = values['dry-run'];

  const store = await openStoreAccess(io);
  try {
    const expired = await store.audit.expiredPartitions(cutoff);
    const head = `audit trail: retention ${years} years (entries recorded before ${cutoff.toISOString().slice(0, 10)} may go, a whole year at a time)`;
    const lines = [head];
    if (expired.length === 0) lines.push('  nothing to drop');
    if (dryRun) {
      for (const p of expired) lines.push(`  would drop ${p.name}: ${p.entries} entries${p.firstSeq !== null ? ` (${p.firstSeq}-${p.lastSeq})` : ''}`);
    } else {
      for (const d of await store.audit.prune(cutoff, cliPrincipal(), 'cli')) lines.push(`  dropped ${d.name}: ${d.entries} entries`);
    }

    lines.push('message store: per-channel retention (weekly partitions, dropped once their week is over)');
    const retention = new RetentionStore(store.pool);
    if (dryRun) {
      const plan = await retention.plan();
      if (plan.length === 0) {
        lines.push('  nothing to drop');
        await store.record({ action: 'store.pruned', outcome: 'success', detail: { table: 'message store', dry_run: true, weeks: 0 } });
      }
      for (const p of plan) {
        lines.push(...describeWeek(p, 'would drop'));
        await store.record({ action: 'store.pruned', outcome: 'success', resources: weekAuditResources(p), detail: weekAuditDetail(p, true) });
      }
    } else {
      const mediaDir = path.join(store.dataDir, 'media');
      const result = await retention.prune({
        removeMedia: (key) => removeMediaFile(mediaDir, key),
        beforeDrop: (p) => store.record({ action: 'store.pruned', outcome: 'success', resources: weekAuditResources(p), detail: weekAuditDetail(p, false) }),
      });
      if (result === null) lines.push('  another pruning run is under way; nothing done');
      else {
        if (result.weeks.length === 0) lines.push('  nothing to drop');
        for (const p of result.weeks) lines.push(...describeWeek(p, 'dropped'));
        if (result.mediaFilesDeleted > 0) lines.push(`  media files deleted: ${result.mediaFilesDeleted}`);
      }
    }
    io.stdout(`${lines.join('\n')}\n`);
    return EXIT_OK;
  } finally {
    await store.close();
  }
}
