/**
 * fhir_subscription against the sandbox FHIR server's R4 rest-hook Subscriptions (Medplum's
 * repository and search matching; notifications as R4 describes: PUT of the resource to
 * <endpoint>/<Type>/<id> with a payload, an empty POST without), through Switchboard's real
 * webhook edge (createWebhookMiddleware in Koa on port 0): the Subscription is created at start
 * and repaired after the server set it to error; notifications are authenticated by the header
 * secret; a notified reply becomes one stored event, a Communication Switchboard wrote for a
 * patient message never does; without payload, the notification wakes a search that reads it.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { PollingContext, SourceCursorStore } from '../../src/connectors/types.js';
import type { CanonicalMessage } from '../../src/core/canonical-message.js';
import { createLogger } from '../../src/core/logger.js';
import { createWebhookMiddleware } from '../../src/http/webhook-route.js';
import type { RuntimeChannel } from '../../src/pipeline/runtime-channel.js';
import { createFhirSubscriptionSource, fhirSubscriptionConfigSchema, SUBSCRIPTION_ID_KEY } from '../../src/connectors/sources/fhir-subscription.js';
import { startFhirSandbox, type FhirSandbox } from '../../src/sandbox/fhir-sandbox.js';
import { syncResult } from '../support/sync-parse.js';

const logger = createLogger({ level: 'silent' });
const SECRET = 'a-subscription-secret-of-32-chars-or-more';
const OWN_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

type Json = Record<string, unknown>;
type Source = ReturnType<typeof createFhirSubscriptionSource>;

let sandbox: FhirSandbox;
let server: Server;
let webhookBase: string;
const channels: RuntimeChannel[] = [];
/** Events stored through the webhook, per channel. */
const accepted = new Map<string, Buffer[]>();
let acceptFails = false;

