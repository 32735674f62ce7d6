import type BetterSqlite3 from 'better-sqlite3';

interface PendingWrite {
  write: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: writes asked for in the same event-loop turn run in one transaction, and each
 * promise settles only after that transaction has committed (with synchronous=FULL, after the
 * fsync). One write's error rolls back that write alone: the group first runs plainly, and only
 * if a write throws is it run again with a savepoint around each write (savepoints cost two
 * statements a write, which the common case does not pay). A failed COMMIT, or a database that
 * is busy or broken, rejects every write of the group and nothing of it is kept.
 */
export class GroupCommit {
  private pending: PendingWrite[] = [];
  private scheduled = false;
  private readonly runGroup: BetterSqlite3.Transaction<(group: PendingWrite[]) => unknown[]>;
  private readonly runGroupIsolated: BetterSqlite3.Transaction<(group: PendingWrite[]) => unknown[]>;

  constructor(
    db: BetterSqlite3.Database,
    private readonly afterCommit: () => void,
    /** True for errors of the database itself (busy, I/O), which no write-by-write retry can help. */
    private readonly isDatabaseError: (error: unknown) => boolean,
  ) {
    this.runGroup = db.transaction((group: PendingWrite[]) => group.map((item) => ({ ok: true, value: item.write() })));
    const runOne = db.transaction((write: () => unknown) => write());
    this.runGroupIsolated = db.transaction((group: PendingWrite[]) =>
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
      try {
        outcomes = this.runGroup.immediate(group);
      } catch (error) {
        if (this.isDatabaseError(error)) throw error;
        outcomes = this.runGroupIsolated.immediate(group);
      }
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
