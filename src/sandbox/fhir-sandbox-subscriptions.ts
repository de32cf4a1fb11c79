/**
 * R4 Subscriptions (rest-hook) for the sandbox FHIR server. Medplum's in-process router stores
 * Subscription resources but never notifies (its notifications live in @medplum/server, which
 * needs its own PostgreSQL, Redis and workers and is not published as a package), so the sandbox
 * does what http://hl7.org/fhir/R4/subscription.html describes, on top of Medplum's repository:
 *
 *  - a `rest-hook` Subscription created or updated with status `requested` (or `active`) whose
 *    `criteria` parses as a search and whose `channel.endpoint` is an http(s) URL is set to
 *    `active`; otherwise to `error`, with `error` saying why;
 *  - after every create or update of a resource, each active Subscription whose criteria the new
 *    version matches (Medplum's own search matching, `matchesSearchRequest`) is notified:
 *    with `channel.payload` (application/fhir+json) the resource is sent as an update (PUT) to
 *    `<endpoint>/<type>/<id>` ("the URL is interpreted as the service base, and an update (PUT)
 *    is made"); without, a POST with no body to the endpoint. Each `channel.header` entry
 *    (`Name: value`) is sent as a header;
 *  - a notification that fails (no answer, non-2xx) sets the Subscription to `error` with the
 *    reason in `error`; no further notifications until a client sets it back to `requested`.
 *
 * Notifications of one Subscription are sent one at a time, in the order of the writes.
 */
import { matchesSearchRequest, parseSearchRequest } from '@medplum/core';
import type { MemoryRepository } from '@medplum/fhir-router';
import type { Resource, Subscription } from '@medplum/fhirtypes';
import type { Logger } from '../core/logger.js';

const NOTIFY_TIMEOUT_MS = 10_000;

export interface SubscriptionNotifier {
  /** After a write: activates Subscriptions that ask for it, notifies matching ones. */
  afterWrite(resource: Resource): void;
  /** Resolves once every notification queued so far was sent (tests). */
  idle(): Promise<void>;
}

export function createSubscriptionNotifier(repo: MemoryRepository, logger?: Logger): SubscriptionNotifier {
  /** Per Subscription id: the tail of its notification chain (in order, one at a time). */
  const chains = new Map<string, Promise<void>>();
  let pending: Promise<unknown> = Promise.resolve();

  async function setStatus(sub: Subscription & { id: string }, status: Subscription['status'], error?: string): Promise<void> {
    const next: Subscription = { ...sub, status };
    if (error === undefined) delete next.error;
    else next.error = error;
    await repo.updateResource(next);
  }

  async function review(sub: Subscription & { id: string }): Promise<void> {
    if (sub.status !== 'requested') return;
    if (sub.channel?.type !== 'rest-hook') return setStatus(sub, 'error', 'only rest-hook channels are supported by this server');
    if (!/^https?:\/\//.test(sub.channel.endpoint ?? '')) return setStatus(sub, 'error', 'channel.endpoint must be an http(s) URL');
    try {
      parseSearchRequest(sub.criteria);
    } catch {
      return setStatus(sub, 'error', 'criteria is not a valid search');
    }
    await setStatus(sub, 'active');
  }

  function headersOf(sub: Subscription): Record<string, string> {
    const out: Record<string, string> = {};
    for (const h of sub.channel?.header ?? []) {
      const i = h.indexOf(':');
      if (i > 0) out[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
    }
    return out;
  }

  async function notify(sub: Subscription & { id: string }, resource: Resource & { id: string }): Promise<void> {
    const endpoint = (sub.channel?.endpoint ?? '').replace(/\/+$/, '');
    const withPayload = sub.channel?.payload !== undefined && sub.channel.payload !== '';
    const headers = headersOf(sub);
    let failure: string | undefined;
    try {
      const res = withPayload
        ? await fetch(`${endpoint}/${resource.resourceType}/${resource.id}`, {
            method: 'PUT',
            headers: { ...headers, 'content-type': 'application/fhir+json' },
            body: JSON.stringify(resource),
            signal: AbortSignal.timeout(NOTIFY_TIMEOUT_MS),
          })
        : await fetch(endpoint, { method: 'POST', headers, signal: AbortSignal.timeout(NOTIFY_TIMEOUT_MS) });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) failure = `the endpoint answered ${res.status}`;
    } catch (err) {
      failure = `the endpoint could not be reached (${err instanceof Error ? err.name : 'error'})`;
    }
    if (failure !== undefined) {
      logger?.warn({ subscription: sub.id, reason: failure }, 'fhir sandbox: rest-hook notification failed; Subscription set to error');
      // Re-read: the Subscription may have changed while the notification was on its way.
      const current = await repo.readResource<Subscription>('Subscription', sub.id).catch(() => undefined);
      if (current?.status === 'active') await setStatus(current as Subscription & { id: string }, 'error', failure);
    }
  }

  async function fanOut(resource: Resource & { id: string }): Promise<void> {
    if (resource.resourceType === 'Subscription') {
      await review(resource as Subscription & { id: string });
      return;
    }
    const subs = (await repo.searchResources<Subscription>(parseSearchRequest('Subscription?status=active'))) as (Subscription & { id: string })[];
    for (const sub of subs) {
      let matches = false;
      try {
        const search = parseSearchRequest(sub.criteria);
        matches = search.resourceType === resource.resourceType && matchesSearchRequest(resource, search);
      } catch {
        matches = false;
      }
      if (!matches) continue;
      const tail = (chains.get(sub.id) ?? Promise.resolve()).then(async () => {
        // Skip when the Subscription left `active` (an earlier notification failed).
        const current = await repo.readResource<Subscription>('Subscription', sub.id).catch(() => undefined);
        if (current?.status === 'active') await notify(current as Subscription & { id: string }, resource);
      });
      chains.set(sub.id, tail.catch(() => undefined));
    }
  }

  return {
    afterWrite(resource) {
      if (resource.id === undefined) return;
      const job = fanOut(resource as Resource & { id: string }).catch((err: unknown) => {
        logger?.warn({ err_name: err instanceof Error ? err.name : typeof err }, 'fhir sandbox: subscription processing failed');
      });
      pending = Promise.all([pending, job]);
    },
    async idle() {
      await pending;
      await Promise.all([...chains.values()]);
    },
  };
}
