/** Channels and destinations with their live state, last hour's throughput and errors, queues, dead letters and the last reload. */
import { useState } from 'preact/hooks';
import type { ChannelsAnswer, DestinationStatus, ReloadStatus, StatsAnswer } from '../api-types.js';
import { useConsole } from '../context.js';
import { when } from '../format.js';
import { href } from '../router.js';
import { errorText, useLoad } from '../use-load.js';
import { ApiError } from '../api.js';

const RELOADED = 'Channels reloaded';

interface Overview {
  channels: ChannelsAnswer;
  destinations: DestinationStatus[];
  stats: StatsAnswer;
  queues: Record<string, Record<string, number>>;
}

function stateOf(d: DestinationStatus): { label: string; tone: string } {
  if (d.paused) return { label: 'paused', tone: 'warn' };
  if (d.circuit?.state === 'open') return { label: 'circuit open', tone: 'bad' };
  if (d.circuit?.state === 'half_open') return { label: 'circuit half-open', tone: 'warn' };
  return { label: 'running', tone: 'good' };
}

function ReloadResult(props: { reload: ReloadStatus }) {
  const r = props.reload;
  return (
    <section aria-labelledby="reload-h" class={`card ${r.ok ? '' : 'card-bad'}`}>
      <h2 id="reload-h">Last reload</h2>
      <p>
        <span class={`badge ${r.ok ? 'good' : 'bad'}`}>{r.ok ? 'applied' : 'refused'}</span> at {when(r.at)}
      </p>
      {!r.ok && (
        <>
          <p>The running channels were kept. Problems in the files:</p>
          <ul class="issues">
            {r.issues.map((i) => (
              <li key={`${i.file}:${i.line}:${i.column}`}>
                <code>
                  {i.file}:{i.line}:{i.column}
                </code>{' '}
                {i.message}
              </li>
            ))}
            {r.issues.length === 0 && r.error && <li>{r.error}</li>}
          </ul>
        </>
      )}
    </section>
  );
}

