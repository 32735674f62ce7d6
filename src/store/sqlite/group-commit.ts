import type BetterSqlite3 from 'better-sqlite3';

interface PendingWrite {
  write: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  /** performance.now() when the write was asked for: how long it has waited for the lock. */
  queuedAt: number;
  /** Settles at COMMIT instead of after the sync that follows it (see GroupCommit.run). */
  atCommit: boolean;
}

export interface GroupCommitOptions {
  /**
   * Called right after a group's COMMIT: takes what that group changed and returns its
   * announcement, which runs once the group is durable (after its sync), before any of the
   * group's promises settle. Groups committed while a sync runs are announced after the next
   * one, each with what it changed, not with the group before it.
   */
  committed: () => (() => void) | undefined;
  /** True for errors of the database itself (busy, I/O), which no write-by-write retry can help. */
  isDatabaseError: (error: unknown) => boolean;
  /** True when another connection holds the write lock: the group waits and tries again. */
  isBusy: (error: unknown) => boolean;
  /** How long a write may wait for the lock, in total, before it fails with the busy error. */
  busyTimeoutMs: number;
  /**
   * Runs after each COMMIT and before any promise resolves; throws when the commit cannot be
   * trusted to survive (the database file was removed or replaced): then every write of the
   * group fails, so nothing is acknowledged that a restart would not find.
   */
  verifyDurable: () => void;
  /**
   * What the driver gathers while a group's writes run and writes once at its end (job counts):
   * dropped when the group starts (a rolled-back try leaves nothing), marked before each write that
   * runs in a savepoint and rolled back to the mark when that write fails, written into the
   * transaction before COMMIT.
   */
  groupState?: GroupState;
  /**
   * Makes every commit so far durable, off the event loop, and calls `done` (with the error, if
   * it failed). Given: COMMIT itself does not wait for the disk (synchronous=NORMAL), and each
   * group's promises settle, and its announcement (`committed`) runs, only once a sync begun after its COMMIT has
   * finished; groups keep committing meanwhile and share the next sync. Omitted: COMMIT itself is
   * durable (synchronous=FULL, or a database in memory).
   */
  sync?: (done: (error: Error | null) => void) => void;
  /** A failed sync: what every write it covered, and every write after it, fails with. */
  syncFailed?: (error: Error) => unknown;
}

/** See GroupCommitOptions.groupState. */
export interface GroupState {
  reset(): void;
  mark(): number;
  rollbackTo(mark: number): void;
  beforeCommit(): void;
}

/** A group that has committed, with how each of its writes went and what it announces once durable. */
interface CommittedGroup {
  group: PendingWrite[];
  outcomes: unknown[];
  announce: (() => void) | undefined;
}

function settleItem(item: PendingWrite, outcome: unknown): void {
  const { ok, value } = outcome as { ok: boolean; value: unknown };
  if (ok) item.resolve(value);
  else item.reject(value);
}

const NO_GROUP_STATE: GroupState = { reset() {}, mark: () => 0, rollbackTo() {}, beforeCommit() {} };

/** The longest pause between two tries for a lock held elsewhere. */
const MAX_BUSY_PAUSE_MS = 50;

/**
 * Group commit: writes asked for in the same event-loop turn run in one transaction, and each
 * promise settles only after that transaction is durable: after COMMIT with synchronous=FULL, or,
 * with a `sync`, once the sync that followed its COMMIT has finished — the fsync then runs in
 * libuv's thread pool while the event loop goes on serving and committing the next groups, which
 * share the following sync (as a database's WAL writer flushes many commits at once). One write's error rolls back that write alone: the group first runs plainly, and only
 * if a write throws is it run again with a savepoint around each write (savepoints cost two
 * statements a write, which the common case does not pay). A failed COMMIT, or a database that
 * is broken, rejects every write of the group and nothing of it is kept.
 *
 * While another connection holds the write lock, the group is not waited for on the event loop
 * (better-sqlite3 would block the whole process): it is tried again on a timer with a growing
 * pause, and writes asked for meanwhile join it; a write that has waited `busyTimeoutMs` fails.
 */
export class GroupCommit {
  private pending: PendingWrite[] = [];
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private busyTries = 0;
  /** Committed groups waiting for the next sync to begin. */
  private unsynced: CommittedGroup[] = [];
  private syncing = false;
  /** Set for good by a failed sync: the disk may have dropped what it was given since the last good one. */
  private syncFailure: unknown;
  private synced: (() => void)[] = [];
  private readonly runGroup: BetterSqlite3.Transaction<(group: PendingWrite[]) => unknown[]>;
  private readonly runGroupIsolated: BetterSqlite3.Transaction<(group: PendingWrite[]) => unknown[]>;

