/**
 * Sign-in at the OpenID provider (OIDC_ISSUER) as a public client: authorization code with PKCE
 * (S256), a random state, the API's audience as resource indicator (RFC 8707) unless the gateway
 * says to send none (OIDC_CONSOLE_RESOURCE=none). The verifier and
 * state live in this tab's sessionStorage only until the provider sends the browser back; the
 * access token then becomes the session's bearer token, like an API token.
 */
export interface OidcConfig {
  issuer: string;
  clientId: string;
  /** Absent: no resource indicator (a provider that refuses the parameter). */
  resource?: string;
  scope: string;
}

interface Discovery {
  authorization_endpoint: string;
  token_endpoint: string;
}

const PENDING = 'switchboard.console.oidc';

const base64url = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const random = (n: number) => base64url(crypto.getRandomValues(new Uint8Array(n)));
const redirectUri = () => `${location.origin}/console/`;

async function discover(issuer: string): Promise<Discovery> {
  const r = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { cache: 'no-store' });
  if (!r.ok) throw new Error(`the provider's discovery document answered ${r.status}`);
  const d = (await r.json()) as Partial<Discovery>;
  if (typeof d.authorization_endpoint !== 'string' || typeof d.token_endpoint !== 'string') throw new Error("the provider's discovery document names no authorization or token endpoint");
  return { authorization_endpoint: d.authorization_endpoint, token_endpoint: d.token_endpoint };
}

/** Sends the browser to the provider's sign-in page. */
export async function beginOidcSignIn(cfg: OidcConfig): Promise<void> {
  const d = await discover(cfg.issuer);
  const verifier = random(32);
  const state = random(16);
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const u = new URL(d.authorization_endpoint);
  u.search = new URLSearchParams({
    response_type: 'code',
    client_id: cfg.clientId,
    redirect_uri: redirectUri(),
    scope: cfg.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(cfg.resource !== undefined && { resource: cfg.resource }),
  }).toString();
  location.assign(u.toString());
}

/**
 * When the provider sent the browser back (?code=&state= or ?error=): exchanges the code for an
 * access token. Undefined when this page load is not a return from the provider.
 */
export async function completeOidcSignIn(cfg: OidcConfig): Promise<{ token: string; expiresInSeconds: number | undefined } | { error: string } | undefined> {
  const q = new URLSearchParams(location.search);
  if (!q.has('code') && !q.has('error')) return undefined;
  // The code and state leave the address bar (and the history) at once.
  history.replaceState(null, '', `${location.pathname}${location.hash}`);
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  const pending = raw ? (JSON.parse(raw) as { verifier?: string; state?: string }) : {};
  if (q.has('error')) return { error: `The provider refused the sign-in: ${q.get('error_description') ?? q.get('error')}` };
  if (!pending.verifier || !pending.state || pending.state !== q.get('state')) return { error: 'The sign-in answer does not belong to a sign-in started in this tab. Sign in again.' };
  const d = await discover(cfg.issuer);
  const r = await fetch(d.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: q.get('code') ?? '', redirect_uri: redirectUri(), client_id: cfg.clientId, code_verifier: pending.verifier, ...(cfg.resource !== undefined && { resource: cfg.resource }) }),
  });
  const body = (await r.json().catch(() => ({}))) as { access_token?: string; expires_in?: number; error?: string; error_description?: string };
  if (!r.ok || !body.access_token) return { error: `The provider did not issue a token: ${body.error_description ?? body.error ?? `HTTP ${r.status}`}` };
  return { token: body.access_token, expiresInSeconds: typeof body.expires_in === 'number' ? body.expires_in : undefined };
}
