/**
 * Message search: by source id (wamid, Twilio SID) or patient phone, with filters, newest first,
 * paged. Every search is a POST with the filter in its body, and the phone is kept in the page's
 * memory only: a phone number is PHI and never goes into the address (history, bookmarks) or a
 * request URL (access logs).
 */
import { useState } from 'preact/hooks';
import type { ChannelsAnswer, DeliveryState, SearchAnswer } from '../api-types.js';
import { useConsole } from '../context.js';
import { isoFromLocal, stateLabel, when } from '../format.js';
import { href, navigate } from '../router.js';
import { useLoad } from '../use-load.js';

/** What goes into the address: ids, names, states, codes and times, never the phone. */
const filterKeys = ['q', 'channel', 'destination', 'state', 'code', 'since', 'until'] as const;
type Filters = Record<(typeof filterKeys)[number] | 'phone', string>;

const empty: Filters = { q: '', phone: '', channel: '', destination: '', state: '', code: '', since: '', until: '' };

/** A phone number typed into the id field: digits with an optional +, spaces, dots, dashes, brackets. */
const looksLikePhone = (v: string) => /^\+?[\d\s().-]{7,20}$/.test(v.trim()) && /\d{7}/.test(v.replace(/\D/g, ''));

/** The address's filters, without the phone (which a link or bookmark must never carry). */
function inAddress(f: Filters): Record<string, string> {
  return Object.fromEntries(filterKeys.map((k) => [k, f[k]]));
}

const states: DeliveryState[] = ['pending', 'delivered', 'dead_lettered', 'discarded', 'dropped'];

/** The filter as a JSON body: only what was given. */
function compact(o: Record<string, string | number | undefined>): Record<string, string | number> {
  return Object.fromEntries(Object.entries(o).filter((e): e is [string, string | number] => e[1] !== undefined && e[1] !== ''));
}

export function DeliveryBadges(props: { deliveries: { id: string; destination: string; state: DeliveryState; lastErrorCode: string | null }[] }) {
  if (props.deliveries.length === 0) return <span class="muted">no destination</span>;
  return (
    <ul class="badges">
      {props.deliveries.map((d) => (
        <li key={d.id}>
          <span class={`badge ${d.state === 'delivered' ? 'good' : d.state === 'dead_lettered' ? 'bad' : d.state === 'pending' ? 'warn' : ''}`}>
            {d.destination}: {stateLabel[d.state]}
            {d.lastErrorCode && d.state !== 'delivered' ? ` (${d.lastErrorCode})` : ''}
          </span>
        </li>
      ))}
    </ul>
  );
}

