/**
 * `switchboard dlq`: the dead-letter workflow from a terminal, through the admin API of a running
 * gateway: list with filters, show one with its attempt history, replay one, many or all that
 * match (with progress), discard with a reason.
 */
import { z } from 'zod';
import { UsageError, parseCommandArgs } from '../args.js';
import { answerReason, connectGateway, gatewayOptions, type GatewayClient } from '../gateway-client.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';

const deadLetterSchema = z.object({
  id: z.string(),
  reason: z.string().nullable().optional(),
  channelId: z.string(),
  destination: z.string(),
  attempts: z.number(),
  lastErrorCode: z.string().nullable(),
  lastErrorMessage: z.string().nullable(),
  deadLetteredAt: z.string().nullable(),
  sourceMessageId: z.string(),
  messageKind: z.string(),
});
const listSchema = z.object({ items: z.array(deadLetterSchema), next: z.object({ after_at: z.string().optional(), after_id: z.string() }).nullable() });
const countSchema = z.object({ count: z.number() });
const replaySchema = z.object({ replayed: z.number() });
const replayedOneSchema = z.object({ replayed: z.number(), generation: z.number() });
const attemptSchema = z.object({
  generation: z.number(),
  attempt: z.number(),
  finishedAt: z.string(),
  result: z.string(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  retryAfterMs: z.number().nullable(),
  mappingVersion: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()).nullable(),
  response: z.unknown(),
});
export const deliverySchema = deadLetterSchema.extend({
  messageId: z.string(),
  state: z.string(),
  generation: z.number(),
  deliveredAt: z.string().nullable(),
  mappingVersion: z.string().nullable(),
  outcome: z.record(z.string(), z.unknown()).nullable(),
  history: z.array(attemptSchema),
});
const rejectedSchema = z.object({ attempt: z.number(), generation: z.number(), at: z.string(), error_code: z.string().nullable(), output: z.unknown() });

function timeoutMs(text: string | undefined): number {
  if (text === undefined) return DEFAULT_WAIT_MS;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 600_000) throw new UsageError('--timeout-ms is a number of milliseconds, 1 to 600000');
  return Number(text);
}

/** How long `dlq replay` waits for the new outcome by default. */
export const DEFAULT_WAIT_MS = 30_000;

interface ReplayOutcome {
  id: string;
  state: string;
  reason: string | null;
  text: string;
}

/** Polls the delivery until its replayed generation settles, or the time is up. */
async function waitForOutcome(client: GatewayClient, q: { id: string; generation: number }, waitMs: number, signal: AbortSignal | undefined): Promise<ReplayOutcome> {
  const until = Date.now() + waitMs;
  let last: z.infer<typeof deliverySchema> | undefined;
  // Each look is an audited view: start quick (most replays settle in well under a second), then back off.
  let pause = 200;
  for (;;) {
    last = deliverySchema.parse(await client.getJson(`/admin/deliveries/${encodeURIComponent(q.id)}`, 'show'));
    const settled = last.generation >= q.generation && last.state !== 'pending';
    if (settled || Date.now() >= until || signal?.aborted === true) break;
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 2000);
  }
  const reason = last.reason ?? null;
  switch (last.generation >= q.generation ? last.state : 'pending') {
    case 'delivered':
      return { id: q.id, state: 'delivered', reason: null, text: `delivered${outcomeSummary(last.outcome)}` };
    case 'dropped':
      return { id: q.id, state: 'dropped', reason: null, text: 'dropped: the mapping returned nothing for this message' };
    case 'dead_lettered':
      return { id: q.id, state: 'dead_lettered', reason, text: `dead-lettered again: ${reason ?? 'no reason recorded'}` };
    case 'discarded':
      return { id: q.id, state: 'discarded', reason, text: 'discarded meanwhile' };
    default: {
      const tried = last.history.filter((a) => a.generation === q.generation).length;
      return {
        id: q.id,
        state: 'pending',
        reason,
        text: `still pending after ${waitMs / 1000} s (${tried === 0 ? 'not tried yet' : `${tried} attempt${tried === 1 ? '' : 's'}, last: ${reason ?? '?'}`}); dlq show ${q.id} later`,
      };
    }
  }
}

