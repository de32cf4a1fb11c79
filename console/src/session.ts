/**
 * The signed-in session: the API token lives in this tab's sessionStorage only (gone when the tab
 * closes), and is forgotten after the configured idle time. Never in localStorage, cookies or URLs.
 */
const KEY = 'switchboard.console.session';

export interface Session {
  token: string;
  /** Epoch ms after which the session is over unless renewed by activity. */
  expiresAt: number;
  /** Epoch ms after which no activity renews it (the provider's access token expires). */
  notAfter?: number;
}

export function loadSession(now = Date.now()): Session | null {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return null;
  try {
    const s = JSON.parse(raw) as Partial<Session>;
    if (typeof s.token !== 'string' || typeof s.expiresAt !== 'number' || s.expiresAt <= now) {
      sessionStorage.removeItem(KEY);
      return null;
    }
    return { token: s.token, expiresAt: s.expiresAt, ...(typeof s.notAfter === 'number' && { notAfter: s.notAfter }) };
  } catch {
    sessionStorage.removeItem(KEY);
    return null;
  }
}

export function saveSession(token: string, idleMinutes: number, notAfter?: number): Session {
  const s: Session = { token, expiresAt: Math.min(Date.now() + idleMinutes * 60_000, notAfter ?? Infinity), ...(notAfter !== undefined && { notAfter }) };
  sessionStorage.setItem(KEY, JSON.stringify(s));
  return s;
}

export function clearSession(): void {
  sessionStorage.removeItem(KEY);
}
