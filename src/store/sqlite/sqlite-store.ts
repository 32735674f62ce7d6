import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type BetterSqlite3 from 'better-sqlite3';
import Database from 'better-sqlite3';
import { type ProblemDetails, problem } from '../../http/problems.js';
import { newJobId } from '../../ids.js';
import { isFinished, type JobState } from '../job-states.js';
import { jobBody } from '../job-view.js';
import {
  type AcceptOutcome,
  type AcceptRequest,
  type CancelOutcome,
  type ClaimedJob,
  type ClaimRequest,
  type DeliveryOutcome,
  type DeliveryStatus,
  type JobEvent,
  type JobOutcome,
  type JobProgress,
  type JobRecord,
  type LeaseState,
  type Store,
  type StoreFault,
  StoreUnavailableError,
  type WebhookDelivery,
} from '../store.js';
import { GroupCommit } from './group-commit.js';
import { type LeaseClock, machineLeaseClock } from './lease-clock.js';
import { migrate } from './schema.js';
import { type ClaimedRow, type DeliveryRow, type JobRow, prepareStatements, type Statements } from './statements.js';

export interface SqliteStoreOptions {
  /** How long a write waits (off the event loop) for another connection's write lock before the store is "busy". */
  busyTimeoutMs?: number;
  /** Jobs deleted per sweep transaction, so a sweep never holds the lock or the event loop for long. */
  sweepBatchSize?: number;
  /** Attempts per webhook delivery before it is marked failed. */
  webhookMaxAttempts?: number;
  /** The clock leases are taken on (tests give one that runs ahead to let leases expire). */
  leaseClock?: LeaseClock;
}

/**
 * How long one statement may block the event loop waiting for a lock (better-sqlite3 waits
 * synchronously). Locks held by another asyncfirst process last well under this; a longer hold
 * is waited out asynchronously by GroupCommit, so reads and health checks stay served.
 */
const SYNC_BUSY_WAIT_MS = 5;

/** A file's identity: its device and inode (a removed-and-recreated file has another). */
function fileIdentity(path: string): string | undefined {
  try {
    const stat = statSync(path, { bigint: true });
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
}

// The problems the store itself records on jobs (from the one catalogue).
const CANCELED_BEFORE_RUNNING = JSON.stringify(problem('jobCanceled', 'DELETE /jobs/{id} canceled the job before it ran.'));
const CANCELED_WHILE_RUNNING = JSON.stringify(problem('jobCanceled', 'DELETE /jobs/{id} canceled the job while it was running.'));
const ABANDONED = JSON.stringify(problem('jobLeaseExpired', 'The job was running when its worker stopped renewing the lease, and it has no attempts left.'));

/** SQLite error codes that mean "try again later" rather than "this request is wrong". */
const BUSY_CODES = /^SQLITE_BUSY/;
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|PROTOCOL|NOMEM|CORRUPT|NOTADB)/;

/** Resolves DATABASE_URL (a path or a file: URL) to a file path and creates its folder. */
export function resolveDatabasePath(databaseUrl: string): string {
  const path = databaseUrl.startsWith('file:')
    ? databaseUrl.startsWith('file://')
      ? fileURLToPath(databaseUrl)
      : (databaseUrl.slice(5).split('?')[0] ?? '')
    : databaseUrl;
  if (path === '') throw new Error(`DATABASE_URL "${databaseUrl}" names no file`);
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  return path;
}

/**
 * The Store on one SQLite file through better-sqlite3: WAL journal, synchronous=FULL (a commit
 * is on disk before it returns), writes grouped per event-loop turn (see GroupCommit).
 */
