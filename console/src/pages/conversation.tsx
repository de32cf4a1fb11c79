/** One patient's thread across messages and channels, in order, with the state of each delivery. */
import type { MessageSummary } from '../api-types.js';
import { useConsole } from '../context.js';
import { when } from '../format.js';
import { href } from '../router.js';
import { useLoad } from '../use-load.js';
import { DeliveryBadges } from './messages.js';

export function Conversation(props: { id: string }) {
  const { api } = useConsole();
  const c = useLoad(() => api.get<{ items: MessageSummary[]; truncated: boolean }>(`/messages/${encodeURIComponent(props.id)}/conversation`), [api, props.id]);
  if (c.error) return <p class="error" role="alert">Cannot load this conversation: {c.error}</p>;
  if (!c.data) return <p>Loading…</p>;
  const channels = [...new Set(c.data.items.map((m) => m.channelId))];
  return (
    <>
      <p>
        <a href={href(`/messages/${props.id}`)}>← Trace</a>
      </p>
      <h1>Conversation</h1>
      <p class="muted">
        {c.data.items.length} message{c.data.items.length === 1 ? '' : 's'} in {channels.join(', ')}, oldest first
        {c.data.truncated ? ' (the first 200)' : ''}
      </p>
      <ol class="timeline">
        {c.data.items.map((m) => (
          <li key={m.id} class={m.id === props.id ? 'current' : ''}>
            <time dateTime={m.sentAt}>{when(m.sentAt)}</time>
            <div>
              <strong>
                {m.kind} on {m.channelId}
              </strong>{' '}
              <a href={href(`/messages/${m.id}`)} aria-current={m.id === props.id ? 'true' : undefined}>
                <code>{m.sourceMessageId}</code>
              </a>
              <DeliveryBadges deliveries={m.deliveries} />
            </div>
          </li>
        ))}
      </ol>
    </>
  );
}
