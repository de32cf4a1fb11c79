/** Dead letters: filter, inspect, replay or discard one or many with a reason, with progress for bulk actions. */
import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import type { AttemptRecord, ChannelsAnswer, DeadLettersAnswer, DeliveryRecord } from '../api-types.js';
import { DeadLetterActions } from '../components/dead-letter-actions.js';
import { ServerAnswer } from '../components/server-answer.js';
import { useConsole } from '../context.js';
import { when } from '../format.js';
import { href, navigate } from '../router.js';
import { errorText, useLoad } from '../use-load.js';

function Inspect(props: { delivery: DeliveryRecord }) {
  const { api, access } = useConsole();
  const full = useLoad(() => api.get<DeliveryRecord & { history: AttemptRecord[] }>(`/deliveries/${props.delivery.id}`), [api, props.delivery.id]);
  const [output, setOutput] = useState<string | undefined>(undefined);
  const [outputError, setOutputError] = useState<string | undefined>(undefined);
  const showOutput = async () => {
    try {
      const r = await api.get<{ output: unknown }>(`/deliveries/${props.delivery.id}/rejected-output`);
      setOutput(JSON.stringify(r.output, null, 2));
    } catch (e) {
      setOutputError(errorText(e));
    }
  };
  return (
    <div class="inspect">
      {full.error && <p class="error">{full.error}</p>}
      {full.data && (
        <ol class="timeline compact">
          {full.data.history.map((a) => (
            <li key={`${a.generation}-${a.attempt}`} class={a.result === 'delivered' ? 'good' : a.result === 'dead_lettered' ? 'bad' : 'warn'}>
              <time dateTime={a.finishedAt}>{when(a.finishedAt)}</time>
              <div>
                <strong>
                  attempt {a.attempt}
                  {a.generation > 0 ? ` (replay ${a.generation})` : ''}: {a.result === 'dead_lettered' ? 'dead-lettered' : a.result === 'retry' ? 'failed, will retry' : a.result}
                </strong>
                {a.errorMessage && (
                  <p>
                    {a.errorCode && <code>{a.errorCode}</code>} {a.errorMessage.split('\n')[0]}
                  </p>
                )}
                <ServerAnswer detail={a.detail} response={a.response} />
              </div>
            </li>
          ))}
        </ol>
      )}
      {access.content && output === undefined && (
        <button type="button" class="secondary" onClick={showOutput}>
          Show the refused output
        </button>
      )}
      {outputError && <p class="muted">{outputError}</p>}
      {output !== undefined && <pre aria-label="Refused output">{output}</pre>}
    </div>
  );
}

export function DeadLetters(props: { params: URLSearchParams }) {
  const { access } = useConsole();
  if (access.content) return <DeadLetterList params={props.params} />;
  // The list shows error messages and servers' answers, which may echo content: without
  // content.read the gateway refuses it, and the same dead letters are found as messages.
  const channel = props.params.get('channel') ?? undefined;
  const destination = props.params.get('destination') ?? undefined;
  return (
    <>
      <h1>Dead letters</h1>
      <p>
        Your role may not read message content, which the dead-letter list shows. Find the same dead letters as{' '}
        <a href={href('/messages', { state: 'dead_lettered', channel, destination })}>messages with a dead-lettered delivery</a>
        {access.replay ? ', and replay each from its trace.' : '.'}
      </p>
    </>
  );
}

