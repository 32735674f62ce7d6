import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type BetterSqlite3 from 'better-sqlite3';
import Database from 'better-sqlite3';
import type { ProblemDetails } from '../../http/problems.js';
import { newJobId } from '../../ids.js';
import type { JobState } from '../job-states.js';
import {
  type AcceptOutcome,
  type AcceptRequest,
  type CancelOutcome,
  type ClaimedJob,
  type ClaimRequest,
  type JobOutcome,
  type JobRecord,
  type LeaseState,
  type Store,
  StoreUnavailableError,
} from '../store.js';
import { GroupCommit } from './group-commit.js';
import { migrate } from './schema.js';
import { type ClaimedRow, type JobRow, prepareStatements, type Statements } from './statements.js';

export interface SqliteStoreOptions {
  /** How long a statement waits for another connection's write lock before the store is "busy". */
  busyTimeoutMs?: number;
  /** Rows deleted per sweep statement, so a sweep never holds the write lock for long. */
  sweepBatchSize?: number;
}

/** SQLite error codes that mean "try again later" rather than "this request is wrong". */
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
  private jobsQueuedInGroup = false;
  private readonly sweepBatchSize: number;
  private closed = false;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.db = new Database(path, { timeout: options.busyTimeoutMs ?? 5000 });
    this.db.pragma('journal_mode = WAL');
    // FULL: in WAL mode NORMAL may lose the last commits on power loss, and a 202 promises durability.
    this.db.pragma('synchronous = FULL');
    migrate(this.db);
    this.sql = prepareStatements(this.db);
    this.sweepBatchSize = options.sweepBatchSize ?? 1000;
    this.writes = new GroupCommit(this.db, () => {
      if (!this.jobsQueuedInGroup) return;
      this.jobsQueuedInGroup = false;
      for (const listener of this.queuedListeners) listener();
    });
  }

  onJobsQueued(listener: () => void): void {
    this.queuedListeners.push(listener);
  }

  acceptJob(request: AcceptRequest): Promise<AcceptOutcome> {
    return this.write(() => {
      const { principal, operation, key, now } = request;
      const existing = this.sql.findIdempotencyKey.get(principal, operation, key);
      // A record past its retention, or whose job the sweeper removed, no longer binds the key.
      if (existing && existing.expires_at > now && this.sql.jobExists.get(existing.job_id)) {
        return existing.fingerprint === request.fingerprint ? { kind: 'replayed', jobId: existing.job_id } : { kind: 'mismatch', jobId: existing.job_id };
      }
      const jobId = newJobId(now);
      this.sql.insertJob.run(jobId, principal, operation, request.input, request.maxAttempts, now, now, now);
      this.sql.upsertIdempotencyKey.run(principal, operation, key, request.fingerprint, jobId, now, request.keyExpiresAt);
      this.jobsQueuedInGroup = true;
      return { kind: 'created', jobId };
    });
  }

  async getJob(principal: string, id: string): Promise<JobRecord | undefined> {
    const row = this.read(() => this.sql.getJob.get(id, principal));
    return row && toJobRecord(row);
  }

  cancelJob(principal: string, id: string, now: number, canceledError: ProblemDetails): Promise<CancelOutcome> {
    return this.write(() => {
      if (this.sql.cancelQueuedJob.run(JSON.stringify(canceledError), now, now, id, principal).changes === 1) {
        return { kind: 'canceled', job: this.mustGetJob(principal, id) };
      }
      if (this.sql.requestCancel.run(now, id, principal).changes === 1) {
        return { kind: 'signalled', job: this.mustGetJob(principal, id) };
      }
      const row = this.sql.getJob.get(id, principal);
      return row ? { kind: 'finished', job: toJobRecord(row) } : { kind: 'not-found' };
    });
  }

  async claimJobs(claim: ClaimRequest): Promise<ClaimedJob[]> {
    const { owner, limit, now, leaseMs } = claim;
    const leaseExpiresAt = now + leaseMs;
    const rows = this.read(() =>
      this.db
        .transaction(() => {
          this.sql.cancelAbandoned.run(JSON.stringify(claim.abandonedError), now, now, now);
          this.sql.failAbandoned.run(JSON.stringify(claim.abandonedError), now, now, now);
          const taken = this.sql.takeOverAbandoned.all(owner, leaseExpiresAt, now, now, limit);
          const claimed = taken.length < limit ? this.sql.claimQueued.all(owner, leaseExpiresAt, now, now, limit - taken.length) : [];
          return [...taken, ...claimed];
        })
        .immediate(),
    );
    return rows.map(toClaimedJob);
  }

  renewLease(id: string, fence: number, leaseExpiresAt: number, now: number): Promise<LeaseState> {
    return this.write(() => {
      const row = this.sql.renewLease.get(leaseExpiresAt, now, id, fence);
      return { held: row !== undefined, cancelRequested: row?.cancel_requested === 1 };
    });
  }

  finishJob(id: string, fence: number, outcome: JobOutcome, now: number): Promise<boolean> {
    const result = outcome.status === 'succeeded' ? outcome.result : null;
    const error = outcome.status === 'succeeded' ? null : JSON.stringify(outcome.error);
    return this.write(() => this.sql.finishJob.run(outcome.status, result, error, now, now, id, fence).changes === 1);
  }

  retryJob(id: string, fence: number, error: ProblemDetails, runAt: number, now: number): Promise<boolean> {
    return this.write(() => {
      const retried = this.sql.retryJob.run(JSON.stringify(error), runAt, now, id, fence).changes === 1;
      if (retried) this.jobsQueuedInGroup = true;
      return retried;
    });
  }

  releaseJob(id: string, fence: number, now: number): Promise<boolean> {
    return this.write(() => this.sql.releaseJob.run(now, now, id, fence).changes === 1);
  }

  async sweep(now: number, jobsFinishedBefore: number): Promise<{ keys: number; jobs: number }> {
    const deleteAll = (statement: BetterSqlite3.Statement<[number, number]>, before: number) => {
      let total = 0;
      for (;;) {
        const { changes } = this.read(() => statement.run(before, this.sweepBatchSize));
        total += changes;
        if (changes < this.sweepBatchSize) return total;
      }
    };
    const keys = deleteAll(this.sql.deleteExpiredKeys, now);
    const jobs = deleteAll(this.sql.deleteFinishedJobs, jobsFinishedBefore);
    return { keys, jobs };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.writes.flush();
    this.closed = true;
    this.db.close();
  }

  /** A write grouped with the others of this event-loop turn; store errors become StoreUnavailableError. */
  private write<T>(write: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('the store is closed'));
    return this.writes.run(write).catch((error: unknown) => {
      throw asUnavailable(error);
    });
  }

  /** A statement run now (reads, claims, sweeps); store errors become StoreUnavailableError. */
  private read<T>(run: () => T): T {
    if (this.closed) throw new StoreUnavailableError('the store is closed');
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
    ...(row.result === null ? {} : { result: row.result }),
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
