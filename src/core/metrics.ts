/**
 * Prometheus metrics, one registry per gateway instance (no global default registry, so several
 * instances in one process, as in tests, never collide). Labels carry channel and destination
 * names and codes only: never message content.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  webhookRequests: Counter<'channel' | 'status'>;
  ingested: Counter<'channel' | 'outcome'>;
  deliveryAttempts: Counter<'channel' | 'destination' | 'result' | 'code'>;
  deliveryLatency: Histogram<'channel' | 'destination'>;
  queueJobs: Gauge<'queue' | 'state'>;
  deadLetters: Gauge<'channel' | 'destination'>;
  circuitOpen: Gauge<'channel' | 'destination'>;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'switchboard_' });
  return {
    registry,
    webhookRequests: new Counter({
      name: 'switchboard_webhook_requests_total',
      help: 'Webhook requests by channel and HTTP status answered.',
      labelNames: ['channel', 'status'],
      registers: [registry],
    }),
    ingested: new Counter({
      name: 'switchboard_messages_ingested_total',
      help: 'Canonical messages recorded by ingest, by outcome (routed, filtered, status).',
      labelNames: ['channel', 'outcome'],
      registers: [registry],
    }),
    deliveryAttempts: new Counter({
      name: 'switchboard_delivery_attempts_total',
      help: 'Delivery attempts by result (delivered, dropped, retry, dead_lettered) and error code.',
      labelNames: ['channel', 'destination', 'result', 'code'],
      registers: [registry],
    }),
    deliveryLatency: new Histogram({
      name: 'switchboard_delivery_latency_seconds',
      help: 'From receipt of the message to its successful delivery.',
      labelNames: ['channel', 'destination'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
      registers: [registry],
    }),
    queueJobs: new Gauge({
      name: 'switchboard_queue_jobs',
      help: 'Jobs per queue and state, sampled at scrape time.',
      labelNames: ['queue', 'state'],
      registers: [registry],
    }),
    deadLetters: new Gauge({
      name: 'switchboard_dead_letters',
      help: 'Deliveries currently in the dead-letter queue, sampled at scrape time.',
      labelNames: ['channel', 'destination'],
      registers: [registry],
    }),
    circuitOpen: new Gauge({
      name: 'switchboard_circuit_open',
      help: '1 when this process holds a destination circuit open or half-open, else 0.',
      labelNames: ['channel', 'destination'],
      registers: [registry],
    }),
  };
}
