/** One message's path: receipt, parsing and routing, platform statuses, and every delivery attempt and operator action, in time order. */
import type { ComponentChildren } from 'preact';
import { useEffect } from 'preact/hooks';
import type { MessageTrace } from '../api-types.js';
import { DeadLetterActions } from '../components/dead-letter-actions.js';
import { MessageContent } from '../components/message-content.js';
import { ServerAnswer } from '../components/server-answer.js';
import { useConsole } from '../context.js';
import { stateLabel, when } from '../format.js';
import { href } from '../router.js';
import { useLoad } from '../use-load.js';

interface Step {
  at: string;
  title: string;
  tone: 'good' | 'bad' | 'warn' | '';
  body?: ComponentChildren;
}

function steps(t: MessageTrace): Step[] {
  const out: Step[] = [
    { at: t.event.receivedAt, title: `Received on ${t.channelId}`, tone: '', body: <p class="muted">event {t.event.id}</p> },
    {
      at: t.parsedAt,
      title: t.filtered ? `Parsed as ${t.kind}; filtered by the channel (no delivery)` : `Parsed as ${t.kind}; routed to ${t.deliveries.map((d) => d.destination).join(', ') || 'no destination'}`,
      tone: '',
    },
  ];
  for (const s of t.statuses) out.push({ at: s.occurredAt, title: `Platform status: ${s.status}`, tone: '' });
  for (const d of t.deliveries) {
    for (const a of d.history) {
      out.push({
        at: a.finishedAt,
        title: `${d.destination}: attempt ${a.attempt}${a.generation > 0 ? ` (replay ${a.generation})` : ''}: ${a.result === 'dead_lettered' ? 'dead-lettered' : a.result === 'retry' ? 'failed, will retry' : a.result}`,
        tone: a.result === 'delivered' ? 'good' : a.result === 'retry' ? 'warn' : a.result === 'dead_lettered' ? 'bad' : '',
        body: (
          <>
            {(a.errorCode || a.errorMessage) && (
              <p>
                {a.errorCode && <code>{a.errorCode}</code>} {a.errorMessage?.split('\n')[0]}
              </p>
            )}
            <p class="muted">
              started {when(a.startedAt)}
              {a.mappingVersion && (
                <>
                  {' '}
                  · mapping <code>{a.mappingVersion}</code>
                </>
              )}
              {a.retryAfterMs !== null && ` · retry after ${Math.round(a.retryAfterMs / 1000)} s`}
            </p>
            <ServerAnswer detail={a.detail} response={a.response} />
          </>
        ),
      });
    }
    for (const x of d.actions) {
      out.push({ at: x.at, title: `${d.destination}: ${x.action === 'replay' ? 'replayed' : 'discarded'} by ${x.actor}`, tone: '', body: x.reason ? <p>Reason: {x.reason}</p> : undefined });
    }
  }
  return out.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

export function Trace(props: { id: string }) {
  const { api } = useConsole();
  const t = useLoad(() => api.get<MessageTrace>(`/messages/${encodeURIComponent(props.id)}/trace`), [api, props.id]);
  const pending = t.data?.deliveries.some((d) => d.state === 'pending') ?? false;
  // While a delivery is under way (e.g. just replayed), follow it until it settles.
  useEffect(() => {
    if (!pending || t.loading) return undefined;
    const timer = setTimeout(t.reload, 1500);
    return () => clearTimeout(timer);
  }, [pending, t.loading, t.data]);
  if (t.error) return <p class="error" role="alert">Cannot load this message: {t.error}</p>;
  if (!t.data) return <p>Loading…</p>;
  const m = t.data;
  return (
    <>
      <p>
        <a href={href('/messages')}>← Messages</a>
      </p>
      <h1>
        Trace of <code>{m.sourceMessageId}</code>
      </h1>
      <p class="muted">
        {m.kind} on {m.channelId}, sent {when(m.sentAt)}, received {when(m.receivedAt)} · message {m.id} ·{' '}
        <a href={href(`/messages/${m.id}/conversation`)}>Conversation with this patient</a>
      </p>
      {m.contentWithheld && <p class="muted">Servers' answers are not shown: your role may not read message content.</p>}
      <MessageContent key={m.id} messageId={m.id} />
      <section aria-labelledby="deliveries-h">
        <h2 id="deliveries-h">Deliveries</h2>
        {m.deliveries.length === 0 && <p>No destination was asked to deliver this message.</p>}
        <ul class="delivery-cards">
          {m.deliveries.map((d) => (
            <li key={d.id} class={`card ${d.state === 'dead_lettered' ? 'card-bad' : ''}`}>
              <h3>
                {d.destination}: <span class={`badge ${d.state === 'delivered' ? 'good' : d.state === 'dead_lettered' ? 'bad' : d.state === 'pending' ? 'warn' : ''}`}>{stateLabel[d.state]}</span>
              </h3>
              <p class="muted">
                {d.attempts} attempt{d.attempts === 1 ? '' : 's'}
                {d.deliveredAt && ` · delivered ${when(d.deliveredAt)}`}
                {d.deadLetteredAt && d.state === 'dead_lettered' && ` · dead-lettered ${when(d.deadLetteredAt)}`}
                {d.mappingVersion && (
                  <>
                    {' '}
                    · mapping <code>{d.mappingVersion}</code>
                  </>
                )}
              </p>
              {d.reason && d.state !== 'delivered' && <p class="reason">{d.reason}</p>}
              {typeof d.outcome?.['location'] === 'string' && d.state === 'delivered' && (
                <p>
                  Resource: <code>{String(d.outcome['location'])}</code>
                </p>
              )}
              {d.state === 'dead_lettered' && <DeadLetterActions deliveryId={d.id} label={`${d.destination} delivery`} onDone={t.reload} />}
            </li>
          ))}
        </ul>
      </section>
      <section aria-labelledby="timeline-h">
        <h2 id="timeline-h">Timeline</h2>
        <ol class="timeline">
          {steps(m).map((s, i) => (
            <li key={i} class={s.tone}>
              <time dateTime={s.at}>{when(s.at)}</time>
              <div>
                <strong>{s.title}</strong>
                {s.body}
              </div>
            </li>
          ))}
        </ol>
      </section>
    </>
  );
}
