/**
 * The audit log over the admin API, for the console's audit page: browse and filter entries
 * (newest first, paged), check the chain as `switchboard audit verify` does, and export a period
 * as `switchboard audit export` does (NDJSON or FHIR R4 AuditEvent). Viewing, verifying and
 * exporting are each recorded in the trail they read.
 */
import { Readable } from 'node:stream';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { auditActions, type AuditAction, type AuditEntry, type AuditRecorder, type RecordedAuditEntry } from '../core/audit.js';
import { auditEntryJson } from '../core/audit-json.js';
import { auditExportFormats, auditExportLine } from '../fhir/audit-event.js';
import { auditVerifiedDetail, describeVerifyResult, type AuditFilter, type VerifyResult } from '../store/audit-store.js';
import { bad, principalOf } from './admin-routes.js';

/** What the routes read of the trail (the store's AuditStore). */
export interface AuditTrail {
  search(f: AuditFilter): Promise<RecordedAuditEntry[]>;
  count(o: { since?: Date | undefined; until?: Date | undefined }): Promise<number>;
  entries(o: { since?: Date | undefined; until?: Date | undefined }): AsyncGenerator<RecordedAuditEntry>;
  verify(): Promise<VerifyResult>;
}

export interface AuditRouteDeps {
  trail: AuditTrail;
  audit: AuditRecorder;
}

const instant = z.iso.datetime({ offset: true });
const actionList = z
  .string()
  .transform((s) => s.split(',').map((a) => a.trim()).filter((a) => a.length > 0))
  .pipe(z.array(z.enum(auditActions)));

const listQuery = z
  .object({
    since: instant.optional(),
    until: instant.optional(),
    action: actionList.optional(),
    outcome: z.enum(['success', 'failure']).optional(),
    principal: z.string().min(1).max(200).optional(),
    resource: z.string().min(1).max(200).optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
    before_seq: z.coerce.number().int().min(1).optional(),
  })
  .strict();

const exportQuery = z
  .object({
    since: instant.optional(),
    until: instant.optional(),
    format: z.enum(auditExportFormats).default('ndjson'),
  })
  .strict();

const stamp = (d: Date) => d.toISOString().replace(/[:.]/g, '-');

export function createAuditRouter(deps: AuditRouteDeps): Router {
  const router = new Router({ prefix: '/admin/audit' });
  const record = (ctx: Context, e: Omit<AuditEntry, 'principal' | 'sourceAddress'>) => deps.audit.record({ ...e, principal: principalOf(ctx), sourceAddress: ctx.ip });

  router.get('/', async (ctx) => {
    const q = listQuery.safeParse(ctx.query);
    if (!q.success) return bad(ctx, 400, 'QUERY_INVALID', z.prettifyError(q.error));
    const f = q.data;
    const since = f.since === undefined ? undefined : new Date(f.since);
    const until = f.until === undefined ? undefined : new Date(f.until);
    if (since && until && since >= until) return bad(ctx, 400, 'QUERY_INVALID', 'since must be before until');
    const limit = f.limit ?? 50;
    const items = await deps.trail.search({ since, until, actions: f.action, outcome: f.outcome, principal: f.principal, resourceId: f.resource, beforeSeq: f.before_seq, limit });
    await record(ctx, {
      action: 'audit.viewed',
      outcome: 'success',
      detail: {
        listed: items.length,
        first_seq: items[0]?.seq ?? null,
        last_seq: items.at(-1)?.seq ?? null,
        action: f.action?.join(',') ?? null,
        principal: f.principal ?? null,
        resource: f.resource ?? null,
      },
    });
    const last = items.at(-1);
    ctx.body = {
      items: items.map(auditEntryJson),
      next: last && items.length === limit && last.seq > 1 ? { before_seq: last.seq } : null,
      actions: auditActions satisfies readonly AuditAction[],
    };
  });

  router.get('/verify', async (ctx) => {
    const r = await deps.trail.verify();
    await record(ctx, { action: 'audit.verified', outcome: r.ok ? 'success' : 'failure', detail: auditVerifiedDetail(r) });
    ctx.body = r.ok
      ? { ok: true, summary: describeVerifyResult(r), entries: r.entries, first_seq: r.firstSeq, last_seq: r.lastSeq }
      : { ok: false, summary: describeVerifyResult(r), entries: r.entries, seq: r.seq, recorded_at: r.recordedAt.toISOString(), problem: r.problem };
  });

  router.get('/export', async (ctx) => {
    const q = exportQuery.safeParse(ctx.query);
    if (!q.success) return bad(ctx, 400, 'QUERY_INVALID', z.prettifyError(q.error));
    const now = new Date();
    const since = q.data.since === undefined ? undefined : new Date(q.data.since);
    // The period ends now at the latest, so the export is exactly what was counted and recorded.
    const until = q.data.until === undefined || new Date(q.data.until) > now ? now : new Date(q.data.until);
    if (since && since >= until) return bad(ctx, 400, 'QUERY_INVALID', 'since must be before until (and not in the future)');
    const format = q.data.format;
    const entries = await deps.trail.count({ since, until });
    // Recorded before a byte leaves: an export whose entry cannot be written does not happen.
    await record(ctx, { action: 'audit.exported', outcome: 'success', detail: { format, entries, since: since?.toISOString() ?? null, until: until.toISOString(), via: 'admin_api' } });
    const trail = deps.trail;
    async function* lines(): AsyncGenerator<string> {
      for await (const e of trail.entries({ since, until })) yield auditExportLine(e, format);
    }
    ctx.type = format === 'fhir' ? 'application/fhir+ndjson' : 'application/x-ndjson';
    ctx.set('Content-Disposition', `attachment; filename="switchboard-audit-${stamp(until)}${format === 'fhir' ? '-fhir' : ''}.ndjson"`);
    ctx.set('Cache-Control', 'no-store');
    ctx.set('X-Audit-Entries', String(entries));
    ctx.body = Readable.from(lines());
  });

  return router;
}
