/**
 * `switchboard store prune [--dry-run]`: retention by dropping whole time partitions, never row
 * by row. Today that is the audit trail's yearly partitions older than AUDIT_RETENTION_YEARS
 * (default 6); each drop is recorded in the trail first, so `audit verify` still passes.
 */
import { UsageError, parseCommandArgs } from '../args.js';
import { EXIT_OK, type CliIo } from '../io.js';
import { cliPrincipal, openStoreAccess } from '../store-access.js';

export const DEFAULT_AUDIT_RETENTION_YEARS = 6;

export function auditCutoff(now: Date, years: number): Date {
  const d = new Date(now);
  d.setUTCFullYear(d.getUTCFullYear() - years);
  return d;
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

  const store = await openStoreAccess(io);
  try {
    const expired = await store.audit.expiredPartitions(cutoff);
    const head = `audit trail: retention ${years} years (entries recorded before ${cutoff.toISOString().slice(0, 10)} may go, a whole year at a time)`;
    const lines = [head];
    if (expired.length === 0) lines.push('  nothing to drop');
    if (values['dry-run']) {
      for (const p of expired) lines.push(`  would drop ${p.name}: ${p.entries} entries${p.firstSeq !== null ? ` (${p.firstSeq}-${p.lastSeq})` : ''}`);
    } else {
      for (const d of await store.audit.prune(cutoff, cliPrincipal(), 'cli')) lines.push(`  dropped ${d.name}: ${d.entries} entries`);
    }
    lines.push('message store: no time partitions to drop (payload and metadata retention are not implemented yet: see README, "Retention")');
    io.stdout(`${lines.join('\n')}\n`);
    return EXIT_OK;
  } finally {
    await store.close();
  }
}