async function fhir(method: string, path: string, body?: unknown): Promise<Json> {
  const res = await fetch(`${sandbox.baseUrl}/${path}`, { method, headers: { 'content-type': 'application/fhir+json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
  expect(res.ok).toBe(true);
  return (await res.json()) as Json;
}

function reply(text: string, extra: Json = {}): Json {
  return { resourceType: 'Communication', status: 'in-progress', recipient: [{ reference: 'Patient/p1' }], payload: [{ contentString: text }], ...extra };
}

function memoryCursor(): SourceCursorStore & { values: Map<string, string> } {
  const values = new Map<string, string>();
  return { values, get: async (k) => values.get(k) ?? null, set: async (k, v) => void values.set(k, v) };
}

interface Running {
  source: Source;
  cursor: ReturnType<typeof memoryCursor>;
  /** Events the catch-up search emitted. */
  emitted: Buffer[];
  stop(): Promise<void>;
}

function start(id: string, overrides: Json = {}): Running {
  const config = fhirSubscriptionConfigSchema.parse({
    kind: 'fhir_subscription',
    path: `/webhooks/${id}`,
    endpoint: `${webhookBase}/webhooks/${id}`,
    base_url: sandbox.baseUrl,
    secret: SECRET,
    check_interval_ms: 60_000,
    ...overrides,
  });
  const source = createFhirSubscriptionSource(config, { channelId: id });
  channels.push({ id, file: `${id}.yaml`, source, filter: undefined, destinations: [], routing: new Map(), media: undefined });
  accepted.set(id, []);
  const abort = new AbortController();
  const cursor = memoryCursor();
  const emitted: Buffer[] = [];
  const ctx: PollingContext = { signal: abort.signal, logger, cursor, emit: async (raw) => void emitted.push(raw) };
  const loop = source.poll!(ctx);
  return { source, cursor, emitted, stop: async () => (abort.abort(), loop) };
}

function parsed(source: Source, raws: Buffer[]): CanonicalMessage[] {
  return raws.flatMap((raw) => syncResult(source.parse(raw, { channelId: 'x', receivedAt: new Date() })).messages);
}

async function subscriptionOf(r: Running): Promise<Json> {
  const id = await vi.waitFor(() => {
    const v = r.cursor.values.get(SUBSCRIPTION_ID_KEY);
    if (!v) throw new Error('not created yet');
    return v;
  });
  return fhir('GET', `Subscription/${id}`);
}

async function activeSubscription(r: Running): Promise<Json> {
  return vi.waitFor(async () => {
    const sub = await subscriptionOf(r);
    if (sub.status !== 'active') throw new Error(`status ${String(sub.status)}`);
    return sub;
  }, { timeout: 10_000, interval: 50 });
}

beforeAll(async () => {
  sandbox = await startFhirSandbox({ port: 0 });
  const app = new Koa();
  app.use(
    createWebhookMiddleware({
      logger,
      channels: () => channels,
      acceptEvent: async (ch, e) => {
        if (acceptFails) throw new Error('store down');
        accepted.get(ch.id)!.push(e.raw);
        return `evt-${accepted.get(ch.id)!.length}`;
      },
    }),
  );
  server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  webhookBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.close();
  await sandbox?.close();
});

describe('fhir_subscription', () => {
  it('creates an authenticated rest-hook Subscription; a notified reply is stored once, a Communication Switchboard made for a patient message never', async () => {
    const r = start('ehr-replies');
    try {
      const sub = await activeSubscription(r);
      expect(sub).toMatchObject({
        criteria: 'Communication?status=preparation,in-progress',
        channel: { type: 'rest-hook', endpoint: `${webhookBase}/webhooks/ehr-replies`, payload: 'application/fhir+json', header: [`Authorization: Bearer ${SECRET}`] },
      });

      // The patient's message, as Switchboard writes it (own identifier), then the care team's answer.
      const inbound = await fhir('POST', 'Communication', {
        resourceType: 'Communication',
        identifier: [{ system: OWN_SYSTEM, value: 'wamid.IN1' }],
        status: 'completed',
        payload: [{ contentString: 'Is my appointment tomorrow?' }],
      });
      // Even reopened and addressed to the Patient (it matches the criteria): never sent back.
      await fhir('PUT', `Communication/${String(inbound.id)}`, { ...inbound, status: 'in-progress', recipient: [{ reference: 'Patient/p1' }] });
      const answer = await fhir('POST', 'Communication', reply('Yes, at 10:00.', { inResponseTo: [{ reference: `Communication/${String(inbound.id)}` }] }));
      await sandbox.subscriptions.idle();

      const stored = parsed(r.source, accepted.get('ehr-replies')!);
      expect(stored).toHaveLength(1);
      expect(stored[0]).toMatchObject({
        id: `Communication/${String(answer.id)}`,
        text: 'Yes, at 10:00.',
        reply_to: { id: 'wamid.IN1' },
        source: { kind: 'fhir_subscription' },
        ehr: { resource_type: 'Communication', id: answer.id },
      });
    } finally {
      await r.stop();
    }
  });

  it('refuses notifications without the secret, with a wrong one, or with a body naming another resource', async () => {
    const r = start('ehr-auth');
    try {
      await activeSubscription(r);
      const body = JSON.stringify({ ...reply('forged'), id: 'x1' });
      const to = `${webhookBase}/webhooks/ehr-auth/Communication/x1`;
      expect((await fetch(to, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body })).status).toBe(401);
      expect((await fetch(to, { method: 'PUT', headers: { 'content-type': 'application/fhir+json', authorization: `Bearer ${SECRET}x` }, body })).status).toBe(401);
      const ok = await fetch(`${webhookBase}/webhooks/ehr-auth/Communication/other`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json', authorization: `Bearer ${SECRET}` }, body });
      expect(ok.status).toBe(200);
      expect(accepted.get('ehr-auth')).toEqual([]);
      expect((await fetch(`${webhookBase}/webhooks/ehr-auth/Communication/x1`, { method: 'POST', headers: { authorization: `Bearer ${SECRET}` } })).status).toBe(405);
    } finally {
      await r.stop();
    }
  });

  it('repairs a Subscription the server set to error, and finds the reply whose notification failed by its catch-up search', async () => {
    const r = start('ehr-repair', { check_interval_ms: 200 });
    try {
      await activeSubscription(r);
      acceptFails = true; // the webhook answers 503: the server marks the Subscription error
      const lost = await fhir('POST', 'Communication', reply('Please call us back.'));
      await sandbox.subscriptions.idle();
      expect((await subscriptionOf(r)).status).toBe('error');
      acceptFails = false;

      await activeSubscription(r);
      expect(r.source.subscription().repairs).toBeGreaterThanOrEqual(1);
      await vi.waitFor(() => expect(parsed(r.source, r.emitted).map((m) => m.id)).toContain(`Communication/${String(lost.id)}`), { timeout: 10_000 });
      // Notifications flow again once repaired.
      const next = await fhir('POST', 'Communication', reply('After the repair.'));
      await sandbox.subscriptions.idle();
      expect(parsed(r.source, accepted.get('ehr-repair')!).map((m) => m.id)).toContain(`Communication/${String(next.id)}`);
    } finally {
      await r.stop();
    }
  });

  it('id-only: the Subscription carries no payload; the empty notification wakes a search that reads the reply', async () => {
    const r = start('ehr-id-only', { payload: 'id-only' });
    try {
      const sub = await activeSubscription(r);
      expect((sub.channel as Json).payload).toBeUndefined();
      const c = await fhir('POST', 'Communication', reply('Your prescription is ready.'));
      await sandbox.subscriptions.idle();
      expect(accepted.get('ehr-id-only')).toEqual([]);
      // check_interval_ms is 60 s: only the notification can have started this search.
      await vi.waitFor(() => expect(parsed(r.source, r.emitted).map((m) => m.text)).toEqual(['Your prescription is ready.']), { timeout: 10_000 });
      expect(parsed(r.source, r.emitted)[0]?.id).toBe(`Communication/${String(c.id)}`);

      // A Subscriptions Backport notification Bundle naming the resource (id-only): it is read.
      const named = await fhir('POST', 'Communication', reply('Named by id.'));
      const bundle = { resourceType: 'Bundle', type: 'history', entry: [{ fullUrl: `${sandbox.baseUrl}/Communication/${String(named.id)}` }] };
      const res = await fetch(`${webhookBase}/webhooks/ehr-id-only`, { method: 'POST', headers: { 'content-type': 'application/fhir+json', authorization: `Bearer ${SECRET}` }, body: JSON.stringify(bundle) });
      expect(res.status).toBe(200);
      expect(parsed(r.source, accepted.get('ehr-id-only')!).map((m) => m.text)).toEqual(['Named by id.']);
    } finally {
      await r.stop();
    }
  });
});
