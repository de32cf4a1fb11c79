/**
 * Group commit: concurrent callers share one unit of work (a transaction), so that N requests in
 * flight cost one commit instead of N. A batch closes when it is full, `maxWaitMs` after its
 * first member arrived, or at once (next turn of the event loop, so that requests arriving
 * together go together) when no batch is being committed: an idle system adds no delay, a busy
 * one batches what arrives while it commits. At most `maxInFlight` batches are committed at once.
 * Each caller's promise settles with its own result, only after the batch that holds it has
 * finished.
 */

export interface GroupCommitOptions {
  /** Most members of one batch. */
  maxBatch: number;
  /** Longest a member waits for its batch to close while another batch is being committed. */
  maxWaitMs: number;
  /**
   * Most batches being committed at once. Beyond it members wait for one to finish, so that under
   * load batches grow instead of multiplying (and a slow database is not asked for more
   * connections).
   */
  maxInFlight: number;
}

/** One member's outcome: the batch may succeed for some members and fail for others. */
export type MemberResult<O> = { ok: true; value: O } | { ok: false; error: unknown };

interface Member<I, O> {
  item: I;
  resolve: (v: O) => void;
  reject: (e: unknown) => void;
}

export class GroupCommit<I, O> {
  private open: Member<I, O>[] = [];
  /** When the oldest open member arrived. */
  private openedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private inFlight = 0;

  /** `commit` receives the members' items and returns one result per item, in order; it must not throw. */
  constructor(
    private readonly o: GroupCommitOptions,
    private readonly commit: (items: readonly I[]) => Promise<MemberResult<O>[]>,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      if (this.open.length === 0) this.openedAt = Date.now();
      this.open.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Closes the open batch now, soon, or when a batch in flight finishes. */
  private schedule(): void {
    if (this.open.length === 0 || this.inFlight >= this.o.maxInFlight) return;
    if (this.open.length >= this.o.maxBatch || (this.inFlight > 0 && Date.now() - this.openedAt >= this.o.maxWaitMs)) this.close();
    else if (this.inFlight === 0) this.immediate ??= setImmediate(() => this.close());
    else this.timer ??= setTimeout(() => this.close(), Math.max(0, this.o.maxWaitMs - (Date.now() - this.openedAt)));
  }

  private close(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (this.inFlight >= this.o.maxInFlight) return;
    const batch = this.open.splice(0, this.o.maxBatch);
    if (batch.length === 0) return;
    this.openedAt = Date.now();
    this.inFlight++;
    void this.run(batch);
    this.schedule();
  }

  private async run(batch: Member<I, O>[]): Promise<void> {
    let results: MemberResult<O>[];
    try {
      results = await this.commit(batch.map((m) => m.item));
    } catch (err) {
      results = batch.map(() => ({ ok: false, error: err }));
    }
    this.inFlight--;
    for (const [i, m] of batch.entries()) {
      const r = results[i] ?? { ok: false, error: new Error('group commit returned no result for a member') };
      if (r.ok) m.resolve(r.value);
      else m.reject(r.error);
    }
    this.schedule();
  }
}
