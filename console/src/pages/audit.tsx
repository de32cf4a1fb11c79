/**
 * The audit log: browse and filter entries (time range, action, outcome, principal, resource id),
 * newest first and paged; check whether the chain holds (what `switchboard audit verify` checks);
 * export the period as NDJSON or FHIR R4 AuditEvent. Every view, check and export is itself audited.
 */
import { useState } from 'preact/hooks';
import type { AuditEntry, AuditPage, AuditVerify } from '../api-types.js';
import { useConsole } from '../context.js';
import { isoFromLocal, when } from '../format.js';
import { href, navigate } from '../router.js';
import { errorText, useLoad } from '../use-load.js';

const filterKeys = ['since', 'until', 'action', 'outcome', 'principal', 'resource'] as const;
type Filters = Record<(typeof filterKeys)[number], string>;

function Who(props: { p: AuditEntry['principal'] }) {
  if (!props.p) return <span class="muted">not authenticated</span>;
  return (
    <span title={`${props.p.kind}:${props.p.id}`}>
      {props.p.display}
      {props.p.role ? ` (${props.p.role})` : ''}
    </span>
  );
}

function Resources(props: { resources: AuditEntry['resources'] }) {
  if (props.resources.length === 0) return <span class="muted">—</span>;
  const shown = props.resources.slice(0, 3);
  return (
    <ul class="plain">
      {shown.map((r) => (
        <li key={`${r.type}:${r.id}`}>
          {r.type}{' '}
          {r.type === 'message' ? (
            <a href={href(`/messages/${r.id}`)}>
              <code>{r.id}</code>
            </a>
          ) : (
            <code>{r.id}</code>
          )}
        </li>
      ))}
      {props.resources.length > shown.length && <li class="muted">and {props.resources.length - shown.length} more</li>}
    </ul>
  );
}

function Detail(props: { detail: AuditEntry['detail'] }) {
  const entries = Object.entries(props.detail).filter(([, v]) => v !== null);
  if (entries.length === 0) return <span class="muted">—</span>;
  return (
    <dl class="facts">
      {entries.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{String(v)}</dd>
        </div>
      ))}
    </dl>
  );
}