function outcomeSummary(outcome: Record<string, unknown> | null): string {
  if (outcome === null) return '';
  const parts = Object.entries(outcome)
    .filter(([k]) => ['resource_id', 'status', 'created', 'ack_code', 'control_id', 'patient_match'].includes(k))
    .map(([k, v]) => `${k}=${String(v)}`);
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`;
}

/** `dlq show` in text: the reason first, then where, what, and every attempt. */
export function deliveryText(d: z.infer<typeof deliverySchema>): string {
  const lines = [`${d.id}  ${d.reason ?? (d.state === 'dead_lettered' ? '(no reason recorded)' : d.state)}`, ''];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(12)} ${v}`);
  row('state', `${d.state}${d.deadLetteredAt ? ` at ${d.deadLetteredAt}` : d.deliveredAt ? ` at ${d.deliveredAt}` : ''} (generation ${d.generation}, ${d.attempts} attempt${d.attempts === 1 ? '' : 's'})`);
  row('destination', `${d.channelId}/${d.destination}`);
  row('message', `${d.messageKind} ${d.sourceMessageId} (message id ${d.messageId})`);
  if (d.mappingVersion) row('mapping', `version ${d.mappingVersion}`);
  if (d.outcome) row('outcome', JSON.stringify(d.outcome));
  const latest = d.history.at(-1);
  const issues = Array.isArray(latest?.detail?.['issues']) ? (latest.detail['issues'] as unknown[]).map(String) : [];
  if (issues.length > 1) {
    const positions = Array.isArray(latest?.detail?.['positions']) ? (latest.detail['positions'] as ({ line: number; column: number } | null)[]) : [];
    const file = typeof latest?.detail?.['mapping_file'] === 'string' ? latest.detail['mapping_file'] : undefined;
    lines.push('', '  every problem:');
    issues.forEach((issue, i) => {
      const at = positions[i];
      lines.push(`    ${at && file ? `${file}:${at.line}:${at.column}: ` : ''}${issue}`);
    });
  }
  lines.push('', '  attempts:');
  for (const a of d.history) {
    lines.push(`    ${a.finishedAt}  gen ${a.generation} #${a.attempt}  ${a.result}${a.errorCode ? `  ${a.errorCode}` : ''}${a.retryAfterMs ? `  retry-after ${a.retryAfterMs} ms` : ''}`);
    if (a.errorMessage) lines.push(`      ${a.errorMessage.split('\n')[0]}`);
    if (a.response !== null && a.response !== undefined) lines.push(`      server answered: ${responseSummary(a.response)}`);
  }
  if (d.state === 'dead_lettered') {
    lines.push('', `  the refused output (message content): dlq show ${d.id} --output`, `  after fixing the cause: dlq replay ${d.id}`);
  }
  return lines.join('\n');
}

