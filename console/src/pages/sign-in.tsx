/** Sign in with an API token (a named token, or ADMIN_TOKEN), or at the OpenID provider when the gateway trusts one. */
import { useState } from 'preact/hooks';

export function SignIn(props: { notice: string | undefined; onSignIn(token: string): Promise<string | undefined>; onProviderSignIn?: () => Promise<void> }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!token.trim()) {
      setError('Enter an API token.');
      return;
    }
    setBusy(true);
    const problem = await props.onSignIn(token.trim());
    setBusy(false);
    if (problem) setError(problem);
  };
  return (
    <main class="sign-in" id="main">
      <h1>Switchboard console</h1>
      {props.notice && (
        <p class="notice" role="status">
          {props.notice}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <label for="api-token">API token</label>
        <input
          id="api-token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          aria-describedby={error ? 'sign-in-error' : 'sign-in-help'}
          aria-invalid={error ? true : undefined}
          autofocus
        />
        <p id="sign-in-help" class="help">
          A token the gateway issued to you. On a development run, <code>ADMIN_TOKEN</code> is kept in <code>.data/admin-token</code> (the start-up banner says where; it never prints the token).
        </p>
        {error && (
          <p id="sign-in-error" class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
      {props.onProviderSignIn && (
        <section class="provider" aria-labelledby="provider-h">
          <h2 id="provider-h">Single sign-on</h2>
          <button
            type="button"
            class="secondary"
            disabled={busy}
            onClick={() => {
              setBusy(true);
              props.onProviderSignIn!().catch((e: unknown) => {
                setBusy(false);
                setError(`Cannot reach the provider: ${(e as Error).message}`);
              });
            }}
          >
            Sign in with the provider
          </button>
        </section>
      )}
    </main>
  );
}