export class SqliteStore implements Store {
  readonly db: BetterSqlite3.Database;
  private readonly sql: Statements;
  private readonly writes: GroupCommit;
  private readonly queuedListeners: Array<() => void> = [];
  private readonly changedListeners: Array<(jobIds: Set<string>) => void> = [];
  private readonly deliveryListeners: Array<() => void> = [];
  // What the transaction being built has done, announced after it commits (after a failed
  // commit the flags carry over: a spurious wake-up is harmless, a missed one is not).
  private jobsQueuedInGroup = false;
  private deliveriesQueuedInGroup = false;
  private changedInGroup = new Set<string>();
  private readonly faultListeners: Array<(fault: StoreFault) => void> = [];
  private readonly sweepBatchSize: number;
  private readonly webhookMaxAttempts: number;
  private readonly leaseClock: LeaseClock;
  /** The identities of the database file and its WAL as opened; undefined for :memory:. */
  private readonly files: { path: string; identity: string }[] = [];
  /** Set for good once the file the store writes is no longer the file at its path. */
  private lost: StoreUnavailableError | undefined;
  /** The last write failure of the database itself, until a commit succeeds again. */
  private writeFailure: StoreUnavailableError | undefined;
  private closed = false;

  constructor(
    readonly path: string,
    options: SqliteStoreOptions = {},
  ) {
    this.db = new Database(path, { timeout: SYNC_BUSY_WAIT_MS });
    this.db.pragma('journal_mode = WAL');
    // FULL: in WAL mode NORMAL may lose the last commits on power loss, and a 202 promises durability.
    this.db.pragma('synchronous = FULL');
    migrate(this.db);
    this.sql = prepareStatements(this.db);
    this.sweepBatchSize = options.sweepBatchSize ?? 500;
    this.webhookMaxAttempts = options.webhookMaxAttempts ?? 8;
    this.leaseClock = options.leaseClock ?? machineLeaseClock();
    if (path !== ':memory:' && path !== '') {
      for (const file of [path, `${path}-wal`]) {
        const identity = fileIdentity(file);
        if (identity === undefined) throw new Error(`the database file ${file} is missing right after opening it`);
        this.files.push({ path: file, identity });
      }
    }
    this.writes = new GroupCommit(this.db, {
      afterCommit: () => this.announceCommit(),
      isDatabaseError: (error) => asUnavailable(error) instanceof StoreUnavailableError,
      isBusy: (error) => BUSY_CODES.test(String((error as { code?: unknown }).code ?? '')),
      busyTimeoutMs: options.busyTimeoutMs ?? 5000,
      verifyDurable: () => this.verifyFiles(),
    });
  }

  /** Called once per fault of the store: the database file lost, or a write failing for a cause other than a busy lock. */
  onFault(listener: (fault: StoreFault) => void): void {
    this.faultListeners.push(listener);
  }

  /**
   * Throws (for good) when the database file or its WAL is no longer the file this store opened:
   * removed, or replaced. Writes would then go to an unlinked file that a restart never sees.
   */
  private verifyFiles(): void {
    if (this.lost) throw this.lost;
    for (const file of this.files) {
      if (fileIdentity(file.path) === file.identity) continue;
      this.lost = new StoreUnavailableError(
        `the database file ${file.path} was removed or replaced while the store had it open; nothing written since is durable. Restore the file and restart.`,
      );
      for (const listener of this.faultListeners) listener({ kind: 'file-lost', error: this.lost });
      throw this.lost;
    }
  }

  /** Resolves when the store can serve: open, its file in place, a read round trip, and (after a failed write) a write round trip. */
  async checkReady(): Promise<void> {
    this.read(() => {
      this.verifyFiles();
      this.sql.readProbe.get();
    });
    if (this.writeFailure || this.writes.waitingForLock) await this.write(() => this.sql.writeProbe.run(Date.now()));
  }

  onJobsQueued(listener: () => void): void {
    this.queuedListeners.push(listener);
  }

  onJobsChanged(listener: (jobIds: Set<string>) => void): void {
    this.changedListeners.push(listener);
  }

  onDeliveriesQueued(listener: () => void): void {
    this.deliveryListeners.push(listener);
  }

  private announceCommit(): void {
    this.writeFailure = undefined;
    if (this.changedInGroup.size > 0) {
      const changed = this.changedInGroup;
      this.changedInGroup = new Set();
      for (const listener of this.changedListeners) listener(changed);
    }
    if (this.jobsQueuedInGroup) {
      this.jobsQueuedInGroup = false;
      for (const listener of this.queuedListeners) listener();
    }
    if (this.deliveriesQueuedInGroup) {
      this.deliveriesQueuedInGroup = false;
      for (const listener of this.deliveryListeners) listener();
    }
  }

