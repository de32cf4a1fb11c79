/**
 * System under test: the bare pipeline the issue compares against. Koa + raw-body + HMAC-SHA256
 * check + `queue.add` on BullMQ -> 200; one BullMQ worker that JSON.parses the webhook, builds a
 * minimal canonical message by hand, evaluates the same JSONata mapping (compiled once, fixed
 * `$patient` binding) and POSTs the Communication to the same FHIR server with the same
 * conditional create. Nothing else: no message store, no patient search, no validation, no
 * source parser. Started by bench/run.ts as a child process.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Queue, Worker, createPostgresBackend, withBackend, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import jsonata from 'jsonata';
import Koa from 'koa';
import getRawBody from 'raw-body';
import { serveSut } from './sut-common.js';

const QUEUE = 'baseline';
const WEBHOOK_PATH = '/webhooks/whatsapp-to-ehr';
const IDENTIFIER_SYSTEM = 'https://switchboard.example/sid/whatsapp-message-id';

interface WebhookJob {
  raw: string;
  receivedAt: number;
}

interface WaText {
  from: string;
  id: string;
  timestamp: string;
  text?: { body?: string };
}
interface WaWebhook {
  entry: { id: string; changes: { value: { metadata: { phone_number_id: string; display_phone_number: string }; contacts?: { profile?: { name?: string } }[]; messages: WaText[] } }[] }[];
}

await serveSut(async (cfg) => {
  const mappingFile = path.join(cfg.repoRoot, 'mappings', 'whatsapp-to-communication.jsonata');
  const expr = jsonata(await readFile(mappingFile, 'utf8'));
  const bindings = { patient: cfg.patient ?? null, identifier_system: IDENTIFIER_SYSTEM, channel: { id: 'whatsapp-to-ehr' } };
  const jobOptions = { removeOnComplete: { count: 1000 }, removeOnFail: { age: 7 * 24 * 3600 }, attempts: 10, backoff: { type: 'exponential', delay: 1000, jitter: 1 } };

  // ---- queue ------------------------------------------------------------------------------
  let queue: Queue;
  let worker: Worker;
  const closers: (() => Promise<void> | void)[] = [];
  const processor = async (job: Job<WebhookJob>): Promise<void> => {
    const event = JSON.parse(job.data.raw) as WaWebhook;
    const entry = event.entry[0]!;
    const value = entry.changes[0]!.value;
    const m = value.messages[0]!;
    const message = {
      schema_version: 1,
      source: { kind: 'whatsapp_cloud', account_id: entry.id, endpoint_id: value.metadata.phone_number_id, endpoint_display: value.metadata.display_phone_number },
      id: m.id,
      dedup_key: m.id,
      kind: 'text',
      sent_at: new Date(Number(m.timestamp) * 1000).toISOString(),
      received_at: new Date(job.data.receivedAt).toISOString(),
      sender: { phone: `+${m.from}`, platform_id: m.from, display_name: value.contacts?.[0]?.profile?.name },
      conversation_id: `whatsapp:${m.from}`,
      text: m.text?.body,
      media: [],
      errors: [],
    };
    const communication = (await expr.evaluate(message, bindings)) as unknown;
    const res = await fetch(`${cfg.fhirBaseUrl}/Communication`, {
      method: 'POST',
      headers: {
        'content-type': 'application/fhir+json',
        accept: 'application/fhir+json',
        'if-none-exist': `identifier=${encodeURIComponent(IDENTIFIER_SYSTEM)}|${encodeURIComponent(m.id)}`,
        prefer: 'return=representation',
      },
      body: JSON.stringify(communication),
      signal: AbortSignal.timeout(15_000),
    });
    await res.arrayBuffer();
    if (res.status !== 200 && res.status !== 201) throw new Error(`FHIR server answered ${res.status}`);
  };

  if (cfg.queue === 'redis') {
    if (!cfg.redisUrl) throw new Error('redisUrl is required');
    const producer = new Redis(cfg.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
    const workerConn = new Redis(cfg.redisUrl, { maxRetriesPerRequest: null });
    await new Promise<void>((resolve, reject) => {
      producer.once('ready', () => resolve());
      producer.once('error', reject);
    });
    queue = new Queue(QUEUE, { connection: producer, prefix: cfg.queuePrefix });
    worker = new Worker<WebhookJob>(QUEUE, processor, { connection: workerConn, prefix: cfg.queuePrefix, concurrency: cfg.concurrency });
    closers.push(() => producer.disconnect(), () => workerConn.disconnect());
  } else {
    const { Queue: PgQueue, Worker: PgWorker } = withBackend(createPostgresBackend);
    const connection = { connectionString: cfg.databaseUrl, schema: 'bullmq', migrate: true, max: 10 };
    queue = new PgQueue(QUEUE, { connection }) as unknown as Queue;
    worker = new PgWorker<WebhookJob>(QUEUE, processor, { connection, concurrency: cfg.concurrency }) as unknown as Worker;
    await queue.getJobCounts('waiting');
  }
  worker.on('error', (err) => process.stderr.write(`baseline worker error: ${err.message}\n`));

  // ---- HTTP edge --------------------------------------------------------------------------
  const app = new Koa();
  app.use(async (ctx) => {
    if (ctx.method !== 'POST' || ctx.path !== WEBHOOK_PATH) {
      ctx.status = 404;
      return;
    }
    const raw = await getRawBody(ctx.req, { limit: 3 * 1024 * 1024 });
    const header = ctx.get('x-hub-signature-256');
    const given = Buffer.from(header.replace(/^sha256=/, ''), 'hex');
    const expected = createHmac('sha256', cfg.appSecret).update(raw).digest();
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      ctx.status = 403;
      return;
    }
    try {
      await queue.add('webhook', { raw: raw.toString('utf8'), receivedAt: Date.now() }, jobOptions);
    } catch {
      ctx.status = 503;
      return;
    }
    ctx.status = 200;
    ctx.body = 'OK';
  });
  const server = http.createServer(app.callback());
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    webhookPath: WEBHOOK_PATH,
    description: `Koa + raw-body + HMAC + BullMQ queue.add (${cfg.queue}); worker c=${cfg.concurrency}: JSON.parse + JSONata + conditional create`,
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await Promise.race([worker.close(), new Promise((r) => setTimeout(r, 10_000).unref())]);
      await queue.close();
      for (const c of closers) await c();
    },
  };
});