/** An OperationOutcome as "error business-rule: diagnostics; ...", anything else as compact JSON. */
function responseSummary(response: unknown): string {
  const issues = (response as { resourceType?: unknown; issue?: unknown } | null)?.issue;
  if ((response as { resourceType?: unknown }).resourceType === 'OperationOutcome' && Array.isArray(issues)) {
    return (issues as { severity?: string; code?: string; diagnostics?: string; details?: { text?: string } }[])
      .map((i) => [i.severity, i.code].filter(Boolean).join(' ') + (i.diagnostics ?? i.details?.text ? `: ${i.diagnostics ?? i.details?.text}` : ''))
      .join('; ');
  }
  const text = JSON.stringify(response);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

function filterQuery(v: { channel?: string | undefined; destination?: string | undefined; code?: string | undefined; since?: string | undefined; until?: string | undefined }): URLSearchParams {
  const q = new URLSearchParams();
  if (v.channel) q.set('channel', v.channel);
  if (v.destination) q.set('destination', v.destination);
  if (v.code) q.set('code', v.code);
  if (v.since) q.set('since', v.since);
  if (v.until) q.set('until', v.until);
  return q;
}

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseCommandArgs(rest, {
    ...gatewayOptions,
    format: { type: 'string', default: 'text' },
    channel: { type: 'string' },
    destination: { type: 'string' },
    code: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    limit: { type: 'string' },
    reason: { type: 'string' },
    all: { type: 'boolean', default: false },
    output: { type: 'boolean', default: false },
    wait: { type: 'boolean', default: true },
    'no-wait': { type: 'boolean', default: false },
    'timeout-ms': { type: 'string' },
    'resend-uncertain': { type: 'boolean', default: false },
  });
  if (values['no-wait']) values.wait = false;
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError('--format is text or json');
  const json = values.format === 'json';
  const client = connectGateway(io, values);
  const out = (text: string) => io.stdout(text.endsWith('\n') ? text : `${text}\n`);
  const filters = filterQuery(values);

  try {
    switch (sub) {
      case 'list': {
        if (values.limit) filters.set('limit', values.limit);
        const body = listSchema.parse(await client.getJson(`/admin/dead-letters?${filters}`, 'list'));
        if (json) out(JSON.stringify(body, null, 2));
        else if (body.items.length === 0) out('no dead letters match');
        else {
          for (const d of body.items) {
            out(`${d.id}  ${d.reason ?? d.lastErrorCode ?? '(no reason recorded)'}`);
            out(`    ${d.channelId}/${d.destination}  attempts=${d.attempts}  ${d.messageKind} ${d.sourceMessageId}  dead-lettered ${d.deadLetteredAt ?? '?'}`);
          }
          if (body.next) out(`(more: --since or use the API with after_at=${body.next.after_at ?? ''}&after_id=${body.next.after_id})`);
        }
        return EXIT_OK;
      }
      case 'show': {
        if (positionals.length !== 1) throw new UsageError('dlq show takes one delivery id');
        const id = encodeURIComponent(positionals[0]!);
        if (values.output) {
          const r = rejectedSchema.parse(await client.getJson(`/admin/deliveries/${id}/rejected-output`, 'rejected output'));
          if (json) out(JSON.stringify(r, null, 2));
          else {
            io.stderr(`rejected output of attempt ${r.attempt} (${r.error_code ?? 'no code'}, ${r.at}); message content, handle as PHI:\n`);
            out(typeof r.output === 'string' ? r.output.replace(/\r/g, '\n') : JSON.stringify(r.output, null, 2));
          }
          return EXIT_OK;
        }
        const body = await client.getJson(`/admin/deliveries/${id}`, 'show');
        out(json ? JSON.stringify(body, null, 2) : deliveryText(deliverySchema.parse(body)));
        return EXIT_OK;
      }
      case 'replay': {
        if (values.all) {
          if (positionals.length > 0) throw new UsageError('give delivery ids or --all, not both');
          if (values['resend-uncertain']) throw new UsageError('--resend-uncertain takes delivery ids, one decision each, never --all');
        }
        if (values['resend-uncertain'] && !values.reason) throw new UsageError('--resend-uncertain needs --reason (why sending again is right): it is kept in the audit trail');
        if (values.all) {
          const total = countSchema.parse(await client.getJson(`/admin/dead-letters/count?${filters}`, 'count')).count;
          let done = 0;
          while (done < total) {
            const r = replaySchema.parse(
              await client.postJson(
                '/admin/dead-letters/replay',
                {
                  ...(values.channel && { channel: values.channel }),
                  ...(values.destination && { destination: values.destination }),
                  ...(values.code && { code: values.code }),
                  ...(values.reason && { reason: values.reason }),
                  max: Math.min(500, total - done),
                },
                'replay',
              ),
            );
            if (r.replayed === 0) break;
            done += r.replayed;
            if (!json) io.stderr(`replayed ${done}/${total}\n`);
          }
          out(json ? JSON.stringify({ replayed: done, matched: total }) : `replayed ${done} of ${total} dead letters`);
          return done === total ? EXIT_OK : EXIT_FAILURES;
        }
        if (positionals.length === 0) throw new UsageError('dlq replay takes delivery ids, or --all with filters');
        const waitMs = values.wait ? timeoutMs(values['timeout-ms']) : 0;
        const queued: { id: string; generation: number }[] = [];
        let failed = 0;
        for (const id of positionals) {
          const body = { ...(values.reason ? { reason: values.reason } : {}), ...(values['resend-uncertain'] ? { resend_uncertain: true } : {}) };
          const r = await client.post(`/admin/dead-letters/${encodeURIComponent(id)}/replay`, body);
          if (r.ok) {
            const { generation } = replayedOneSchema.parse(await r.json());
            queued.push({ id, generation });
            if (waitMs === 0) out(json ? JSON.stringify({ id, replayed: true, outcome: null }) : `${id}: replayed (not waiting; dlq show ${id} for the outcome)`);
          } else {
            failed++;
            out(json ? JSON.stringify({ id, replayed: false, error: await answerReason(r) }) : `${id}: not replayed (HTTP ${r.status}: ${await answerReason(r)})`);
          }
        }
        if (waitMs > 0) {
          if (!json && queued.length > 0) io.stderr(`waiting up to ${waitMs / 1000} s for the outcome (--no-wait to return at once)\n`);
          const outcomes = await Promise.all(queued.map((q) => waitForOutcome(client, q, waitMs, io.signal)));
          for (const o of outcomes) {
            if (o.state !== 'delivered' && o.state !== 'dropped') failed++;
            out(json ? JSON.stringify({ id: o.id, replayed: true, outcome: o.state, reason: o.reason }) : `${o.id}: ${o.text}`);
          }
        }
        return failed === 0 ? EXIT_OK : EXIT_FAILURES;
      }
      case 'discard': {
        if (!values.reason) throw new UsageError('dlq discard needs --reason');
        if (positionals.length === 0) throw new UsageError('dlq discard takes delivery ids');
        let failed = 0;
        for (const id of positionals) {
          const r = await client.post(`/admin/dead-letters/${encodeURIComponent(id)}/discard`, { reason: values.reason });
          if (r.ok) out(`${id}: discarded`);
          else {
            failed++;
            out(`${id}: not discarded (HTTP ${r.status}: ${await answerReason(r)})`);
          }
        }
        return failed === 0 ? EXIT_OK : EXIT_FAILURES;
      }
      default:
        throw new UsageError(`dlq: unknown subcommand ${sub === undefined ? '(none)' : `"${sub}"`}; use list, show, replay or discard`);
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    io.stderr(`switchboard dlq: ${(err as Error).message}\n`);
    return EXIT_FAILURES;
  }
}