export function Messages(props: { params: URLSearchParams }) {
  const { api } = useConsole();
  const [phone, setPhone] = useState('');
  const applied: Filters = { ...empty, ...Object.fromEntries(filterKeys.map((k) => [k, props.params.get(k) ?? ''])), phone };
  const [form, setForm] = useState<Filters>(applied);
  const [pages, setPages] = useState<{ before_at: string; before_id: string }[]>([]);
  const page = pages.at(-1);
  const channels = useLoad(() => api.get<ChannelsAnswer>('/channels'), [api]);
  const result = useLoad(
    () =>
      api.post<SearchAnswer>('/messages/search', compact({
        q: applied.q,
        phone: applied.phone,
        channel: applied.channel,
        destination: applied.destination,
        state: applied.state,
        code: applied.code,
        since: isoFromLocal(applied.since),
        until: isoFromLocal(applied.until),
        limit: 25,
        before_at: page?.before_at,
        before_id: page?.before_id,
      })),
    [api, props.params.toString(), phone, page?.before_id],
  );
  const set = (k: keyof Filters) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });
  const submit = (e: Event) => {
    e.preventDefault();
    // A number typed into the id field is a phone search: it must not land in the address.
    const f = looksLikePhone(form.q) && !form.phone.trim() ? { ...form, q: '', phone: form.q.trim() } : form;
    // The same search again (nothing in the address, the phone or the page changes) asks anew, to
    // show what came since; otherwise the change of filters brings the new answer.
    const unchanged = location.hash === href('/messages', inAddress(f)) && f.phone.trim() === phone && pages.length === 0;
    setForm(f);
    setPages([]);
    setPhone(f.phone.trim());
    if (unchanged) result.reload();
    else navigate('/messages', inAddress(f));
  };
  const destinations = [...new Set((channels.data?.channels ?? []).flatMap((c) => c.destinations.map((d) => d.name)))];
  return (
    <>
      <h1>Messages</h1>
      <form class="search" onSubmit={submit} role="search">
        <div class="field wide">
          <label for="search-q">Search messages</label>
          <input id="search-q" type="search" placeholder="wamid.… or SM…" value={form.q} onInput={set('q')} aria-describedby="search-help" />
          <span id="search-help" class="help">
            A source message id: a WhatsApp wamid or a Twilio message SID.
          </span>
        </div>
        <div class="field">
          <label for="search-phone">Patient phone</label>
          <input id="search-phone" type="tel" autocomplete="off" placeholder="+15551234567" value={form.phone} onInput={set('phone')} aria-describedby="phone-help" />
          <span id="phone-help" class="help">
            Kept out of the address and of request URLs.
          </span>
        </div>
        <div class="field">
          <label for="search-channel">Channel</label>
          <select id="search-channel" value={form.channel} onChange={set('channel')}>
            <option value="">any</option>
            {(channels.data?.channels ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.id}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="search-destination">Destination</label>
          <select id="search-destination" value={form.destination} onChange={set('destination')}>
            <option value="">any</option>
            {destinations.map((d) => (
              <option key={d} value={d}>
                {d}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="search-state">Delivery state</label>
          <select id="search-state" value={form.state} onChange={set('state')}>
            <option value="">any</option>
            {states.map((s) => (
              <option key={s} value={s}>
                {stateLabel[s]}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="search-code">Error code</label>
          <input id="search-code" value={form.code} onInput={set('code')} placeholder="FHIR_HTTP_PERMANENT" />
        </div>
        <div class="field">
          <label for="search-since">Received from</label>
          <input id="search-since" type="datetime-local" step={1} value={form.since} onInput={set('since')} />
        </div>
        <div class="field">
          <label for="search-until">Received before</label>
          <input id="search-until" type="datetime-local" step={1} value={form.until} onInput={set('until')} />
        </div>
        <div class="field actions">
          <button type="submit">Search</button>
          <button
            type="button"
            class="secondary"
            onClick={() => {
              setForm(empty);
              setPhone('');
              setPages([]);
              navigate('/messages');
            }}
          >
            Clear
          </button>
        </div>
      </form>
      {result.error && <p class="error" role="alert">{result.error}</p>}
      {result.data && (
        <section aria-labelledby="results-h" aria-busy={result.loading}>
          <h2 id="results-h">
            {result.data.items.length === 0 ? 'No message matches' : `${result.data.items.length} message${result.data.items.length === 1 ? '' : 's'}${pages.length > 0 ? ` (page ${pages.length + 1})` : ''}`}
          </h2>
          {result.data.items.length > 0 && (
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Received</th>
                  <th scope="col">Source id</th>
                  <th scope="col">Channel</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Deliveries</th>
                </tr>
              </thead>
              <tbody>
                {result.data.items.map((m) => (
                  <tr key={m.id}>
                    <td class="time">{when(m.receivedAt)}</td>
                    <td>
                      <a href={href(`/messages/${m.id}`)} aria-label={`Trace of ${m.sourceMessageId}`}>
                        <code>{m.sourceMessageId}</code>
                      </a>
                    </td>
                    <td>{m.channelId}</td>
                    <td>{m.kind}{m.filtered ? ' (filtered)' : ''}</td>
                    <td>
                      <DeliveryBadges deliveries={m.deliveries} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <div class="pager">
            <button type="button" class="secondary" disabled={pages.length === 0} onClick={() => setPages(pages.slice(0, -1))}>
              Newer
            </button>
            <button type="button" class="secondary" disabled={!result.data.next} onClick={() => result.data?.next && setPages([...pages, result.data.next])}>
              Older
            </button>
          </div>
        </section>
      )}
    </>
  );
}
