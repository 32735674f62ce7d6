/**
 * Wakes whoever waits on a job (long-polls, submissions with Prefer: wait, event streams) when
 * the job changes. Changes committed in this process — and, where the database announces them
 * (PostgreSQL's LISTEN/NOTIFY), in other processes — are announced at once, after their commit.
 * While anybody waits, one shared check also reads the versions of the watched jobs every
 * interval and wakes the waiters of any that moved: on SQLite that is how other processes'
 * changes are found, and everywhere it is the backstop for a notification that was lost.
 * Streams of every job's events wait on every job: any change wakes them, and the shared check
 * reads the head of the event log for them. Waiters re-read the job or its events when woken, so
 * a wake-up carries no data and may be spurious.
 */
export class JobWatch {
  private readonly waiters = new Map<string, Set<() => void>>();
  /** The version each watched job had at the last check. */
  private readonly versions = new Map<string, number>();
  /** Waiters on every job (streams of the log across jobs), woken by any change. */
  private readonly everyJob = new Set<() => void>();
  /** The head of the event log at the last check, while anybody waits on every job. */
  private head: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    /** Reads the current versions of these jobs. */
    private readonly readVersions: (ids: string[]) => Promise<Map<string, number>>,
    private readonly intervalMs: number,
    /** Reads the head of the log of every job's events (the shared check of `watchEveryJob`). */
    private readonly readHead: () => Promise<string> = async () => '',
  ) {}

  /** Calls `wake` whenever any job may have changed, until the returned function is called. */
  watchEveryJob(wake: () => void): () => void {
    if (this.closed) return () => {};
    this.everyJob.add(wake);
    this.startChecking();
    return () => {
      this.everyJob.delete(wake);
      if (this.everyJob.size === 0) this.head = undefined;
      if (this.waiters.size === 0 && this.everyJob.size === 0) this.stopChecking();
    };
  }

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
      if (set.size === 0 && this.waiters.get(jobId) === set) {
        this.waiters.delete(jobId);
        this.versions.delete(jobId);
      }
      if (this.waiters.size === 0 && this.everyJob.size === 0) this.stopChecking();
    };
  }

  /** Announces changes committed in this process (or announced by the database). */
  changed(jobIds: Iterable<string>): void {
    let any = false;
    for (const jobId of jobIds) {
      any = true;
      const set = this.waiters.get(jobId);
      if (set) for (const wake of [...set]) wake();
    }
    if (any) this.wakeEveryJob();
  }

  /** Changes may have been missed: every waiter looks again. */
  changedAll(): void {
    for (const set of [...this.waiters.values()]) for (const wake of [...set]) wake();
    this.wakeEveryJob();
  }

  private wakeEveryJob(): void {
    for (const wake of [...this.everyJob]) wake();
  }

  /** True after close(): waiters should answer with what they have. */
  closed = false;

  /** Shutdown: wakes every waiter (they answer at once) and stops the shared check. */
  close(): void {
    this.closed = true;
    this.stopChecking();
    const all = [...this.waiters.values()];
    this.waiters.clear();
    this.versions.clear();
    for (const set of all) for (const wake of set) wake();
    const everyJob = [...this.everyJob];
    this.everyJob.clear();
    for (const wake of everyJob) wake();
  }

  get waiting(): number {
    return this.waiters.size;
  }

  private startChecking(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  private stopChecking(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async check(): Promise<void> {
    if (this.checking || (this.waiters.size === 0 && this.everyJob.size === 0)) return;
    this.checking = true;
    try {
      if (this.everyJob.size > 0) {
        const head = await this.readHead();
        // Moved since the last check (or first seen: it may have moved since the waiters read).
        if (head !== this.head) this.wakeEveryJob();
        if (this.everyJob.size > 0) this.head = head;
      }
      if (this.waiters.size === 0) return;
      const ids = [...this.waiters.keys()];
      const current = await this.readVersions(ids);
      const moved: string[] = [];
      for (const id of ids) {
        const version = current.get(id) ?? -1;
        const before = this.versions.get(id);
        // A job seen for the first time wakes its waiters too: it may have changed between their
        // read and this check (a spurious wake-up only costs them one more read).
        if (before !== version) moved.push(id);
        if (this.waiters.has(id)) this.versions.set(id, version);
      }
      this.changed(moved);
    } catch {
      // The store is busy or closing; the next interval tries again.
    } finally {
      this.checking = false;
    }
  }
}
