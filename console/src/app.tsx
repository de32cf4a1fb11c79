/** The console shell: sign-in, session expiry, navigation, and the page for the current route. */
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { accessFor, narrowed, type Access } from './access.js';
import { createApiClient, type ApiClient } from './api.js';
import type { WhoAmI } from './api-types.js';
import { Console } from './context.js';
import { href, useRoute } from './router.js';
import { clearSession, loadSession, saveSession } from './session.js';
import { beginOidcSignIn, completeOidcSignIn, type OidcConfig } from './oidc.js';
import { SignIn } from './pages/sign-in.js';
import { Dashboard } from './pages/dashboard.js';
import { Messages } from './pages/messages.js';
import { Trace } from './pages/trace.js';
import { DeadLetters } from './pages/dead-letters.js';
import { Conversation } from './pages/conversation.js';
import { AuditLog } from './pages/audit.js';

interface ConsoleConfig {
  sessionIdleMinutes: number;
  /** Set when the gateway trusts an OpenID provider (OIDC_ISSUER): sign in there too. */
  oidc?: OidcConfig;
}

interface Signed {
  token: string;
  principal: WhoAmI['principal'];
}

async function fetchConfig(): Promise<ConsoleConfig> {
  try {
    const r = await fetch('/console/config.json', { cache: 'no-store' });
    if (r.ok) return (await r.json()) as ConsoleConfig;
  } catch {
    // fall through to the default
  }
  return { sessionIdleMinutes: 30 };
}

export function App() {
  const [config, setConfig] = useState<ConsoleConfig | undefined>(undefined);
  const [signed, setSigned] = useState<Signed | undefined>(undefined);
  const [restoring, setRestoring] = useState(true);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const [access, setAccess] = useState<Access>(accessFor(null, []));
  const [announcement, setAnnouncement] = useState('');
  const route = useRoute();
  const lastActivity = useRef(Date.now());
  /** When the provider's access token expires (OIDC sign-in): the session ends then at the latest. */
  const tokenExpiry = useRef<number | undefined>(undefined);

  const signOut = useCallback((message: string) => {
    clearSession();
    setSigned(undefined);
    setAccess(accessFor(null, []));
    setNotice(message);
  }, []);

  const touch = useCallback(() => {
    lastActivity.current = Date.now();
    const s = loadSession();
    if (s && config) saveSession(s.token, config.sessionIdleMinutes, s.notAfter);
  }, [config]);

  const api: ApiClient | undefined = useMemo(
    () =>
      signed &&
      createApiClient(signed.token, {
        onUnauthenticated: (m) => signOut(`The gateway no longer accepts this token (${m}). Sign in again.`),
        onForbidden: (path) => setAccess((a) => narrowed(a, path)),
        onActivity: touch,
      }),
    [signed, signOut, touch],
  );

  const begin = useCallback(async (token: string, cfg: ConsoleConfig, notAfter?: number): Promise<string | undefined> => {
    const probe = createApiClient(token, { onUnauthenticated: () => undefined, onForbidden: () => undefined, onActivity: () => undefined });
    try {
      const who = await probe.get<WhoAmI>('/whoami');
      saveSession(token, cfg.sessionIdleMinutes, notAfter);
      tokenExpiry.current = notAfter;
      setSigned({ token, principal: who.principal });
      setAccess(accessFor(who.principal.role, who.permissions));
      setNotice(undefined);
      return undefined;
    } catch (e) {
      const status = (e as { status?: number }).status;
      return status === 401 || status === 403 ? 'The gateway did not accept this token.' : `Cannot sign in: ${(e as Error).message}`;
    }
  }, []);

  // Start: read the config, then pick up a session this tab still holds.
  useEffect(() => {
    void fetchConfig().then(async (cfg) => {
      setConfig(cfg);
      // Back from the provider's sign-in page: exchange the code for the session's token.
      const returned = cfg.oidc ? await completeOidcSignIn(cfg.oidc).catch((e: unknown) => ({ error: `Cannot finish signing in at the provider: ${(e as Error).message}` })) : undefined;
      if (returned && 'error' in returned) signOut(returned.error);
      else if (returned) {
        const problem = await begin(returned.token, cfg, returned.expiresInSeconds === undefined ? undefined : Date.now() + returned.expiresInSeconds * 1000);
        if (problem) signOut(problem);
      } else {
        const s = loadSession();
        if (s) {
          const problem = await begin(s.token, cfg, s.notAfter);
          if (problem) signOut(problem);
        }
      }
      setRestoring(false);
    });
  }, [begin, signOut]);

  // Idle expiry: any key or click in the page, or any answered API call, keeps the session alive.
  useEffect(() => {
    if (!signed || !config) return undefined;
    const onInput = () => touch();
    addEventListener('keydown', onInput);
    addEventListener('pointerdown', onInput);
    const t = setInterval(() => {
      if (loadSession()) return;
      const end = tokenExpiry.current;
      signOut(
        end !== undefined && Date.now() >= end
          ? "Your session ended when the provider's sign-in expired. Sign in again."
          : `Your session ended after ${config.sessionIdleMinutes} minutes without activity. Sign in again.`,
      );
    }, 5_000);
    return () => {
      removeEventListener('keydown', onInput);
      removeEventListener('pointerdown', onInput);
      clearInterval(t);
    };
  }, [signed, config, touch, signOut]);

  if (!config || restoring) return <p class="loading">Loading…</p>;
  if (!signed || !api) {
    const oidc = config.oidc;
    return <SignIn notice={notice} onSignIn={(token) => begin(token, config)} {...(oidc && { onProviderSignIn: () => beginOidcSignIn(oidc) })} />;
  }

  const conversation = /^\/messages\/([^/]+)\/conversation$/.exec(route.path);
  const page = conversation?.[1] ? (
    <Conversation id={decodeURIComponent(conversation[1])} />
  ) : route.path.startsWith('/messages/') ? (
    <Trace id={decodeURIComponent(route.path.slice('/messages/'.length))} />
  ) : route.path === '/messages' ? (
    <Messages params={route.params} />
  ) : route.path === '/dead-letters' ? (
    <DeadLetters params={route.params} />
  ) : route.path === '/audit' && access.auditRead ? (
    <AuditLog params={route.params} />
  ) : (
    <Dashboard />
  );
  const nav = [
    { path: '/', label: 'Dashboard', active: route.path === '/' },
    { path: '/messages', label: 'Messages', active: route.path.startsWith('/messages') },
    { path: '/dead-letters', label: 'Dead letters', active: route.path === '/dead-letters' },
    ...(access.auditRead ? [{ path: '/audit', label: 'Audit log', active: route.path === '/audit' }] : []),
  ];
  return (
    <Console.Provider value={{ api, access, announce: setAnnouncement }}>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Switchboard</span>
        <nav aria-label="Console">
          {nav.map((n) => (
            <a key={n.path} href={href(n.path)} aria-current={n.active ? 'page' : undefined}>
              {n.label}
            </a>
          ))}
        </nav>
        <span class="who">
          Signed in as <strong>{signed.principal.display}</strong>
          {signed.principal.role ? ` (${signed.principal.role})` : ''}
        </span>
        <button type="button" class="secondary" onClick={() => signOut('You signed out.')}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
      <div class="sr-only" role="status" aria-live="polite">
        {announcement}
      </div>
    </Console.Provider>
  );
}
