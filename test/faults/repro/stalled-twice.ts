/**
 * Reproduction (fault suite finding): a delivery job that is active in a worker process killed
 * twice in a row is failed by BullMQ with "job stalled more than allowable limit"
 * (maxStalledCount 1). The delivery stays `pending` in the store with 0 attempts, is not in the
 * dead-letter queue, and the outbox sweeper cannot revive it: it re-adds the job under the same
 * id (`<deliveryId>-g<generation>`), which is a no-op while the failed job is kept
 * (removeOnFail: 7 days). The acknowledged message is never delivered.
 *
 * Run: node --import tsx test/faults/repro/stalled-twice.ts   (about 1.5 minutes; KILLS=n kills
 * n times instead of twice)
 * Exit code 1 = reproduced (message stuck), 0 = delivered.
 */
import { Redis } from 'ioredis';
import { deploy, startEnvironment } from '../support/environment.js';
import { sleep, until } from '../support/processes.js';
import { countCommunications } from '../support/verify.js';
import { metaSerialise, newWamid, sign, textEvent } from '../../support/whatsapp-webhook.js';

const env = await startEnvironment({ redis: true });
let code = 2;
try {
  // Communication writes hang for 60 s: the delivery stays active while we kill the worker.
  const hold = { on: true };
  env.proxy.setRule((req) => (hold.on && req.method === 'POST' && req.path.endsWith('/Communication') ? { kind: 'pass', delayMs: 60_000 } : { kind: 'pass' }));
  const d = await deploy(env, { name: 'repro', queue: 'redis', workers: 1 });
  const worker = d.workers[0]!;
  const redis = new Redis(env.redis!.url);
  const wamid = newWamid();
  const body = metaSerialise(textEvent({ wamid }));
  const r = await fetch(d.webhookUrl(), { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': sign(body) }, body });
  console.log(`webhook answered ${r.status}`);

  const delivery = await until(
    'the delivery row',
    async () =>
      (await d.db.query<{ id: string; generation: number }>(`SELECT d.id, d.generation FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE m.source_index = $1`, [d.sourceIndex(wamid)])).rows[0],
    30_000,
  );
  const jobKey = `${d.queuePrefix}:deliver.whatsapp-to-ehr.ehr:${delivery.id}-g${delivery.generation}`;
  const activeKey = `${d.queuePrefix}:deliver.whatsapp-to-ehr.ehr:active`;
  const isActive = async () => (await redis.lpos(activeKey, `${delivery.id}-g${delivery.generation}`)) !== null;

  // KILLS=4 (or more) goes past a raised maxStalledCount, to exercise the outbox sweeper's revival.
  const kills = Math.max(2, Number(process.env['KILLS'] ?? 2));
  for (let round = 1; round <= kills; round++) {
    // Active again, in the hands of the restarted worker (after each stall the job is re-run).
    await until(
      `the delivery job to be active (round ${round})`,
      async () => (await isActive()) && Number((await redis.hget(jobKey, 'stc')) ?? 0) === round - 1 && Number(await redis.hget(jobKey, 'ats')) >= round,
      60_000,
    );
    console.log(`round ${round}: job active (ats=${await redis.hget(jobKey, 'ats')}, stc=${await redis.hget(jobKey, 'stc') ?? 0}); kill -9 the worker`);
    await worker.kill9();
    await worker.start();
  }
  // Unfixed: the next stalled-job check fails it ("job stalled more than allowable limit").
  const failedReason = await until('the job to be failed as stalled', async () => (await redis.hget(jobKey, 'failedReason'))?.includes('stalled'), 20_000).then(
    () => 'job stalled more than allowable limit',
    () => null,
  );
  console.log(failedReason ? `job failed: ${failedReason}` : 'the job was not failed for stalling (it was recovered again)');

  // The FHIR server is healthy again. Wait past the outbox grace (30 s), then restart the worker:
  // its start-up sweep sees the pending delivery and "re-enqueues" it.
  hold.on = false;
  await sleep(32_000);
  await worker.stop();
  await worker.start();
  await sleep(10_000);
  const state = (await d.db.query<{ state: string; attempts: number }>('SELECT state, attempts FROM deliveries WHERE id = $1', [delivery.id])).rows[0];
  const count = (await countCommunications(env.fhir.baseUrl)).get(wamid) ?? 0;
  const dead = (await (await d.admin('/admin/dead-letters?channel=whatsapp-to-ehr')).json()) as { items: unknown[] };
  const log = worker.output().match(/"msg":"outbox sweep re-enqueued work"/g)?.length ?? 0;
  console.log(`after the sweep (${log} sweep log line(s) in the last run): delivery ${state?.state} attempts=${state?.attempts}; job still failed: ${(await redis.zscore(`${d.queuePrefix}:deliver.whatsapp-to-ehr.ehr:failed`, `${delivery.id}-g${delivery.generation}`)) !== null}; Communications: ${count}; dead letters: ${dead.items.length}`);
  code = state?.state === 'pending' && count === 0 ? 1 : 0;
  console.log(code === 1 ? 'REPRODUCED: an acknowledged message is stuck (pending, not delivered, not dead-lettered)' : 'not reproduced');
  redis.disconnect();
  await d.close();
} finally {
  await env.close();
}
process.exit(code);
