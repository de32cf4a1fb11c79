import { describe, expect, it } from 'vitest';
import { GroupCommit, type MemberResult } from '../../src/core/group-commit.js';

describe('group commit', () => {
  it('puts requests that arrive while a batch commits into one shared batch, each answered with its own result', async () => {
    const batches: number[][] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const gc = new GroupCommit<number, string>({ maxBatch: 100, maxWaitMs: 10_000, maxInFlight: 4 }, async (items) => {
      batches.push([...items]);
      if (batches.length === 1) await gate;
      return items.map((i): MemberResult<string> => (i === 13 ? { ok: false, error: new Error('bad 13') } : { ok: true, value: `ok ${i}` }));
    });
    const first = gc.submit(1);
    await new Promise((r) => setImmediate(r));
    // The first batch is committing: these wait for it, then go together.
    const rest = [2, 13, 4, 5].map((i) => gc.submit(i));
    release();
    await expect(first).resolves.toBe('ok 1');
    const settled = await Promise.allSettled(rest);
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))).toEqual(['ok 2', 'bad 13', 'ok 4', 'ok 5']);
    expect(batches).toEqual([[1], [2, 13, 4, 5]]);
  });

  it('never puts more than maxBatch members in a batch, and answers all of them', async () => {
    const sizes: number[] = [];
    const gc = new GroupCommit<number, number>({ maxBatch: 3, maxWaitMs: 1, maxInFlight: 2 }, async (items) => {
      sizes.push(items.length);
      await new Promise((r) => setTimeout(r, 5));
      return items.map((i) => ({ ok: true, value: i * 2 }));
    });
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => gc.submit(i)));
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(3);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(10);
  });

  it('commits at most maxInFlight batches at once; the others wait and grow', async () => {
    let running = 0;
    let most = 0;
    const sizes: number[] = [];
    // Each batch commits until the test releases it (no timers: the order is the test's).
    const gates: (() => void)[] = [];
    const gc = new GroupCommit<number, number>({ maxBatch: 50, maxWaitMs: 0, maxInFlight: 2 }, async (items) => {
      running++;
      most = Math.max(most, running);
      sizes.push(items.length);
      await new Promise<void>((r) => gates.push(r));
      running--;
      return items.map((i) => ({ ok: true, value: i }));
    });
    const turn = () => new Promise((r) => setImmediate(r));
    const submitted: Promise<number>[] = [gc.submit(0)];
    await turn();
    submitted.push(gc.submit(1)); // a second batch while the first commits
    for (let i = 2; i < 30; i++) submitted.push(gc.submit(i)); // two in flight: these wait
    await turn();
    expect(sizes).toEqual([1, 1]);
    gates.shift()!();
    while (sizes.length < 3) await turn();
    expect(sizes).toEqual([1, 1, 28]); // the waiting ones went as one batch
    while (gates.length > 0) gates.shift()!();
    expect(await Promise.all(submitted)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(most).toBe(2);
  });

  it('fails every member of a batch whose commit throws', async () => {
    const gc = new GroupCommit<number, number>({ maxBatch: 10, maxWaitMs: 1, maxInFlight: 4 }, async () => {
      throw new Error('database down');
    });
    const r = await Promise.allSettled([gc.submit(1), gc.submit(2)]);
    expect(r.map((x) => x.status)).toEqual(['rejected', 'rejected']);
  });
});