  /**
   * Appends the job's new state (the row its UPDATE returned) to its event log; for a terminal
   * state with a callback URL, also queues the webhook delivery. Runs inside the transaction
   * that made the change. Returns the job.
   */
  private recordChange(row: JobRow, type: string, now: number): JobRecord {
    const job = toJobRecord(row);
    const jobId = job.id;
    const data = jobBody(job);
    this.sql.insertEvent.run(jobId, type, data, now);
    this.changedInGroup.add(jobId);
    if (job.callbackUrl && isFinished(job.status)) {
      const payload = `{"type":${JSON.stringify(type)},"timestamp":${JSON.stringify(new Date(now).toISOString())},"data":${data}}`;
      this.sql.insertDelivery.run(`msg_${newJobId(now)}`, jobId, job.callbackUrl, type, payload, this.webhookMaxAttempts, now, now, now);
      this.deliveriesQueuedInGroup = true;
    }
    return job;
  }

  // The hot writes run in named methods (acceptWrite, claimWrite, finishWrite): group commit runs
  // them later, outside the method that asked, and CPU profiles then still say whose statements ran.
  acceptJob(request: AcceptRequest): Promise<AcceptOutcome> {
    return this.write(() => this.acceptWrite(request));
  }

  private acceptWrite(request: AcceptRequest): AcceptOutcome {
    const { principal, operation, key, now } = request;
    const existing = this.sql.findIdempotencyKey.get(principal, operation, key);
    // A record past its retention, or whose job the sweeper removed, no longer binds the key.
    if (existing && existing.expires_at > now && this.sql.jobExists.get(existing.job_id)) {
      return existing.fingerprint === request.fingerprint ? { kind: 'replayed', jobId: existing.job_id } : { kind: 'mismatch', jobId: existing.job_id };
    }
    const jobId = newJobId(now);
    this.sql.insertJob.run(jobId, principal, operation, request.input, request.maxAttempts, request.callbackUrl ?? null, now, now, now);
    this.sql.upsertIdempotencyKey.run(principal, operation, key, request.fingerprint, jobId, now, request.keyExpiresAt);
    this.jobsQueuedInGroup = true;
    this.changedInGroup.add(jobId);
    return { kind: 'created', jobId };
  }

  async getJob(principal: string, id: string): Promise<JobRecord | undefined> {
    return this.read(() => {
      const row = this.sql.getJob.get(id, principal);
      if (!row) return undefined;
      const job = toJobRecord(row);
      if (job.callbackUrl) job.deliveries = this.sql.deliveriesOfJob.all(id).map(toDelivery);
      return job;
    });
  }

  async getJobEvents(principal: string, id: string, afterId: number): Promise<{ job: JobRecord; events: JobEvent[] } | undefined> {
    return this.read(() =>
      this.db.transaction(() => {
        const row = this.sql.getJob.get(id, principal);
        if (!row) return undefined;
        const events = this.sql.eventsAfter.all(id, afterId).map((event) => ({ id: event.id, type: event.type, data: event.data }));
        return { job: toJobRecord(row), events };
      })(),
    );
  }

  async jobsChangedSince(cursor: number | undefined): Promise<{ jobIds: string[]; cursor: number }> {
    return this.read(() => {
      if (cursor === undefined) return { jobIds: [], cursor: this.sql.latestEventId.get()?.id ?? 0 };
      const rows = this.sql.jobsChangedAfter.all(cursor);
      return { jobIds: [...new Set(rows.map((row) => row.job_id))], cursor: rows.length ? (rows[rows.length - 1] as { id: number }).id : cursor };
    });
  }

  cancelJob(principal: string, id: string, now: number): Promise<CancelOutcome> {
    return this.write(() => {
      const canceled = this.sql.cancelQueuedJob.get(CANCELED_BEFORE_RUNNING, now, now, id, principal);
      if (canceled) return { kind: 'canceled', job: this.recordChange(canceled, 'job.canceled', now) };
      if (this.sql.requestCancel.run(now, id, principal).changes === 1) {
        return { kind: 'signalled', job: this.mustGetJob(principal, id) };
      }
      const row = this.sql.getJob.get(id, principal);
      return row ? { kind: 'finished', job: toJobRecord(row) } : { kind: 'not-found' };
    });
  }

