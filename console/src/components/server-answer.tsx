/**
 * A server's answer to a delivery attempt. PHI-free facts (status, resource id, ACK code) are shown
 * to every role; the answer's body (an OperationOutcome may echo content) only to roles that may
 * see content.
 */
import { useConsole } from '../context.js';

export function ServerAnswer(props: { detail: Record<string, unknown> | null; response: unknown }) {
  const { access } = useConsole();
  const facts = Object.entries(props.detail ?? {}).filter(([, v]) => v !== null && v !== undefined && typeof v !== 'object');
  return (
    <>
      {facts.length > 0 && (
        <dl class="facts">
          {facts.map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{String(v)}</dd>
            </div>
          ))}
        </dl>
      )}
      {props.response !== null && props.response !== undefined && access.content && (
        <details>
          <summary>Server's answer</summary>
          <pre>{JSON.stringify(props.response, null, 2)}</pre>
        </details>
      )}
    </>
  );
}
