/**
 * Worker kills as the scenarios use them: FHIR writes slowed so deliveries are in flight when a
 * worker dies, and rounds of SIGKILL + restart, optionally timed for when jobs recovered from the
 * previous kill are running again (so a job can die twice).
 */
import type { FaultRule } from '../../support/fault-proxy.js';
import type { GatewayRoleProcess } from './gateway-role.js';
import { sleep } from './processes.js';
import { recoveredJobsActive } from './queue-probe.js';
import type { ScenarioContext } from './scenario.js';

export const isCommunicationWrite = (req: { method: string; path: string }) => req.method === 'POST' && /\/Communication$/.test(req.path);

/** Communication writes take `ms` at the FHIR server, so deliveries are in flight when a worker dies. */
export const slowCommunicationWrites =
  (ms: number): FaultRule =>
  (req) =>
    isCommunicationWrite(req) ? { kind: 'pass', delayMs: ms } : { kind: 'pass' };

export interface KillRound {
  label: string;
  victims: GatewayRoleProcess[];
  /** `recovered-active`: kill once a job recovered from the previous kill runs again (bounded wait). */
  when: 'now' | 'recovered-active';
  after: number;
}

/** Kill rounds: each victim set gets SIGKILL, then is restarted (and waited for) before the next round. */
export async function killRounds(ctx: ScenarioContext, rounds: KillRound[]): Promise<void> {
  for (const [i, round] of rounds.entries()) {
    let recovered = 0;
    if (round.when === 'recovered-active') {
      const until = Date.now() + 20_000;
      while (Date.now() < until && (recovered = await recoveredJobsActive(ctx.env, ctx.d).catch(() => 0)) === 0) await sleep(50);
    }
    const inFlight = ctx.env.proxy.inFlight();
    await Promise.all(round.victims.map((w) => w.kill9()));
    const why = round.when === 'recovered-active' ? `, ${recovered} job(s) recovered from the previous kill running again` : '';
    ctx.note(`kill -9 #${i + 1}: ${round.label} (${inFlight} FHIR requests in flight${why})`);
    await Promise.all(round.victims.map((w) => w.start()));
    ctx.note(`${round.label} restarted`);
    await sleep(round.after);
  }
}

/**
 * Five kills in three rounds: one worker, then both, then both again once jobs recovered from
 * the previous kill run again (a job may die twice). For a deployment of two workers.
 */
export function fiveKillsInThreeRounds(ctx: ScenarioContext): Promise<void> {
  const [w1, w2] = ctx.d.workers as [GatewayRoleProcess, GatewayRoleProcess];
  return killRounds(ctx, [
    { label: 'worker2', victims: [w2], when: 'now', after: 1500 },
    { label: 'both workers', victims: [w1, w2], when: 'now', after: 0 },
    { label: 'both workers', victims: [w1, w2], when: 'recovered-active', after: 0 },
  ]);
}