export function Dashboard() {
  const { api, access, announce } = useConsole();
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState<string | undefined>(undefined);
  const [actionNote, setActionNote] = useState<string | undefined>(undefined);
  const [pauseFor, setPauseFor] = useState<string | undefined>(undefined);
  const [pauseReason, setPauseReason] = useState('');
  const o = useLoad<Overview>(
    async () => {
      const [channels, destinations, stats, queues] = await Promise.all([
        api.get<ChannelsAnswer>('/channels'),
        api.get<{ destinations: DestinationStatus[] }>('/destinations'),
        api.get<StatsAnswer>('/stats', { window_minutes: 60 }),
        api.get<{ queues: Record<string, Record<string, number>> }>('/queues'),
      ]);
      return { channels, destinations: destinations.destinations, stats, queues: queues.queues };
    },
    [api],
    5_000,
  );

  const act = async (what: string, fn: () => Promise<unknown>) => {
    setBusy(true);
    setActionError(undefined);
    setActionNote(undefined);
    try {
      await fn();
      announce(what);
    } catch (e) {
      // A refused reload is an answer, not a failure of the console: its problems are in the card.
      if (e instanceof ApiError && e.status === 422 && what === RELOADED) {
        const note = 'Reload refused: the running channels were kept. The problems are under Last reload.';
        setActionNote(note);
        announce(note);
      } else setActionError(errorText(e));
    } finally {
      setBusy(false);
      o.reload();
    }
  };

  const d = o.data;
  const ingest = d?.queues['ingest'];
  return (
    <>
      <div class="page-head">
        <h1>Dashboard</h1>
        <p class="muted">{o.loading && !d ? 'Loading…' : d ? `Live: refreshed every 5 s. Throughput and errors over the last ${d.stats.window_minutes} minutes.` : ''}</p>
        {access.reload && (
          <button type="button" disabled={busy} onClick={() => act(RELOADED, () => api.post('/channels/reload'))}>
            Reload channels
          </button>
        )}
      </div>
      {o.error && <p class="error" role="alert">Cannot load the dashboard: {o.error}</p>}
      {actionError && <p class="error" role="alert">{actionError}</p>}
      {actionNote && <p class="notice">{actionNote}</p>}
      {d && (
        <>
          <section aria-labelledby="dest-h">
            <h2 id="dest-h">Channels and destinations</h2>
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Channel</th>
                  <th scope="col">Destination</th>
                  <th scope="col">State</th>
                  <th scope="col" class="num">Delivered (1 h)</th>
                  <th scope="col" class="num">Error rate (1 h)</th>
                  <th scope="col" class="num">Waiting</th>
                  <th scope="col" class="num">Active</th>
                  <th scope="col" class="num">Delayed</th>
                  <th scope="col" class="num">Dead letters</th>
                  <th scope="col">Mapping</th>
                  {access.pause && <th scope="col">Actions</th>}
                </tr>
              </thead>
              <tbody>
                {d.channels.channels.flatMap((c) =>
                  c.destinations.map((dest) => {
                    const key = `${c.id}/${dest.name}`;
                    const live = d.destinations.find((x) => x.channel === c.id && x.destination === dest.name);
                    const s = d.stats.destinations.find((x) => x.channelId === c.id && x.destination === dest.name);
                    const dead = d.stats.dead_letters.find((x) => x.channelId === c.id && x.destination === dest.name)?.count ?? 0;
                    const st = live ? stateOf(live) : { label: 'unknown', tone: 'warn' };
                    const rate = s && s.attempts > 0 ? `${Math.round((100 * s.failedAttempts) / s.attempts)} %` : '—';
                    return (
                      <tr key={key}>
                        <td>{c.id}</td>
                        <td>{dest.name}</td>
                        <td>
                          <span class={`badge ${st.tone}`}>{st.label}</span>
                        </td>
                        <td class="num">{s?.delivered ?? 0}</td>
                        <td class="num">{rate}</td>
                        <td class="num">{(live?.counts['waiting'] ?? 0) + (live?.counts['prioritized'] ?? 0) + (live?.counts['paused'] ?? 0)}</td>
                        <td class="num">{live?.counts['active'] ?? 0}</td>
                        <td class="num">{live?.counts['delayed'] ?? 0}</td>
                        <td class="num">{dead > 0 ? <a href={href('/dead-letters', { channel: c.id, destination: dest.name })}>{dead}</a> : 0}</td>
                        <td>
                          <code title={dest.mapping}>{dest.mapping_version}</code>
                        </td>
                        {access.pause && (
                          <td>
                            {live?.paused ? (
                              <button type="button" class="secondary" disabled={busy} onClick={() => act(`${key} resumed`, () => api.post(`/destinations/${encodeURIComponent(c.id)}/${encodeURIComponent(dest.name)}/resume`))}>
                                Resume {dest.name}
                              </button>
                            ) : pauseFor === key ? (
                              <form
                                class="inline"
                                onSubmit={(e) => {
                                  e.preventDefault();
                                  void act(`${key} paused`, () => api.post(`/destinations/${encodeURIComponent(c.id)}/${encodeURIComponent(dest.name)}/pause`, { reason: pauseReason })).then(() => setPauseFor(undefined));
                                }}
                              >
                                <label for={`pause-${key}`}>Reason to pause</label>
                                <input id={`pause-${key}`} required value={pauseReason} onInput={(e) => setPauseReason(e.currentTarget.value)} />
                                <button type="submit" disabled={busy || !pauseReason.trim()}>
                                  Pause
                                </button>
                                <button type="button" class="secondary" onClick={() => setPauseFor(undefined)}>
                                  Cancel
                                </button>
                              </form>
                            ) : (
                              <button type="button" class="secondary" disabled={busy} onClick={() => { setPauseReason(''); setPauseFor(key); }}>
                                Pause {dest.name}
                              </button>
                            )}
                          </td>
                        )}
                      </tr>
                    );
                  }),
                )}
              </tbody>
            </table>
          </section>
          <div class="cards">
            <ReloadResult reload={d.channels.reload} />
            <section aria-labelledby="ingest-h" class="card">
              <h2 id="ingest-h">Inbound queue</h2>
              <p>
                {ingest?.['waiting'] ?? 0} waiting, {ingest?.['active'] ?? 0} active, {ingest?.['delayed'] ?? 0} delayed, {ingest?.['failed'] ?? 0} failed
              </p>
            </section>
            <section aria-labelledby="dl-h" class="card">
              <h2 id="dl-h">Dead letters</h2>
              <p>
                <a href={href('/dead-letters')}>{d.stats.dead_letters.reduce((n, x) => n + x.count, 0)} waiting for an operator</a>
              </p>
            </section>
          </div>
        </>
      )}
    </>
  );
}
