/** Shared display helpers: times in the browser's zone, states in words. */
import type { DeliveryState } from './api-types.js';

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
}

export const stateLabel: Record<DeliveryState, string> = {
  pending: 'pending',
  delivered: 'delivered',
  dropped: 'dropped',
  dead_lettered: 'dead letter',
  discarded: 'discarded',
};

/** A time-range input value (datetime-local) as an ISO instant, or undefined. */
export function isoFromLocal(v: string): string | undefined {
  if (!v) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}
