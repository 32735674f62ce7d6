import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type BetterSqlite3 from 'better-sqlite3';
import Database from 'better-sqlite3';
import type { JobState } from '../../core/job-states.js';
import { type Settled, settledOf } from '../../engine/turn-batcher.js';
import type {
  AcceptResult,
  AcceptWrite,
  Driver,
  DriverClaim,
  DriverEvents,
  DriverHooks,
  EventLogPage,
  EventLogRead,
  EventPosition,
  Finish,
  FinishedBefore,
  JobListing,
  LimitedClaim,
  ListedJob,
  MinuteCount,
  Requeue,
  ScheduleAdvance,
  ScheduleAdvanced,
} from '../driver.js';
import { type ListingScan, listingScans, newestFirst } from '../listing-scans.js';
import { toClaimedJob, toDelivery, toIdempotencyRecord, toJobRecord, toLoggedEvent, toScheduleRecord, traceContextColumn, withDeliveries } from '../rows.js';
import {
  type CancelOutcome,
  type ClaimedJob,
  type DeclaredSchedule,
  type DeliveryClaim,
  type DeliveryOutcome,
  type IdempotencyRecord,
  type JobCount,
  type JobEvent,
  type JobOutcome,
  type JobProgress,
  type JobRecord,
  type LeaseState,
  type RetryEndedOutcome,
  type ScheduleRecord,
  StoreUnavailableError,
  type WebhookDelivery,
} from '../store.js';
import { BACKSTOP_PAGES, Checkpointer } from './checkpointer.js';
import { GroupCommit } from './group-commit.js';
import { JobCounter } from './job-counter.js';
import { type LeaseClock, machineLeaseClock } from './lease-clock.js';
import { LogPositions } from './log-positions.js';
import { migrate } from './schema.js';
import { prepareStatements, type SqliteClaimedRow, type SqliteJobRow, type Statements } from './statements.js';
import { type Sync, WalSync } from './wal-sync.js';

export interface SqliteDriverOptions {
  /** How long a write waits (off the event loop) for another connection's write lock before the store is "busy". */
  busyTimeoutMs?: number;
  /** The clock leases are taken on (tests give one that runs ahead to let leases expire). */
  leaseClock?: LeaseClock;
  /** @internal Tests: wraps the sync that makes commits durable (to hold it back or make it fail). */
  wrapSync?: (sync: Sync) => Sync;
}

/**
 * How long one statement may block the event loop waiting for a lock (better-sqlite3 waits
 * synchronously). Locks held by another asyncfirst process last well under this; a longer hold
 * is waited out asynchronously by GroupCommit, so reads and health checks stay served.
 */
const SYNC_BUSY_WAIT_MS = 5;
/** After a write failed (disk full, I/O error), how long readiness fails before a probe write may clear it. */
const FAILURE_HOLD_MS = 5000;
/** How long opening the file (and migrating it) may wait for another process that does the same. */
const OPEN_BUSY_WAIT_MS = 10_000;
/**
 * How often a claim looks for leases taken on another clock (a scan of the running jobs): every
 * process of one file runs on one machine, so such a lease is one from before a reboot, found by
 * the first claim; the check is repeated only so that a file moved between machines recovers too.
 */
const OTHER_CLOCKS_CHECK_MS = 60_000;

/** SQLite error codes that mean "try again later" rather than "this request is wrong". */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|PROTOCOL|NOMEM|CORRUPT|NOTADB)/;
const BUSY_CODES = /^SQLITE_BUSY/;

/** Resolves DATABASE_URL (a path or a file: URL) to a file path and creates its folder. */
export function resolveDatabasePath(databaseUrl: string): string {
  const path = databaseUrl.startsWith('file:')
    ? databaseUrl.startsWith('file://')
      ? fileURLToPath(databaseUrl)
      : (databaseUrl.slice(5).split('?')[0] ?? '')
    : databaseUrl;
  if (path === '') throw new Error(`DATABASE_URL "${databaseUrl}" names no file`);
  if (path === ':memory:') return path;
  // Absolute: the file's identity is checked by path after every commit, and the process may change directory.
  const absolute = resolve(path);
  mkdirSync(dirname(absolute), { recursive: true });
  return absolute;
}

