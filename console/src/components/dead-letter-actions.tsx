/** Replay or discard one dead letter, with a reason (required to discard). Each offered only to roles that may do it. */
import { useState } from 'preact/hooks';
import { useConsole } from '../context.js';
import { errorText } from '../use-load.js';

export function DeadLetterActions(props: { deliveryId: string; label: string; onDone(): void }) {
  const { api, access, announce } = useConsole();
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  if (!access.replay && !access.discard) return null;
  const id = props.deliveryId;
  const run = async (what: 'replay' | 'discard') => {
    if (what === 'discard' && !reason.trim()) {
      setError('Give a reason to discard.');
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await api.post(`/dead-letters/${id}/${what}`, reason.trim() ? { reason: reason.trim() } : {});
      announce(`${props.label}: ${what === 'replay' ? 'replayed' : 'discarded'}`);
      props.onDone();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="dl-actions">
      <label for={`reason-${id}`}>Reason</label>
      <input id={`reason-${id}`} value={reason} onInput={(e) => setReason(e.currentTarget.value)} placeholder="e.g. EHR fixed the Patient record" maxLength={500} />
      {access.replay && (
        <button type="button" disabled={busy} onClick={() => run('replay')} aria-label={`Replay ${props.label}`}>
          Replay
        </button>
      )}
      {access.discard && (
        <button type="button" class="danger" disabled={busy} onClick={() => run('discard')} aria-label={`Discard ${props.label}`}>
          Discard
        </button>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