  claimJobs(claim: ClaimRequest): Promise<ClaimedJob[]> {
    return this.write(() => this.claimWrite(claim));
  }

  private claimWrite(claim: ClaimRequest): ClaimedJob[] {
    const { owner, limit, now, leaseMs } = claim;
    const epoch = this.leaseClock.epoch;
    const leaseNow = this.leaseClock.now();
    const leaseExpiresAt = leaseNow + leaseMs;
    for (const row of this.sql.cancelAbandoned.all(CANCELED_WHILE_RUNNING, now, now, epoch, leaseNow)) this.recordChange(row, 'job.canceled', now);
    for (const row of this.sql.failAbandoned.all(ABANDONED, now, now, epoch, leaseNow)) this.recordChange(row, 'job.failed', now);
    const claimed: ClaimedJob[] = [];
    for (const abandoned of this.sql.abandonedJobs.all(epoch, leaseNow, limit)) {
      const row = this.sql.takeOver.get(owner, epoch, leaseExpiresAt, now, abandoned.seq);
      if (!row) continue;
      this.recordChange(row, 'job.running', now);
      claimed.push({ ...toClaimedJob(row), ...(abandoned.lease_owner === null ? {} : { takenOverFrom: abandoned.lease_owner }) });
    }
    if (claimed.length < limit) {
      for (const row of this.sql.claimQueued.all(owner, epoch, leaseExpiresAt, now, now, limit - claimed.length)) {
        this.recordChange(row, 'job.running', now);
        claimed.push(toClaimedJob(row));
      }
    }
    return claimed;
  }

  reportProgress(id: string, fence: number, progress: JobProgress, now: number): Promise<boolean> {
    return this.write(() => {
      const row = this.sql.reportProgress.get(JSON.stringify(progress), now, id, fence);
      if (row) this.recordChange(row, 'job.progress', now);
      return row !== undefined;
    });
  }

  renewLease(id: string, fence: number, leaseMs: number, now: number): Promise<LeaseState> {
    return this.write(() => {
      const row = this.sql.renewLease.get(this.leaseClock.epoch, this.leaseClock.now() + leaseMs, now, id, fence);
      return { held: row !== undefined, cancelRequested: row?.cancel_requested === 1 };
    });
  }

  finishJob(id: string, fence: number, outcome: JobOutcome, now: number): Promise<boolean> {
    return this.write(() => this.finishWrite(id, fence, outcome, now));
  }

  private finishWrite(id: string, fence: number, outcome: JobOutcome, now: number): boolean {
    const result = outcome.status === 'succeeded' ? outcome.result : null;
    const location = outcome.status === 'succeeded' ? (outcome.location ?? null) : null;
    const error = outcome.status === 'succeeded' ? null : JSON.stringify(outcome.error);
    const row = this.sql.finishJob.get(outcome.status, result, location, CANCELED_WHILE_RUNNING, error, now, now, id, fence);
    // The row says how the job ended: a cancel asked meanwhile (from any process) wins over the outcome.
    if (row) this.recordChange(row, `job.${row.status}`, now);
    return row !== undefined;
  }

  retryJob(id: string, fence: number, error: ProblemDetails, runAt: number, now: number): Promise<boolean> {
    return this.write(() => {
      const row = this.sql.retryJob.get(JSON.stringify(error), runAt, now, id, fence);
      if (!row) return this.cancelIfRequested(id, fence, now);
      this.jobsQueuedInGroup = true;
      this.recordChange(row, 'job.queued', now);
      return true;
    });
  }

  releaseJob(id: string, fence: number, now: number): Promise<boolean> {
    return this.write(() => {
      const row = this.sql.releaseJob.get(now, now, id, fence);
      if (!row) return this.cancelIfRequested(id, fence, now);
      this.recordChange(row, 'job.queued', now);
      return true;
    });
  }

