/** What every page gets from the signed-in shell: the API client, the access rules, and a notice line. */
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Access } from './access.js';
import type { ApiClient } from './api.js';

export interface ConsoleContext {
  api: ApiClient;
  access: Access;
  /** Announces a result in the shared live region (read out by screen readers). */
  announce(text: string): void;
}

export const Console = createContext<ConsoleContext | null>(null);

export function useConsole(): ConsoleContext {
  const c = useContext(Console);
  if (!c) throw new Error('useConsole outside the signed-in shell');
  return c;
}
