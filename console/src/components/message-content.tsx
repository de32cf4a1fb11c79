/**
 * A message's content (who wrote it, the text, media, location) for roles that may read content:
 * loaded only when the person asks, and each load is a `message.viewed` entry (view: content) in
 * the audit trail. Other roles are not offered it.
 */
import { useState } from 'preact/hooks';
import type { MessageContent as Content } from '../api-types.js';
import { useConsole } from '../context.js';
import { errorText } from '../use-load.js';

export function MessageContent(props: { messageId: string }) {
  const { api, access } = useConsole();
  const [content, setContent] = useState<Content['message'] | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  if (!access.content) return null;
  const show = async () => {
    setBusy(true);
    setError(undefined);
    try {
      setContent((await api.get<Content>(`/messages/${encodeURIComponent(props.messageId)}/content`)).message);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  const s = content?.sender;
  const who = s && [s.display_name ?? s.username, s.phone ?? s.email ?? s.platform_id].filter(Boolean).join(', ');
  return (
    <section aria-labelledby="content-h" class="card content">
      <h2 id="content-h">Message content</h2>
      {!content && (
        <>
          <p class="muted">Patient information: opening it is recorded in the audit trail under your name.</p>
          <button type="button" class="secondary" disabled={busy} onClick={show}>
            Show message content
          </button>
        </>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {content && (
        <>
          <dl class="content-facts">
            <dt>From</dt>
            <dd>{who || '—'}</dd>
            <dt>Text</dt>
            <dd class="text">{content.text ?? <span class="muted">no text</span>}</dd>
            {content.media.length > 0 && (
              <>
                <dt>Media</dt>
                <dd>
                  <ul class="plain">
                    {content.media.map((m, i) => (
                      <li key={i}>
                        {[m.kind, m.mime_type, m.filename, m.caption].filter(Boolean).join(' · ')}
                      </li>
                    ))}
                  </ul>
                </dd>
              </>
            )}
            {content.location && (
              <>
                <dt>Location</dt>
                <dd>{[content.location.name, content.location.address, `${content.location.latitude}, ${content.location.longitude}`].filter(Boolean).join(' · ')}</dd>
              </>
            )}
          </dl>
          <details>
            <summary>The whole canonical message</summary>
            <pre>{JSON.stringify(content, null, 2)}</pre>
          </details>
          <button type="button" class="secondary" onClick={() => setContent(undefined)}>
            Hide message content
          </button>
        </>
      )}
    </section>
  );
}