  /**
   * A job whose cancel was asked (possibly from another process, not yet seen by its worker) is
   * not put back in the queue: it ends canceled. False when the fence is stale.
   */
  private cancelIfRequested(id: string, fence: number, now: number): boolean {
    const row = this.sql.finishCanceledRequest.get(CANCELED_WHILE_RUNNING, now, now, id, fence);
    if (row) this.recordChange(row, 'job.canceled', now);
    return row !== undefined;
  }

  claimDeliveries(claim: { owner: string; limit: number; now: number; leaseMs: number }): Promise<WebhookDelivery[]> {
    const { owner, limit, now, leaseMs } = claim;
    return this.write(() => {
      this.sql.failAbandonedDeliveries.run(now, now);
      return this.sql.claimDeliveries.all(owner, now + leaseMs, now, now, now, limit).map(toDelivery);
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

  /**
   * Deletes in batches, each its own grouped write: between two batches the event loop serves
   * requests and other writes commit, so a sweep of a million rows never stalls the server.
   */
  async sweep(now: number, jobsFinishedBefore: number): Promise<{ keys: number; jobs: number }> {
    const batchSize = this.sweepBatchSize;
    let keys = 0;
    for (;;) {
      const { changes } = await this.write(() => this.sql.deleteExpiredKeys.run(now, batchSize));
      keys += changes;
      if (changes < batchSize) break;
    }
    let jobs = 0;
    for (;;) {
      const deleted = await this.write(() => {
        const ids = this.sql.finishedJobsBefore.all(jobsFinishedBefore, batchSize);
        for (const { id } of ids) {
          this.sql.deleteJobEvents.run(id);
          this.sql.deleteJobDeliveries.run(id);
          this.sql.deleteJob.run(id);
        }
        return ids.length;
      });
      jobs += deleted;
      if (deleted < batchSize) break;
    }
    return { keys, jobs };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.writes.flush(true);
    this.closed = true;
    this.db.close();
  }

  /** A write grouped with the others of this event-loop turn; store errors become StoreUnavailableError. */
  private write<T>(write: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('the store is closed'));
    if (this.lost) return Promise.reject(this.lost);
    return this.writes.run(write).catch((error: unknown) => {
      const unavailable = asUnavailable(error);
      if (unavailable instanceof StoreUnavailableError && unavailable !== this.lost && !BUSY_CODES.test(String((error as { code?: unknown }).code))) {
        // Reported once per run of failures (disk full, I/O error), not once per request.
        if (!this.writeFailure) for (const listener of this.faultListeners) listener({ kind: 'write-failed', error: unavailable });
        this.writeFailure = unavailable;
      }
      throw unavailable;
    });
  }

  /** A statement run now (reads, claims, sweeps); store errors become StoreUnavailableError. */
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
    return toJobRecord(row);
  }
}

function asUnavailable(error: unknown): unknown {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.test(code)) return new StoreUnavailableError(`${code}: ${(error as Error).message}`, { cause: error });
  if (error instanceof TypeError && /database connection is not open/.test(error.message))
    return new StoreUnavailableError('the store is closed', { cause: error });
  return error;
}

function toJobRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    principal: row.principal,
    operation: row.operation,
    status: row.status as JobState,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    cancelRequested: row.cancel_requested === 1,
    ...(row.progress === null ? {} : { progress: JSON.parse(row.progress) as JobProgress }),
    ...(row.callback_url === null ? {} : { callbackUrl: row.callback_url }),
    ...(row.result === null ? {} : { result: row.result }),
    ...(row.result_location === null ? {} : { resultLocation: row.result_location }),
    ...(row.error === null ? {} : { error: JSON.parse(row.error) as ProblemDetails }),
    runAt: row.run_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    ...(row.finished_at === null ? {} : { finishedAt: row.finished_at }),
  };
}

function toClaimedJob(row: ClaimedRow): ClaimedJob {
  return {
    id: row.id,
    principal: row.principal,
    operation: row.operation,
    input: row.input,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    fence: row.fence,
  };
}

function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    jobId: row.job_id,
    url: row.url,
    eventType: row.event_type,
    payload: row.payload,
    status: row.status as DeliveryStatus,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    nextAttemptAt: row.next_attempt_at,
    ...(row.last_status === null ? {} : { lastStatus: row.last_status }),
    ...(row.last_error === null ? {} : { lastError: row.last_error }),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