function Verify() {
  const { api } = useConsole();
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<AuditVerify | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const r = await api.get<AuditVerify>('/audit/verify');
      setResult(r);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="verify-h" class={`card ${result && !result.ok ? 'card-bad' : ''}`}>
      <h2 id="verify-h">Chain</h2>
      <p>Every entry carries the previous entry's hash under the audit key: a changed, removed or inserted entry breaks the chain.</p>
      <button type="button" disabled={busy} onClick={run}>
        {busy ? 'Verifying…' : 'Verify the audit trail'}
      </button>
      {result && (
        <p role="status">
          <span class={`badge ${result.ok ? 'good' : 'bad'}`}>{result.ok ? 'intact' : 'broken'}</span> {result.summary}
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function Export(props: { since: string; until: string }) {
  const { api, announce } = useConsole();
  const [format, setFormat] = useState<'ndjson' | 'fhir'>('ndjson');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const { blob, filename } = await api.download('/audit/export', { format, since: isoFromLocal(props.since), until: isoFromLocal(props.until) });
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = filename;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      announce(`Exported ${filename}`);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="export-h" class="card">
      <h2 id="export-h">Export</h2>
      <p>{props.since || props.until ? 'The entries of the time range in the filter' : 'Every entry'}, in chain order, as <code>switchboard audit export</code> writes them.</p>
      <div class="inline">
        <label for="export-format">Format</label>
        <select id="export-format" value={format} onChange={(e) => setFormat(e.currentTarget.value === 'fhir' ? 'fhir' : 'ndjson')}>
          <option value="ndjson">NDJSON (as recorded, with hashes)</option>
          <option value="fhir">FHIR R4 AuditEvent (NDJSON)</option>
        </select>
        <button type="button" disabled={busy} onClick={run}>
          {busy ? 'Exporting…' : 'Export'}
        </button>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

export function AuditLog(props: { params: URLSearchParams }) {
  const { api, access } = useConsole();
  const applied = Object.fromEntries(filterKeys.map((k) => [k, props.params.get(k) ?? ''])) as Filters;
  const [form, setForm] = useState<Filters>(applied);
  const [pages, setPages] = useState<number[]>([]);
  const before = pages.at(-1);
  const list = useLoad(
    () =>
      api.get<AuditPage>('/audit', {
        since: isoFromLocal(applied.since),
        until: isoFromLocal(applied.until),
        action: applied.action,
        outcome: applied.outcome,
        principal: applied.principal.trim(),
        resource: applied.resource.trim(),
        limit: 50,
        before_seq: before,
      }),
    [api, props.params.toString(), before],
  );
  const set = (k: keyof Filters) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });
  const actions = list.data?.actions ?? [];
  return (
    <>
      <h1>Audit log</h1>
      <div class="cards two">
        <Verify />
        {access.auditExport && <Export since={applied.since} until={applied.until} />}
      </div>
      <form
        class="search"
        aria-label="Filter audit entries"
        onSubmit={(e) => {
          e.preventDefault();
          setPages([]);
          navigate('/audit', form);
        }}
      >
        <div class="field">
          <label for="audit-since">From</label>
          <input id="audit-since" type="datetime-local" step={1} value={form.since} onInput={set('since')} />
        </div>
        <div class="field">
          <label for="audit-until">To</label>
          <input id="audit-until" type="datetime-local" step={1} value={form.until} onInput={set('until')} />
        </div>
        <div class="field">
          <label for="audit-action">Action</label>
          <select id="audit-action" value={form.action} onChange={set('action')}>
            <option value="">any</option>
            {actions.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="audit-outcome">Outcome</label>
          <select id="audit-outcome" value={form.outcome} onChange={set('outcome')}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="failure">failure</option>
          </select>
        </div>
        <div class="field">
          <label for="audit-principal">Principal</label>
          <input id="audit-principal" value={form.principal} onInput={set('principal')} placeholder="token name or kind:id" />
        </div>
        <div class="field">
          <label for="audit-resource">Resource id</label>
          <input id="audit-resource" value={form.resource} onInput={set('resource')} placeholder="a message or delivery id" />
        </div>
        <div class="field actions">
          <button type="submit">Filter</button>
        </div>
      </form>
      {list.error && (
        <p class="error" role="alert">
          Cannot load the audit log: {list.error}
        </p>
      )}
      {list.data && (
        <section aria-labelledby="audit-h">
          <h2 id="audit-h">
            {list.data.items.length === 0
              ? 'No entries'
              : `${list.data.items.length} entr${list.data.items.length === 1 ? 'y' : 'ies'}, newest first (numbers ${list.data.items[0]!.seq} to ${list.data.items.at(-1)!.seq})`}
          </h2>
          {list.data.items.length > 0 && (
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col" class="num">
                    #
                  </th>
                  <th scope="col">Time</th>
                  <th scope="col">Action</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Principal</th>
                  <th scope="col">From</th>
                  <th scope="col">Resources</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {list.data.items.map((e) => (
                  <tr key={e.seq}>
                    <td class="num">{e.seq}</td>
                    <td class="time">
                      <time dateTime={e.recorded_at}>{when(e.recorded_at)}</time>
                    </td>
                    <td>
                      <code>{e.action}</code>
                    </td>
                    <td>
                      <span class={`badge ${e.outcome === 'success' ? 'good' : 'bad'}`}>{e.outcome}</span>
                    </td>
                    <td>
                      <Who p={e.principal} />
                    </td>
                    <td>{e.source_address ?? '—'}</td>
                    <td>
                      <Resources resources={e.resources} />
                    </td>
                    <td>
                      <Detail detail={e.detail} />
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
            <button type="button" class="secondary" disabled={!list.data.next} onClick={() => list.data?.next && setPages([...pages, list.data.next.before_seq])}>
              Older
            </button>
          </div>
        </section>
      )}
    </>
  );
}