function DeadLetterList(props: { params: URLSearchParams }) {
  const { api, access, announce } = useConsole();
  const selectable = access.replay || access.discard;
  const channel = props.params.get('channel') ?? '';
  const destination = props.params.get('destination') ?? '';
  const code = props.params.get('code') ?? '';
  const [form, setForm] = useState({ channel, destination, code });
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [open, setOpen] = useState<string | undefined>(undefined);
  const [bulkReason, setBulkReason] = useState('');
  const [progress, setProgress] = useState<{ what: string; done: number; total: number; failed: number } | undefined>(undefined);
  const channels = useLoad(() => api.get<ChannelsAnswer>('/channels'), [api]);
  const filter = { channel: channel || undefined, destination: destination || undefined, code: code || undefined };
  const list = useLoad(
    async () => {
      const [page, count] = await Promise.all([api.get<DeadLettersAnswer>('/dead-letters', { ...filter, limit: 100 }), api.get<{ count: number }>('/dead-letters/count', filter)]);
      return { ...page, count: count.count };
    },
    [api, channel, destination, code],
  );
  const items = list.data?.items ?? [];
  const allSelected = items.length > 0 && items.every((d) => selected.has(d.id));
  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };
  const bulk = async (what: 'replay' | 'discard') => {
    if (what === 'discard' && !bulkReason.trim()) {
      setProgress({ what: 'Give a reason to discard', done: 0, total: 0, failed: 0 });
      return;
    }
    const ids = items.filter((d) => selected.has(d.id)).map((d) => d.id);
    const label = what === 'replay' ? 'Replaying' : 'Discarding';
    let done = 0;
    let failed = 0;
    setProgress({ what: label, done, total: ids.length, failed });
    for (const id of ids) {
      try {
        await api.post(`/dead-letters/${id}/${what}`, bulkReason.trim() ? { reason: bulkReason.trim() } : {});
      } catch {
        failed++;
      }
      done++;
      setProgress({ what: label, done, total: ids.length, failed });
    }
    announce(`${what === 'replay' ? 'Replayed' : 'Discarded'} ${done - failed} of ${ids.length}${failed ? `; ${failed} failed` : ''}`);
    setSelected(new Set());
    list.reload();
  };
  const destinations = [...new Set((channels.data?.channels ?? []).flatMap((c) => c.destinations.map((d) => d.name)))];
  return (
    <>
      <h1>Dead letters</h1>
      <form
        class="search"
        onSubmit={(e) => {
          e.preventDefault();
          setSelected(new Set());
          navigate('/dead-letters', form);
        }}
      >
        <div class="field">
          <label for="dl-channel">Channel</label>
          <select id="dl-channel" value={form.channel} onChange={(e) => setForm({ ...form, channel: e.currentTarget.value })}>
            <option value="">any</option>
            {(channels.data?.channels ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.id}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="dl-destination">Destination</label>
          <select id="dl-destination" value={form.destination} onChange={(e) => setForm({ ...form, destination: e.currentTarget.value })}>
            <option value="">any</option>
            {destinations.map((d) => (
              <option key={d} value={d}>
                {d}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="dl-code">Error code</label>
          <input id="dl-code" value={form.code} onInput={(e) => setForm({ ...form, code: e.currentTarget.value })} placeholder="FHIR_HTTP_PERMANENT" />
        </div>
        <div class="field actions">
          <button type="submit">Filter</button>
        </div>
      </form>
      {list.error && <p class="error" role="alert">{list.error}</p>}
      {list.data && (
        <section aria-labelledby="dl-h">
          <h2 id="dl-h">
            {list.data.count} dead letter{list.data.count === 1 ? '' : 's'}
            {list.data.count > items.length ? ` (showing the oldest ${items.length})` : ''}
          </h2>
          {selectable && items.length > 0 && (
            <div class="bulk" role="group" aria-label="Selected dead letters">
              <label for="bulk-reason">Reason for selected</label>
              <input id="bulk-reason" value={bulkReason} onInput={(e) => setBulkReason(e.currentTarget.value)} maxLength={500} />
              {access.replay && (
                <button type="button" disabled={selected.size === 0 || (progress !== undefined && progress.done < progress.total)} onClick={() => bulk('replay')}>
                  Replay selected ({selected.size})
                </button>
              )}
              {access.discard && (
                <button type="button" class="danger" disabled={selected.size === 0 || (progress !== undefined && progress.done < progress.total)} onClick={() => bulk('discard')}>
                  Discard selected ({selected.size})
                </button>
              )}
            </div>
          )}
          {progress && (
            <div class="progress" role="status">
              {progress.total > 0 && <progress max={progress.total} value={progress.done} aria-label={`${progress.what} dead letters`} />}
              <span>
                {progress.total > 0 ? `${progress.what} ${progress.done} of ${progress.total}${progress.failed ? `, ${progress.failed} failed` : ''}${progress.done === progress.total ? ': done' : '…'}` : progress.what}
              </span>
            </div>
          )}
          {items.length > 0 && (
            <table class="grid">
              <thead>
                <tr>
                  {selectable && (
                    <th scope="col">
                      <input type="checkbox" aria-label="Select all shown" checked={allSelected} onChange={() => setSelected(allSelected ? new Set() : new Set(items.map((d) => d.id)))} />
                    </th>
                  )}
                  <th scope="col">Reason</th>
                  <th scope="col">Destination</th>
                  <th scope="col">Source id</th>
                  <th scope="col" class="num">Attempts</th>
                  <th scope="col">Dead-lettered</th>
                  <th scope="col">Inspect</th>
                </tr>
              </thead>
              <tbody>
                {items.map((d) => (
                  <Fragment key={d.id}>
                    <tr>
                      {selectable && (
                        <td>
                          <input type="checkbox" aria-label={`Select ${d.sourceMessageId} to ${d.destination}`} checked={selected.has(d.id)} onChange={() => toggle(d.id)} />
                        </td>
                      )}
                      <td class="reason">{d.reason}</td>
                      <td>
                        {d.channelId}/{d.destination}
                      </td>
                      <td>
                        <a href={href(`/messages/${d.messageId}`)}>
                          <code>{d.sourceMessageId}</code>
                        </a>
                      </td>
                      <td class="num">{d.attempts}</td>
                      <td class="time">{when(d.deadLetteredAt)}</td>
                      <td>
                        <button type="button" class="secondary" aria-expanded={open === d.id} onClick={() => setOpen(open === d.id ? undefined : d.id)}>
                          {open === d.id ? 'Close' : 'Inspect'}
                        </button>
                      </td>
                    </tr>
                    {open === d.id && (
                      <tr class="expanded">
                        <td colSpan={selectable ? 7 : 6}>
                          <Inspect delivery={d} />
                          <DeadLetterActions deliveryId={d.id} label={`${d.sourceMessageId} to ${d.destination}`} onDone={() => { setOpen(undefined); list.reload(); }} />
                        </td>
                      </tr>
                    )}
                  </Fragment>
                ))}
              </tbody>
            </table>
          )}
        </section>
      )}
    </>
  );
}