  constructor(
    db: BetterSqlite3.Database,
    private readonly options: GroupCommitOptions,
  ) {
    const state = options.groupState ?? NO_GROUP_STATE;
    this.runGroup = db.transaction((group: PendingWrite[]) => {
      state.reset();
      const outcomes = group.map((item) => ({ ok: true, value: item.write() }));
      state.beforeCommit();
      return outcomes;
    });
    const runOne = db.transaction((write: () => unknown) => write());
    this.runGroupIsolated = db.transaction((group: PendingWrite[]) => {
      state.reset();
      const outcomes = group.map((item) => {
        const mark = state.mark();
        try {
          return { ok: true, value: runOne(item.write) };
        } catch (error) {
          state.rollbackTo(mark);
          return { ok: false, value: error };
        }
      });
      state.beforeCommit();
      return outcomes;
    });
  }

  /**
   * Runs `write` inside the next group's transaction; resolves once the commit is durable, or,
   * with `atCommit`, once it has committed (the sync that makes it durable still follows, and
   * what the group announces still waits for it): for a write whose result only this process
   * acts on, and whose loss with the machine's power would change nothing a later durable write
   * has not already made true (a claim: see SqliteDriver.claimJobs).
   */
  run<T>(write: () => T, atCommit = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ write, resolve: resolve as (value: unknown) => void, reject, queuedAt: performance.now(), atCommit });
      // While a group waits for the lock, its retry timer takes the newcomers along.
      if (!this.scheduled && this.retryTimer === undefined) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** True while writes wait for a lock another connection holds. */
  get waitingForLock(): boolean {
    return this.retryTimer !== undefined;
  }

  /**
   * Commits what is pending now rather than at the end of the turn — for a caller that already
   * holds a whole turn's batch — unless the group is waiting for a lock held elsewhere.
   */
  flushNow(): void {
    if (this.retryTimer === undefined) this.flush();
  }

  /** Commits whatever is pending now; `final`: a busy database fails the writes instead of waiting. */
  flush(final = false): void {
    this.scheduled = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const group = this.pending;
    if (group.length === 0) return;
    this.pending = [];
    if (this.syncFailure !== undefined) {
      for (const item of group) item.reject(this.syncFailure);
      return;
    }
    let outcomes: unknown[];
    try {
      try {
        outcomes = this.runGroup.immediate(group);
      } catch (error) {
        if (this.options.isDatabaseError(error)) throw error;
        outcomes = this.runGroupIsolated.immediate(group);
      }
    } catch (error) {
      if (!final && this.options.isBusy(error)) {
        this.waitForLock(group, error);
        return;
      }
      for (const item of group) item.reject(error);
      return;
    }
    this.busyTries = 0;
    try {
      this.options.verifyDurable();
    } catch (error) {
      for (const item of group) item.reject(error);
      return;
    }
    const committed = { group, outcomes, announce: this.options.committed() };
    if (this.options.sync === undefined) {
      this.settle([committed]);
      return;
    }
    // The writes asked to settle at COMMIT do so now; the rest, and the group's announcement, wait for its sync.
    group.forEach((item, index) => {
      if (item.atCommit) settleItem(item, outcomes[index]);
    });
    this.unsynced.push(committed);
    this.startSync();
  }

  /**
   * Resolves once every group committed so far has settled (its sync finished, or failed): a
   * driver closing the database waits for it.
   */
  whenSynced(): Promise<void> {
    if (!this.syncing && this.unsynced.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.synced.push(resolve));
  }

  /** Announces each group and settles its writes (those settled at COMMIT already are settled again, which a promise ignores). */
  private settle(committed: CommittedGroup[]): void {
    for (const { group, outcomes, announce } of committed) {
      announce?.();
      group.forEach((item, index) => {
        settleItem(item, outcomes[index]);
      });
    }
  }

  /** Starts a sync of every group committed so far, unless one is running (its end starts the next). */
  private startSync(): void {
    const sync = this.options.sync;
    if (this.syncing || sync === undefined) return;
    const batch = this.unsynced;
    this.unsynced = [];
    if (batch.length === 0) {
      for (const resolve of this.synced.splice(0)) resolve();
      return;
    }
    if (this.syncFailure !== undefined) {
      for (const { group } of batch) for (const item of group) item.reject(this.syncFailure);
      this.startSync();
      return;
    }
    this.syncing = true;
    sync((error) => {
      this.syncing = false;
      if (error) {
        this.syncFailure = this.options.syncFailed?.(error) ?? error;
        for (const { group } of batch) for (const item of group) item.reject(this.syncFailure);
      } else {
        this.settle(batch);
      }
      this.startSync();
    });
  }

  private waitForLock(group: PendingWrite[], busy: unknown): void {
    const now = performance.now();
    const waiting: PendingWrite[] = [];
    for (const item of group) {
      if (now - item.queuedAt >= this.options.busyTimeoutMs) item.reject(busy);
      else waiting.push(item);
    }
    this.pending = waiting.concat(this.pending);
    if (this.pending.length === 0) {
      this.busyTries = 0;
      return;
    }
    this.busyTries++;
    const pause = Math.min(MAX_BUSY_PAUSE_MS, 2 ** this.busyTries);
    this.retryTimer = setTimeout(() => this.flush(), pause);
  }
}
