import type BetterSqlite3 from 'better-sqlite3';

interface PendingWrite {
  write: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: writes asked for in the same event-loop turn run in one transaction, and each
 * promise settles only after that transaction has committed (with synchronous=FULL, after the
 * fsync). Each write runs in its own savepoint, so one write's error rolls back that write
 * alone; a failed COMMIT rejects every write of the group and nothing of it is kept.
 */
export class GroupCommit {
  private pending: PendingWrite[] = [];
  private scheduled = false;
  private readonly runGroup: BetterSqlite3.Transaction<(group: PendingWrite[]) => unknown[]>;

  constructor(
    db: BetterSqlite3.Database,
    private readonly afterCommit: () => void,
  ) {
    const runOne = db.transaction((write: () => unknown) => write());
    this.runGroup = db.transaction((group: PendingWrite[]) =>
      group.map((item) => {
        try {
          return { ok: true, value: runOne(item.write) };
        } catch (error) {
          return { ok: false, value: error };
        }
      }),
    );
  }

  /** Runs `write` inside the next group's transaction; resolves after the commit. */
  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits whatever is pending now. */
  flush(): void {
    this.scheduled = false;
    const group = this.pending;
    if (group.length === 0) return;
    this.pending = [];
    let outcomes: unknown[];
    try {
      outcomes = this.runGroup.immediate(group);
    } catch (error) {
      for (const item of group) item.reject(error);
      return;
    }
    this.afterCommit();
    group.forEach((item, index) => {
      const outcome = outcomes[index] as { ok: boolean; value: unknown };
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.value);
    });
  }
}
