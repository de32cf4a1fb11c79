/**
 * `switchboard dlq`: the dead-letter workflow from a terminal, through the admin API of a running
 * gateway: list with filters, show one with its attempt history, replay one, many or all that
 * match (with progress), discard with a reason.
 */
import { z } from 'zod';
import { UsageError, parseCommandArgs } from '../args.js';
import { answerReason, connectGateway, gatewayOptions } from '../gateway-client.js';
import { EXIT_FAILURES, EXIT_OK, type CliIo } from '../io.js';

const deadLetterSchema = z.object({
  id: z.string(),
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
  });
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
            out(`${d.id}  ${d.deadLetteredAt ?? ''}  ${d.channelId}/${d.destination}  ${d.lastErrorCode ?? '-'}  attempts=${d.attempts}  ${d.messageKind} ${d.sourceMessageId}`);
            if (d.lastErrorMessage) out(`    ${d.lastErrorMessage}`);
          }
          if (body.next) out(`(more: --since or use the API with after_at=${body.next.after_at ?? ''}&after_id=${body.next.after_id})`);
        }
        return EXIT_OK;
      }
      case 'show': {
        if (positionals.length !== 1) throw new UsageError('dlq show takes one delivery id');
        const body = await client.getJson(`/admin/deliveries/${encodeURIComponent(positionals[0]!)}`, 'show');
        out(JSON.stringify(body, null, 2));
        return EXIT_OK;
      }
      case 'replay': {
        if (values.all) {
          if (positionals.length > 0) throw new UsageError('give delivery ids or --all, not both');
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
        let failed = 0;
        for (const id of positionals) {
          const r = await client.post(`/admin/dead-letters/${encodeURIComponent(id)}/replay`, values.reason ? { reason: values.reason } : {});
          if (r.ok) out(`${id}: replayed`);
          else {
            failed++;
            out(`${id}: not replayed (HTTP ${r.status}: ${await answerReason(r)})`);
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
