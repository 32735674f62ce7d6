/**
 * Wakes whoever waits on a job (long-polls, submissions with Prefer: wait, event streams) when
 * the job changes. Changes committed in this process are announced at once, after their commit;
 * changes committed by another process on the same database are found by one shared check of
 * the event log, which runs only while somebody is waiting. Waiters re-read the job or its
 * events from the store when woken, so a wake-up carries no data and may be spurious.
 */
export class JobWatch {
  private readonly waiters = new Map<string, Set<() => void>>();
  private timer: NodeJS.Timeout | undefined;
  private cursor: number | undefined;
  private checking = false;

  constructor(
    /** Reads the ids of jobs with events after `cursor`, and the newest event id. */
    private readonly changedSince: (cursor: number | undefined) => Promise<{ jobIds: string[]; cursor: number }>,
    private readonly intervalMs: number,
  ) {}

  /** Calls `wake` whenever job `jobId` may have changed, until the returned function is called. */
  watch(jobId: string, wake: () => void): () => void {
    if (this.closed) return () => {};
    let set = this.waiters.get(jobId);
    if (!set) {
      set = new Set();
      this.waiters.set(jobId, set);
    }
    set.add(wake);
    this.startChecking();
    return () => {
      set.delete(wake);
      if (set.size === 0) this.waiters.delete(jobId);
      if (this.waiters.size === 0) this.stopChecking();
    };
  }

  /** Announces changes committed in this process. */
  changed(jobIds: Iterable<string>): void {
    for (const jobId of jobIds) {
      const set = this.waiters.get(jobId);
      if (set) for (const wake of [...set]) wake();
    }
  }

  /** True after close(): waiters should answer with what they have. */
  closed = false;

  /** Shutdown: wakes every waiter (they answer at once) and stops the shared check. */
  close(): void {
    this.closed = true;
    this.stopChecking();
    const all = [...this.waiters.values()];
    this.waiters.clear();
    for (const set of all) for (const wake of set) wake();
  }

  get waiting(): number {
    return this.waiters.size;
  }

  private startChecking(): void {
    if (this.timer) return;
    this.cursor = undefined;
    void this.check();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  private stopChecking(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const { jobIds, cursor } = await this.changedSince(this.cursor);
      const first = this.cursor === undefined;
      this.cursor = cursor;
      if (!first) this.changed(jobIds);
    } catch {
      // The store is busy or closing; the next interval tries again.
    } finally {
      this.checking = false;
    }
  }
}
