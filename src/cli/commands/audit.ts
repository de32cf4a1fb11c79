/**
 * `switchboard audit verify`: walks the hash chain of `audit_events`; exit 0 when intact, 1
 * naming the first entry that was altered, removed or inserted.
 * `switchboard audit export --since --until --format ndjson|fhir`: the entries of a period, one
 * JSON per line (FHIR: R4 AuditEvent resources). The export itself is audited.
 */
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { UsageError, parseCommandArgs } from '../args.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';
import { openStoreAccess } from '../store-access.js';
import { auditExportLine } from '../../fhir/audit-event.js';
import { auditVerifiedDetail, describeVerifyResult } from '../../store/audit-store.js';

function instant(name: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const ok = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(v) && !Number.isNaN(Date.parse(v));
  if (!ok) throw new UsageError(`--${name} ${v}: write a date (2025-01-31, UTC) or an ISO 8601 date-time with a zone`);
  return new Date(v);
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseCommandArgs(rest, {
    since: { type: 'string' },
    until: { type: 'string' },
    format: { type: 'string', default: 'ndjson' },
    output: { type: 'string', short: 'o' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (sub !== 'verify' && sub !== 'export') throw new UsageError(sub === undefined ? 'give a subcommand: verify or export' : `unknown subcommand "${sub}"`);
  const format = values.format;
  if (format !== 'ndjson' && format !== 'fhir') throw new UsageError(`--format ${format}: ndjson or fhir`);
  const since = instant('since', values.since);
  const until = instant('until', values.until);
  if (since && until && since >= until) throw new UsageError('--since must be before --until');

  const store = await openStoreAccess(io);
  try {
    if (sub === 'verify') {
      const r = await store.audit.verify();
      io.stdout(`${describeVerifyResult(r)}\n`);
      await store.record({ action: 'audit.verified', outcome: r.ok ? 'success' : 'failure', detail: auditVerifiedDetail(r) });
      return r.ok ? EXIT_OK : EXIT_FAILURES;
    }

    const out = values.output ? createWriteStream(path.resolve(io.cwd, values.output), { mode: 0o600 }) : undefined;
    const write = (line: string) => (out ? new Promise<void>((res, rej) => out.write(line, (err) => (err ? rej(err) : res()))) : Promise.resolve(io.stdout(line)));
    let n = 0;
    for await (const e of store.audit.entries({ since, until })) {
      await write(auditExportLine(e, format));
      n++;
    }
    if (out) await new Promise<void>((res) => out.end(res));
    await store.record({
      action: 'audit.exported',
      outcome: 'success',
      detail: { format, entries: n, since: since?.toISOString() ?? null, until: until?.toISOString() ?? null },
    });
    io.stderr(`exported ${n} audit entries (${format})\n`);
    return EXIT_OK;
  } finally {
    await store.close();
  }
}