/** A file's identity: its device and inode (a removed-and-recreated file has another). */
function fileIdentity(path: string): string | undefined {
  try {
    const stat = statSync(path, { bigint: true });
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * The driver for one SQLite file through better-sqlite3: WAL journal, writes grouped per
 * event-loop turn and acknowledged once the WAL's fdatasync after their commit has finished, off
 * the event loop (see GroupCommit and WalSync), leases on
 * the machine's monotonic clock (lease-clock.ts), and the file's identity checked after every
 * commit (a removed or replaced file fails every write from then on).
 */
export class SqliteDriver implements Driver {
  readonly kind = 'sqlite';
  readonly announcesOtherProcesses = false;
  /** @internal The connection, for tests and tools in this repository; not part of the published types. */
  readonly db: BetterSqlite3.Database;
  private readonly sql: Statements;
  private readonly writes: GroupCommit;
  private hooks: DriverHooks | undefined;
  private problems = { canceledWhileRunning: '', canceledBeforeRunning: '', abandoned: '' };
  // What the transaction being built has done, announced after it commits (after a failed
  // commit the flags carry over: a spurious wake-up is harmless, a missed one is not).
  private jobsQueuedInGroup = false;
  private deliveriesQueuedInGroup = false;
  private changedInGroup = new Set<string>();
  private readonly leaseClock: LeaseClock;
  /** The identities of the database file and its WAL as opened; empty for :memory:. */
  private readonly files: { path: string; identity: string }[] = [];
  /** The fdatasync of the WAL that makes commits durable; undefined for :memory: (COMMIT is all there is). */
  private readonly walSync: WalSync | undefined;
  /** The thread that checkpoints the WAL; undefined for :memory:. */
  private readonly checkpointer: Checkpointer | undefined;
  /** Set for good once the file the driver writes is no longer the file at its path. */
  private lost: StoreUnavailableError | undefined;
  /** The last write failure of the database itself, until a commit succeeds again. */
  private writeFailure: StoreUnavailableError | undefined;
  /** performance.now() of the last write that failed for a cause of the database itself. */
  private writeFailedAt = Number.NEGATIVE_INFINITY;
  private closed = false;
  private readonly counter: JobCounter;
  private readonly positions: LogPositions;
  /** When (on the lease clock) claims last looked for leases of another clock: never, at first. */
  private otherClocksCheckedAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly path: string,
    options: SqliteDriverOptions = {},
  ) {
    // At open, waiting for another process that opens or migrates the same file is fine (nothing is served yet).
    this.db = new Database(path, { timeout: OPEN_BUSY_WAIT_MS });
    this.db.pragma('journal_mode = WAL');
    // FULL until the WAL sync below takes over: in WAL mode NORMAL alone may lose the last commits
    // on power loss, and a 202 promises durability.
    this.db.pragma('synchronous = FULL');
    // Statement journals (the undo of one statement inside a transaction: a claim's multi-row
    // UPDATE, a statement whose triggers keep job_counts) and temporary B-trees stay in memory.
    // With the default (a file), a journal past 64 KiB spilled to a new file under the temp folder:
    // a 10,000-job drain wrote 175,000 pages there (9 writes a job beside the WAL's 3), all of it
    // scratch that no commit needs. MEMORY holds them in memory, a statement's pages at most.
    this.db.pragma('temp_store = MEMORY');
    migrate(this.db);
    this.db.pragma(`busy_timeout = ${SYNC_BUSY_WAIT_MS}`);
    this.sql = prepareStatements(this.db);
    this.counter = new JobCounter((operation, status, delta) => this.sql.addToJobCount.run(operation, status, delta));
    this.positions = new LogPositions(() => (this.sql.eventLogHead.get() as { head: number }).head);
    this.leaseClock = options.leaseClock ?? machineLeaseClock();
    if (path !== ':memory:' && path !== '') {
      for (const file of [path, `${path}-wal`]) {
        const identity = fileIdentity(file);
        if (identity === undefined) throw new Error(`the database file ${file} is missing right after opening it`);
        this.files.push({ path: file, identity });
      }
      // Commits are made durable by an fdatasync of the WAL off the event loop (see WalSync),
      // and no write is acknowledged before the sync that followed its COMMIT has finished.
      this.walSync = new WalSync(path);
      this.db.pragma('synchronous = NORMAL');
      // Checkpoints run on a thread of their own (see Checkpointer); this connection's own is the backstop.
      this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
      this.checkpointer = new Checkpointer(path, () => {
        if (!this.closed) this.db.pragma('wal_autocheckpoint = 1000');
      });
    }
    const sync = this.walSync?.sync;
    this.writes = new GroupCommit(this.db, {
      committed: () => this.takeAnnouncement(),
      isDatabaseError: (error) => asUnavailable(error) instanceof StoreUnavailableError,
      isBusy: (error) => BUSY_CODES.test(String((error as { code?: unknown }).code ?? '')),
      busyTimeoutMs: options.busyTimeoutMs ?? 5000,
      verifyDurable: () => this.verifyFiles(),
      groupState: {
        reset: () => {
          this.positions.reset();
          this.counter.reset();
        },
        mark: () => this.counter.mark(),
        rollbackTo: (mark) => this.counter.rollbackTo(mark),
        beforeCommit: () => this.counter.beforeCommit(),
      },
      ...(sync === undefined ? {} : { sync: options.wrapSync ? options.wrapSync(sync) : sync, syncFailed: (error) => this.syncFailed(error) }),
    });
  }

  async start(hooks: DriverHooks): Promise<void> {
    this.hooks = hooks;
    this.problems = {
      canceledWhileRunning: JSON.stringify(hooks.problems.canceledWhileRunning),
      canceledBeforeRunning: JSON.stringify(hooks.problems.canceledBeforeRunning),
      abandoned: JSON.stringify(hooks.problems.abandoned),
    };
  }

  private get events(): DriverEvents {
    if (!this.hooks) throw new Error('the SQLite driver was used before start()');
    return this.hooks.events;
  }

  /**
   * Throws (for good) when the database file or its WAL is no longer the file this driver opened:
   * removed, or replaced. Writes would then go to an unlinked file that a restart never sees.
   */
  private verifyFiles(): void {
    if (this.lost) throw this.lost;
    for (const file of this.files) {
      if (fileIdentity(file.path) === file.identity) continue;
      this.lost = new StoreUnavailableError(
        `the database file ${file.path} was removed or replaced while the store had it open; nothing written since is durable. Restore the file and restart.`,
      );
      this.hooks?.events.fault({ kind: 'file-lost', error: this.lost });
      throw this.lost;
    }
  }

  /**
   * A failed fsync fails the store for good, as PostgreSQL does: the kernel may already have
   * dropped the pages it could not write, so a later sync that succeeds would vouch for data that
   * is not on disk. A restart reads back what the disk holds.
   */
  private syncFailed(error: Error): StoreUnavailableError {
    if (this.lost) return this.lost;
    this.lost = new StoreUnavailableError(
      `the database's write-ahead log could not be synced to disk (${error.message}); writes since the last good sync may not be durable. Check the disk and restart.`,
      { cause: error },
    );
    this.hooks?.events.fault({ kind: 'sync-failed', error: this.lost });
    return this.lost;
  }

  async checkReady(): Promise<void> {
    this.read(() => {
      this.verifyFiles();
      this.sql.readProbe.get();
    });
    // A probe of one small row can pass while real writes fail (a full disk still has room in the
    // WAL's own pages): right after a failure, readiness stays failed for a while whatever it says.
    if (this.writeFailure && performance.now() - this.writeFailedAt < FAILURE_HOLD_MS) throw this.writeFailure;
    if (this.writeFailure || this.writes.waitingForLock) await this.write(() => this.sql.writeProbe.run(Date.now()));
  }

  /**
   * What the group just committed changed, taken (the next group starts afresh), as the
   * announcement GroupCommit runs once that group is durable.
   */
  private takeAnnouncement(): () => void {
    const changed = this.changedInGroup;
    const queued = this.jobsQueuedInGroup;
    const deliveries = this.deliveriesQueuedInGroup;
    this.changedInGroup = new Set();
    this.jobsQueuedInGroup = false;
    this.deliveriesQueuedInGroup = false;
    return () => {
      this.writeFailure = undefined;
      if (!this.hooks) return;
      if (changed.size > 0) this.events.jobsChanged(changed);
      if (queued) this.events.jobsQueued();
      if (deliveries) this.events.deliveriesQueued();
    };
  }

  /**
   * Records the change the row's UPDATE made (it bumped the version): the event the engine builds
   * from the job, and its webhook delivery and notifications if the engine asks for them. Inside the transaction.
   */
  private recordChange(row: SqliteJobRow, type: string, now: number, from: JobState, children?: string[]): JobRecord {
    const job = this.jobOf(row);
    if (children) job.children = children;
    this.counter.moved(job.operation, from, job.status);
    const recorded = (this.hooks as DriverHooks).recordChange(job, type, now);
    this.sql.insertEvent.run(this.positions.take(), job.id, job.version, type, recorded.data, now);
    this.changedInGroup.add(job.id);
    const delivery = recorded.delivery;
    if (delivery) {
      this.sql.insertDelivery.run(delivery.id, job.id, delivery.url, null, delivery.eventType, delivery.payload, delivery.maxAttempts, now, now, now);
      this.deliveriesQueuedInGroup = true;
    }
    for (const notification of recorded.notifications ?? []) {
      this.sql.insertDelivery.run(
        notification.id,
        job.id,
        '',
        notification.notifier,
        notification.eventType,
        notification.payload,
        notification.maxAttempts,
        now,
        now,
        now,
      );
      this.deliveriesQueuedInGroup = true;
    }
    return job;
  }

  // The hot writes run in named methods (acceptWrite, claimWrite, finishWrite): group commit runs
  // them later, outside the method that asked, and CPU profiles then still say whose statements ran.
  acceptJobs(writes: AcceptWrite[]): Promise<Settled<AcceptResult>[]> {
    // One write each (an error rolls back that write alone), committed together now.
    const outcomes = writes.map((write) => this.write(() => this.acceptWrite(write)));
    this.writes.flushNow();
    return Promise.allSettled(outcomes).then(settledOf);
  }

  private acceptWrite(write: AcceptWrite): AcceptResult {
    const { principal, operation, key, now, jobId } = write;
    const existing = this.sql.findIdempotencyKey.get(principal, operation, key);
    // A record past its retention, or whose job the sweeper removed, no longer binds the key.
    if (existing && existing.expires_at > now && this.sql.jobExists.get(existing.job_id)) {
      return { kind: 'bound', jobId: existing.job_id, fingerprint: existing.fingerprint };
    }
    const position = this.positions.take();
    const logged = write.acceptedEvent === undefined ? 0 : 1;
    if (write.parentId === undefined) {
      this.sql.insertJob.run(
        position,
        jobId,
        principal,
        operation,
        write.input,
        write.maxAttempts,
        write.callbackUrl ?? null,
        traceContextColumn(write.traceContext),
        write.runAt ?? now,
        now,
        now,
        write.priority ?? 0,
        write.limited ? 1 : 0,
        logged,
      );
    } else {
      this.sql.insertFollowUp.run(
        position,
        jobId,
        principal,
        operation,
        write.input,
        write.maxAttempts,
        traceContextColumn(write.traceContext),
        write.runAt ?? now,
        now,
        now,
        write.priority ?? 0,
        write.limited ? 1 : 0,
        logged,
        write.parentId,
      );
    }
    // A job that starts now is its own job.queued in the log (its row, at its position); one that starts later logs it as a row.
    if (write.acceptedEvent !== undefined) this.sql.logAcceptance.run(this.positions.take(), jobId, write.acceptedEvent, now);
    this.counter.moved(operation, undefined, 'queued');
    this.sql.upsertIdempotencyKey.run(principal, operation, key, write.fingerprint, jobId, now, write.keyExpiresAt);
    this.jobsQueuedInGroup = true;
    this.changedInGroup.add(jobId);
    return { kind: 'created', jobId };
  }

  async getJob(principal: string, id: string): Promise<JobRecord | undefined> {
    return this.read(() => {
      const row = this.sql.getShownJob.get(id, principal);
      if (!row) return undefined;
      const job = this.jobOf(row);
      if (job.callbackUrl || this.hooks?.notifies(job.operation)) withDeliveries(job, this.sql.deliveriesOfJob.all(id).map(toDelivery));
      // Only a success stores follow-ups: the other jobs have no children to look for.
      if (job.status === 'succeeded') job.children = this.sql.childrenOfJob.all(id).map((child) => child.id);
      return job;
    });
  }

  async jobPrincipal(id: string): Promise<string | undefined> {
    return this.read(() => this.sql.jobPrincipal.get(id)?.principal);
  }

  async jobVersions(ids: string[]): Promise<Map<string, number>> {
    if (ids.length === 0) return new Map();
    return this.read(() => new Map(this.sql.jobVersions.all(JSON.stringify(ids)).map((row) => [row.id, row.version])));
  }

  async getJobEvents(principal: string, id: string, afterVersion: number): Promise<{ job: JobRecord; events: JobEvent[] } | undefined> {
    return this.read(() =>
      this.db.transaction(() => {
        const row = this.sql.getJob.get(id, principal);
        if (!row) return undefined;
        const events = this.sql.eventsAfter.all(id, afterVersion).map((event) => ({ id: event.version, type: event.type, data: event.data }));
        return { job: this.jobOf(row), events };
      })(),
    );
  }

  async readEventLog(read: EventLogRead): Promise<EventLogPage> {
    return this.read(() =>
      this.db.transaction(() => {
        const upTo = this.sql.eventLogHead.get()?.head ?? 0;
        const rows = this.sql.eventLogAfter.all({
          after: read.after.row,
          upTo,
          principal: read.principal ?? null,
          operation: read.operation ?? null,
          types: read.types === undefined ? null : JSON.stringify(read.types),
          limit: read.limit,
        });
        const events = rows.map((row) => toLoggedEvent(row, { transaction: 0n, row: row.id }));
        const last = events.at(-1);
        // A full page stops at its last event; a short one has seen everything up to the head.
        const scannedTo = events.length === read.limit && last ? last.position : { transaction: 0n, row: Math.max(upTo, read.after.row) };
        return { events, scannedTo, heldBack: false };
      })(),
    );
  }

  async eventLogHead(): Promise<EventPosition> {
    return this.read(() => ({ transaction: 0n, row: this.sql.eventLogHead.get()?.head ?? 0 }));
  }

  async listJobs(listing: JobListing): Promise<ListedJob[]> {
    const filters = {
      operation: listing.operation ?? null,
      createdAfter: listing.createdAfter ?? null,
      createdBefore: listing.createdBefore ?? null,
      before: listing.beforePosition ?? Number.MAX_SAFE_INTEGER,
      limit: listing.limit,
    };
    const statements = listing.withInput ? this.sql.listJobsWithInput : this.sql.listJobs;
    const statementOf = (scan: ListingScan) => (scan.scope === 'every' || scan.scope === 'own' ? statements[scan.scope] : statements[scan.scope][scan.status]);
    return this.read(() =>
      newestFirst(
        listingScans(listing, { byState: false }).map((scan) =>
          statementOf(scan)
            .all({ ...filters, principal: scan.scope === 'own' || scan.scope === 'ownInState' ? scan.principal : null })
            .map((row) => ({ position: row.seq, job: listing.withInput ? { ...this.jobOf(row), input: row.input as string } : this.jobOf(row) })),
        ),
        listing.limit,
      ),
    );
  }

  async countJobs(): Promise<JobCount[]> {
    return this.read(() => this.sql.countJobs.all().map((row) => ({ operation: row.operation, status: row.status as JobCount['status'], count: row.count })));
  }

  async oldestDueJobs(now: number): Promise<Array<{ operation: string; dueSince: number }>> {
    return this.read(() => this.sql.oldestDueJobs.all({ now }).map((row) => ({ operation: row.operation, dueSince: row.due_since })));
  }

  async jobActivity(since: number, firstIdSince: string): Promise<{ accepted: MinuteCount[]; finished: Array<MinuteCount & { status: JobState }> }> {
    return this.read(() =>
      this.db.transaction(() => ({
        accepted: this.sql.acceptedPerMinute.all(firstIdSince, since),
        finished: this.sql.finishedPerMinute.all(since).map((row) => ({ ...row, status: row.status as JobState })),
      }))(),
    );
  }

  async jobInput(principal: string, id: string): Promise<string | undefined> {
    return this.read(() => this.sql.jobInput.get(id, principal)?.input);
  }

  async getIdempotencyRecord(principal: string, operation: string, key: string): Promise<IdempotencyRecord | undefined> {
    return this.read(() => {
      const row = this.sql.getIdempotencyRecord.get(principal, operation, key);
      return row ? toIdempotencyRecord(row) : undefined;
    });
  }

  async countIdempotencyRecords(): Promise<number> {
    return this.read(() => this.sql.countIdempotencyRecords.get()?.count ?? 0);
  }

  cancelJob(principal: string, id: string, now: number): Promise<CancelOutcome> {
    return this.write(() => {
      const canceled = this.sql.cancelQueuedJob.get(this.problems.canceledBeforeRunning, now, now, id, principal);
      if (canceled) return { kind: 'canceled', job: this.recordChange(canceled, 'job.canceled', now, 'queued') };
      if (this.sql.requestCancel.run(now, id, principal).changes === 1) {
        return { kind: 'signalled', job: this.mustGetJob(principal, id) };
      }
      const row = this.sql.getJob.get(id, principal);
      return row ? { kind: 'finished', job: this.jobOf(row) } : { kind: 'not-found' };
    });
  }

  retryEndedJob(principal: string | undefined, id: string, now: number): Promise<RetryEndedOutcome> {
    return this.write(() => {
      const scope = { id, principal: principal ?? null };
      const current = this.sql.getJobOfScope.get(scope);
      if (!current) return { kind: 'not-found' };
      const row = this.sql.retryEndedJob.get({ ...scope, now });
      if (row) {
        this.jobsQueuedInGroup = true;
        return { kind: 'queued', job: this.recordChange(row, 'job.queued', now, current.status as JobState) };
      }
      return { kind: 'not-retryable', job: this.jobOf(current) };
    });
  }

  /**
   * A claim is handed to the worker once committed, before the sync that makes it durable: the
   * handler then starts while that sync runs, and the drain does not wait for one sync per batch
   * of claims (no-op drains of 20,000 jobs, in pairs: 10.3–14.2k → 13.9–19.3k jobs/s). Nothing outside this process learns
   * of the claim before that sync (its events are announced after it, and the outcome it leads to
   * waits for a later one, which covers it: the WAL is synced in order). A claim lost with the
   * machine's power leaves the job queued, and it runs again, as it would had the claim survived
   * (its lease would lapse and the job be taken over), with that attempt not counted.
   */
  claimJobs(claim: DriverClaim): Promise<ClaimedJob[]> {
    return this.write(() => this.claimWrite(claim), true);
  }

  private claimWrite(claim: DriverClaim): ClaimedJob[] {
    const { owner, limit, now, leaseMs } = claim;
    const epoch = this.leaseClock.epoch;
    const leaseNow = this.leaseClock.now();
    const leaseExpiresAt = leaseNow + leaseMs;
    if (leaseNow - this.otherClocksCheckedAt >= OTHER_CLOCKS_CHECK_MS) {
      this.sql.expireLeasesOfOtherClocks.run(epoch, epoch);
      this.otherClocksCheckedAt = leaseNow;
    }
    for (const row of this.sql.cancelAbandoned.all(this.problems.canceledWhileRunning, now, now, leaseNow))
      this.recordChange(row, 'job.canceled', now, 'running');
    for (const row of this.sql.failAbandoned.all(this.problems.abandoned, now, now, leaseNow)) this.recordChange(row, 'job.failed', now, 'running');
    const claimed: ClaimedJob[] = [];
    for (const abandoned of this.sql.abandonedJobs.all(leaseNow, limit)) {
      const row = this.sql.takeOver.get(owner, epoch, leaseExpiresAt, now, abandoned.seq);
      if (!row) continue;
      this.recordChange(row, 'job.running', now, 'running');
      claimed.push({ ...toClaimedJob(row), ...(abandoned.lease_owner === null ? {} : { takenOverFrom: abandoned.lease_owner }) });
    }
    if (claimed.length < limit) {
      const rows = claim.byPriority
        ? this.sql.claimQueuedByPriority.all({ owner, epoch, leaseExpiresAt, now, limit: limit - claimed.length }).sort(byPriorityOrder)
        : this.sql.claimQueued.all(owner, epoch, leaseExpiresAt, now, now, limit - claimed.length);
      for (const row of rows as SqliteClaimedRow[]) {
        this.recordChange(row, 'job.running', now, 'queued');
        claimed.push(toClaimedJob(row));
      }
    }
    return claimed;
  }

  claimLimitedJobs(claim: LimitedClaim): Promise<ClaimedJob[]> {
    return this.write(() => this.claimLimitedWrite(claim), true);
  }

  /** One writer at a time: what this transaction counts stays true until it commits. */
  private claimLimitedWrite(claim: LimitedClaim): ClaimedJob[] {
    const { owner, now, leaseMs, operation } = claim;
    const epoch = this.leaseClock.epoch;
    const leaseNow = this.leaseClock.now();
    const leaseExpiresAt = leaseNow + leaseMs;
    const state = {
      running: this.sql.limitedRunning.get(operation)?.running ?? 0,
      recentStarts: JSON.parse(this.sql.operationLimit.get(operation)?.recent_starts ?? '[]') as number[],
      now,
    };
    const room = claim.room(state);
    const claimed: ClaimedJob[] = [];
    if (room.takeOver > 0) {
      for (const abandoned of this.sql.limitedAbandoned.all(operation, leaseNow, room.takeOver)) {
        const row = this.sql.takeOver.get(owner, epoch, leaseExpiresAt, now, abandoned.seq);
        if (!row) continue;
        this.recordChange(row, 'job.running', now, 'running');
        claimed.push({ ...toClaimedJob(row), ...(abandoned.lease_owner === null ? {} : { takenOverFrom: abandoned.lease_owner }) });
      }
    }
    const start = Math.min(room.start, room.takeOver - claimed.length);
    if (start > 0) {
      for (const row of this.sql.claimLimitedQueued.all({ owner, epoch, leaseExpiresAt, now, operation, limit: start }).sort(byPriorityOrder)) {
        this.recordChange(row, 'job.running', now, 'queued');
        claimed.push(toClaimedJob(row));
      }
    }
    const starts = claim.startsAfter(state, claimed.length);
    if (starts !== undefined && claimed.length > 0) this.sql.writeOperationLimit.run(operation, JSON.stringify(starts));
    return claimed;
  }

  reportProgress(id: string, fence: number, progress: JobProgress, now: number): Promise<boolean> {
    return this.write(() => {
      const row = this.sql.reportProgress.get(JSON.stringify(progress), now, id, fence);
      if (row) this.recordChange(row, 'job.progress', now, 'running');
      return row !== undefined;
    });
  }

  renewLease(id: string, fence: number, leaseMs: number, now: number): Promise<LeaseState> {
    return this.write(() => {
      const row = this.sql.renewLease.get(this.leaseClock.epoch, this.leaseClock.now() + leaseMs, now, id, fence);
      return { held: row !== undefined, cancelRequested: row?.cancel_requested === 1 };
    });
  }

  finishJobs(finishes: Finish[]): Promise<Settled<boolean>[]> {
    const outcomes = finishes.map(({ id, fence, outcome, now, followUps }) => this.write(() => this.finishWrite(id, fence, outcome, now, followUps)));
    this.writes.flushNow();
    return Promise.allSettled(outcomes).then(settledOf);
  }

  private finishWrite(id: string, fence: number, outcome: JobOutcome, now: number, followUps: AcceptWrite[] | undefined): boolean {
    const result = outcome.status === 'succeeded' ? outcome.result : null;
    const location = outcome.status === 'succeeded' ? (outcome.location ?? null) : null;
    const error = outcome.status === 'succeeded' ? null : JSON.stringify(outcome.error);
    const row = this.sql.finishJob.get(outcome.status, result, location, this.problems.canceledWhileRunning, error, now, now, id, fence);
    if (!row) return false;
    // The row says how the job ended: a cancel asked meanwhile (from any process) wins over the
    // outcome, and then its follow-ups are dropped with it. Stored in this write, they commit (or
    // roll back) with the success.
    const children = row.status === 'succeeded' && followUps?.length ? this.storeFollowUps(followUps) : undefined;
    this.recordChange(row, `job.${row.status}`, now, 'running', children);
    return true;
  }

  /** A succeeded job's follow-ups, accepted inside its finish's write; the ids of those created (a key already bound makes none). */
  private storeFollowUps(followUps: AcceptWrite[]): string[] {
    const created: string[] = [];
    for (const write of followUps) {
      const accepted = this.acceptWrite(write);
      if (accepted.kind === 'created') created.push(accepted.jobId);
    }
    return created;
  }

  requeueJob(id: string, fence: number, requeue: Requeue, now: number): Promise<boolean> {
    return this.write(() => {
      const row = requeue.countsAttempt
        ? this.sql.retryJob.get(requeue.error === undefined ? null : JSON.stringify(requeue.error), requeue.runAt, now, id, fence)
        : this.sql.releaseJob.get(requeue.runAt, now, id, fence);
      if (row) {
        this.jobsQueuedInGroup = true;
        this.recordChange(row, 'job.queued', now, 'running');
        return true;
      }
      // A job whose cancel was asked (possibly from another process, not yet seen by its worker) is
      // not put back in the queue: it ends canceled.
      const canceled = this.sql.finishCanceledRequest.get(this.problems.canceledWhileRunning, now, now, id, fence);
      if (canceled) this.recordChange(canceled, 'job.canceled', now, 'running');
      return canceled !== undefined;
    });
  }

  claimDeliveries(claim: DeliveryClaim): Promise<WebhookDelivery[]> {
    const { owner, limit, now, leaseMs } = claim;
    const webhooks = claim.kind === 'notification' ? 0 : 1;
    return this.write(() => {
      this.sql.failAbandonedDeliveries.run(now, now);
      return this.sql.claimDeliveries.all(owner, now + leaseMs, now, now, now, webhooks, limit).map(toDelivery);
    });
  }

  recordDelivery(delivery: WebhookDelivery, owner: string, outcome: DeliveryOutcome, now: number): Promise<boolean> {
    const nextAttemptAt = outcome.status === 'succeeded' ? now : outcome.nextAttemptAt;
    const error = outcome.status === 'succeeded' ? null : outcome.error;
    return this.write(() => {
      const recorded =
        this.sql.recordDelivery.run(outcome.status, outcome.httpStatus ?? null, error, nextAttemptAt, now, delivery.id, delivery.attempts, owner).changes === 1;
      if (recorded) this.changedInGroup.add(delivery.jobId);
      return recorded;
    });
  }

  declareSchedules(schedules: DeclaredSchedule[], now: number): Promise<Map<string, number>> {
    return this.write(() => {
      const lastTicks = new Map<string, number>();
      for (const schedule of schedules) {
        const row = this.sql.declareSchedule.get({ ...schedule, now });
        lastTicks.set(schedule.name, (row as { last_tick: number }).last_tick);
      }
      this.sql.retireSchedules.run(now, JSON.stringify(schedules.map((schedule) => schedule.name)));
      return lastTicks;
    });
  }

  advanceSchedule(advance: ScheduleAdvance): Promise<ScheduleAdvanced> {
    return this.write(() => {
      const { name, fromTick, toTick } = advance;
      if (this.sql.advanceSchedule.run({ name, from: fromTick, to: toTick }).changes === 0) {
        return { won: false, lastTick: this.sql.scheduleLastTick.get(name)?.last_tick ?? fromTick, jobIds: [] };
      }
      // A key bound already (the tick's job exists): nothing is created, and nothing more is owed.
      const jobIds = advance.writes.flatMap((write) => {
        const accepted = this.acceptWrite(write);
        if (accepted.kind !== 'created') return [];
        if (write.schedule) this.sql.markScheduleJob.run(JSON.stringify(write.schedule), accepted.jobId);
        return [accepted.jobId];
      });
      const last = jobIds.at(-1);
      if (last !== undefined) this.sql.recordScheduleJob.run(last, name);
      return { won: true, lastTick: toTick, jobIds };
    });
  }

  async listSchedules(): Promise<ScheduleRecord[]> {
    return this.read(() => this.sql.listSchedules.all().map(toScheduleRecord));
  }

  sweepBatch(now: number, finishedBefore: FinishedBefore, limit: number): Promise<{ keys: number; jobs: number }> {
    return this.write(() => {
      const keys = this.sql.deleteExpiredKeys.run(now, limit).changes;
      if (keys > 0) return { keys, jobs: 0 };
      let jobs = 0;
      for (const { operation: name } of this.sql.finishedOperations.all()) {
        if (jobs >= limit) break;
        const before = finishedBefore.byOperation.get(name) ?? finishedBefore.others;
        for (const { id, operation, status } of this.sql.finishedJobsBefore.all(name, before, limit - jobs)) {
          // The newest job or event may be among those deleted: the head keeps the positions taken.
          if (jobs === 0) this.sql.keepEventLogHead.run();
          this.sql.deleteJobEvents.run(id);
          this.sql.deleteJobDeliveries.run(id);
          this.sql.deleteJob.run(id);
          this.counter.moved(operation, status as JobState, undefined);
          jobs++;
        }
      }
      return { keys: 0, jobs };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.writes.flush(true);
    this.closed = true;
    await this.writes.whenSynced();
    this.walSync?.close();
    await this.checkpointer?.close();
    this.db.close();
  }

  /** A write grouped with the others of this event-loop turn; database errors become StoreUnavailableError. */
  private write<T>(write: () => T, atCommit = false): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('the store is closed'));
    if (this.lost) return Promise.reject(this.lost);
    return this.writes.run(write, atCommit).catch((error: unknown) => {
      const unavailable = asUnavailable(error);
      if (unavailable instanceof StoreUnavailableError && unavailable !== this.lost && !BUSY_CODES.test(String((error as { code?: unknown }).code))) {
        // Reported once per run of failures (disk full, I/O error), not once per request.
        if (!this.writeFailure) this.hooks?.events.fault({ kind: 'write-failed', error: unavailable });
        this.writeFailure = unavailable;
        this.writeFailedAt = performance.now();
      }
      throw unavailable;
    });
  }

  /** A statement run now (reads); database errors become StoreUnavailableError. */
  private read<T>(run: () => T): T {
    if (this.closed) throw new StoreUnavailableError('the store is closed');
    if (this.lost) throw this.lost;
    try {
      return run();
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  private mustGetJob(principal: string, id: string): JobRecord {
    const row = this.sql.getJob.get(id, principal);
    if (!row) throw new Error(`job ${id} vanished inside its own transaction`);
    return this.jobOf(row);
  }

  /** The record of a row, with what its lease has left on this driver's lease clock (a lease of another boot has lapsed). */
  private jobOf(row: SqliteJobRow): JobRecord {
    if (row.lease_expires_at === null) return toJobRecord(row, null);
    return toJobRecord(row, row.lease_epoch === this.leaseClock.epoch ? row.lease_expires_at - this.leaseClock.now() : 0);
  }
}

/** Claim order: priority (highest first), then run time and insertion. */
function byPriorityOrder(a: SqliteJobRow & { seq: number }, b: SqliteJobRow & { seq: number }): number {
  return b.priority - a.priority || a.run_at - b.run_at || a.seq - b.seq;
}

function asUnavailable(error: unknown): unknown {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.test(code)) return new StoreUnavailableError(`${code}: ${(error as Error).message}`, { cause: error });
  if (error instanceof TypeError && /database connection is not open/.test(error.message))
    return new StoreUnavailableError('the store is closed', { cause: error });
  return error;
}
