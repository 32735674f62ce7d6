import type BetterSqlite3 from 'better-sqlite3';
import { JOB_STATES, type JobState } from '../../core/job-states.js';
import type { ClaimedRow, DeliveryRow, EventLogColumns, IdempotencyRow, JobRow, ScheduleRow } from '../rows.js';

/**
 * The operations that have finished jobs, as the rows of a CTE `finished(operation)` (its last row
 * NULL): each step reads the next operation from jobs_finished_by_operation, so it costs one
 * index probe per operation, however many jobs each has.
 */
const FINISHED_OPERATIONS = `finished(operation) AS (
     SELECT (SELECT operation FROM jobs WHERE finished_at IS NOT NULL ORDER BY operation LIMIT 1)
     UNION ALL
     SELECT (SELECT operation FROM jobs WHERE finished_at IS NOT NULL AND operation > finished.operation ORDER BY operation LIMIT 1)
     FROM finished WHERE finished.operation IS NOT NULL
   )`;

/** The columns a job is read with (GET /jobs/{id}). */
const JOB_COLUMNS = `id, principal, operation, status, attempts, max_attempts, priority, cancel_requested, progress, callback_url, result, result_location, error, run_at, created_at, updated_at, finished_at, version, fence, lease_owner, lease_epoch, lease_expires_at, parent_id`;
const DELIVERY_COLUMNS = `id, job_id, url, notifier, event_type, payload, status, attempts, max_attempts, next_attempt_at, last_status, last_error, created_at, updated_at`;
const CLAIMED_COLUMNS = `${JOB_COLUMNS}, input, trace_context`;

/** A lease's expiry means something only on the lease clock of its epoch (lease-clock.ts). */
interface LeaseColumns {
  lease_epoch: string | null;
  lease_expires_at: number | null;
}
export type SqliteJobRow = JobRow & LeaseColumns;
export type SqliteClaimedRow = ClaimedRow & LeaseColumns;
export type ListedRow = SqliteJobRow & { seq: number; input?: string };

/** A listing's filters; a null one does not filter. `before` is a seq. */
export interface ListingParameters {
  principal: string | null;
  operation: string | null;
  createdAfter: number | null;
  createdBefore: number | null;
  before: number;
  limit: number;
}

/**
 * Jobs newest first, backwards from the cursor, in one of the scans of src/store/listing-scans.ts,
 * each read through an index that holds the rows it wants in seq order (or a small set, sorted),
 * so a listing never walks millions of rows it filters out; the other filters apply as it goes.
 * The indexes (migration 8) are chosen so that a job's common path (queued → running → succeeded)
 * writes few of them: a state's own partial index where the state's rows are few among many
 * (queued, failed, canceled), jobs_leased for the running jobs (as many as workers run at once),
 * the table itself for succeeded jobs (most of every table), and jobs_principal (principal, seq)
 * for a principal's jobs. A partial index serves a statement only when the statement names its
 * state, so there is one statement per state.
 */
const STATE_SCANS: Record<JobState, { every: string; own: string }> = {
  queued: {
    every: `jobs INDEXED BY jobs_queued_newest WHERE status = 'queued'`,
    own: `jobs INDEXED BY jobs_principal WHERE principal = @principal AND status = 'queued' AND seq >= (SELECT min(seq) FROM jobs INDEXED BY jobs_queued_newest WHERE status = 'queued')`,
  },
  running: {
    every: `jobs INDEXED BY jobs_leased WHERE status = 'running'`,
    own: `jobs INDEXED BY jobs_leased WHERE status = 'running' AND principal = @principal`,
  },
  succeeded: {
    every: `jobs NOT INDEXED WHERE status = 'succeeded'`,
    own: `jobs INDEXED BY jobs_principal WHERE principal = @principal AND status = 'succeeded'`,
  },
  failed: {
    every: `jobs INDEXED BY jobs_failed WHERE status = 'failed'`,
    own: `jobs INDEXED BY jobs_principal_failed WHERE principal = @principal AND status = 'failed'`,
  },
  canceled: {
    every: `jobs INDEXED BY jobs_canceled WHERE status = 'canceled'`,
    own: `jobs INDEXED BY jobs_principal_canceled WHERE principal = @principal AND status = 'canceled'`,
  },
};
const listing = (columns: string, scan: string) =>
  `SELECT seq, ${columns} FROM ${scan}
     AND seq < @before
     AND (@operation IS NULL OR operation = @operation)
     AND (@createdAfter IS NULL OR created_at > @createdAfter)
     AND (@createdBefore IS NULL OR created_at < @createdBefore)
   ORDER BY seq DESC LIMIT @limit`;

/** The listing statements of one column set: every job, every job of a principal, and per state each of both. */
function listingStatements(db: PreparingDatabase, columns: string) {
  const prepare = (scan: string) => db.prepare<[ListingParameters], ListedRow>(listing(columns, scan));
  const byState = (pick: (scans: { every: string; own: string }) => string) =>
    Object.fromEntries(JOB_STATES.map((state) => [state, prepare(pick(STATE_SCANS[state]))])) as Record<
      JobState,
      PreparedStatement<[ListingParameters], ListedRow>
    >;
  return {
    every: prepare(`jobs WHERE TRUE`),
    inState: byState((scans) => scans.every),
    own: prepare(`jobs INDEXED BY jobs_principal WHERE principal = @principal`),
    ownInState: byState((scans) => scans.own),
  };
}

export interface EventRow {
  version: number;
  type: string;
  data: string;
}

/** A read of the event log across jobs; a null filter does not filter. */
export interface EventLogParameters {
  after: number;
  upTo: number;
  principal: string | null;
  operation: string | null;
  /** A JSON array of event types. */
  types: string | null;
  limit: number;
}

export interface EventLogRow extends EventLogColumns {
  id: number;
}

/** Bind parameters as better-sqlite3 takes them: a tuple, or one object of named parameters. */
type BindArguments<Parameters> = Parameters extends unknown[] ? Parameters : [Parameters];

/**
 * A prepared statement as the driver uses it. better-sqlite3's own Statement type cannot be named
 * in emitted declarations, so the statements are typed with this one.
 */
export interface PreparedStatement<Parameters extends unknown[] | object, Result> {
  run(...parameters: BindArguments<Parameters>): BetterSqlite3.RunResult;
  get(...parameters: BindArguments<Parameters>): Result | undefined;
  all(...parameters: BindArguments<Parameters>): Result[];
}

/** better-sqlite3's own statement, for what rowsOf needs of it. */
interface RawStatement {
  readonly source: string;
  raw(toggle: boolean): RawStatement;
  columns(): Array<{ name: string }>;
  run(...parameters: unknown[]): BetterSqlite3.RunResult;
  get(...parameters: unknown[]): unknown[] | undefined;
  all(...parameters: unknown[]): unknown[][];
}

/**
 * The statement with its rows read as arrays (better-sqlite3's raw mode) and made into objects
 * here, by a function compiled once for the statement's columns that returns one object literal:
 * better-sqlite3 builds each row object property by property, which for a job's 23 to 26 columns
 * took about 4 µs a row, a third of a claim's or a finish's statement time (a micro-benchmark of
 * a 20,000-job drain's statements: claim 12.3 → 8.4 µs a job, finish 15.2 → 11.6 µs); objects of one shape also keep the code that
 * reads them monomorphic. For the statements that return whole job rows.
 */
function rowsOf<Parameters extends unknown[] | object, Result>(prepared: PreparedStatement<Parameters, Result>): PreparedStatement<Parameters, Result> {
  const statement = (prepared as unknown as RawStatement).raw(true);
  const names = statement.columns().map((column) => column.name);
  for (const name of names) if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`rowsOf: column ${name} is not a plain name`);
  const toRow = new Function('values', `return { ${names.map((name, index) => `${name}: values[${index}]`).join(', ')} };`) as (values: unknown[]) => Result;
  const rows: PreparedStatement<Parameters, Result> & { source: string } = {
    source: statement.source,
    run: (...parameters) => statement.run(...parameters),
    get: (...parameters) => {
      const values = statement.get(...parameters);
      return values === undefined ? undefined : toRow(values);
    },
    all: (...parameters) => statement.all(...parameters).map(toRow),
  };
  return rows;
}

interface PreparingDatabase {
  prepare<Parameters extends unknown[] | object = unknown[], Result = unknown>(source: string): PreparedStatement<Parameters, Result>;
}

/**
 * Every SQL statement asyncfirst runs against SQLite, prepared once per connection.
 * How a job is claimed, leased, finished or swept is read here and nowhere else.
 */
export function prepareStatements(connection: BetterSqlite3.Database) {
  const db = connection as unknown as PreparingDatabase;
  return {
    // --- acceptance ---------------------------------------------------------------------
    findIdempotencyKey: db.prepare<[string, string, string], { fingerprint: string; job_id: string; expires_at: number }>(
      `SELECT fingerprint, job_id, expires_at FROM idempotency_keys WHERE principal = ? AND operation = ? AND key = ?`,
    ),
    jobExists: db.prepare<[string], { one: number }>(`SELECT 1 AS one FROM jobs WHERE id = ?`),
    upsertIdempotencyKey: db.prepare<[string, string, string, string, string, number, number]>(
      `INSERT INTO idempotency_keys (principal, operation, key, fingerprint, job_id, created_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (principal, operation, key) DO UPDATE SET
         fingerprint = excluded.fingerprint, job_id = excluded.job_id, created_at = excluded.created_at, expires_at = excluded.expires_at`,
    ),
    /**
     * A new job at its position in the event log (seq: LogPositions). accept_logged 0: the row is
     * its job.queued in the log; 1: logAcceptance wrote that event as a row of its own.
     */
    insertJob: db.prepare<[number, string, string, string, string, number, string | null, string | null, number, number, number, number, number, number]>(
      `INSERT INTO jobs (seq, id, principal, operation, input, status, max_attempts, callback_url, trace_context, run_at, created_at, updated_at, priority, limited, accept_logged)
       VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    /** A follow-up (ctx.enqueue), stored with its parent's success: insertJob with the parent named. */
    insertFollowUp: db.prepare<[number, string, string, string, string, number, string | null, number, number, number, number, number, number, string]>(
      `INSERT INTO jobs (seq, id, principal, operation, input, status, max_attempts, trace_context, run_at, created_at, updated_at, priority, limited, accept_logged, parent_id)
       VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    /** The acceptance of a job that starts later, as a row of the log: job.queued of version 0 with its data (the start time a retry would change in the job row). */
    logAcceptance: db.prepare<[number, string, string, number]>(
      `INSERT INTO job_events (id, job_id, version, type, data, created_at) VALUES (?, ?, 0, 'job.queued', ?, ?)`,
    ),

    // --- reading and canceling ----------------------------------------------------------
    getJob: rowsOf(db.prepare<[string, string], SqliteJobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ? AND principal = ?`)),
    /** The jobs a job's success enqueued, oldest first; served by jobs_children, which holds only jobs with a parent. */
    childrenOfJob: db.prepare<[string], { id: string }>(`SELECT id FROM jobs INDEXED BY jobs_children WHERE parent_id = ? ORDER BY seq`),
    /** The job as GET /jobs/{id} shows it: with the schedule tick that made it. */
    getShownJob: rowsOf(db.prepare<[string, string], SqliteJobRow>(`SELECT ${JOB_COLUMNS}, schedule FROM jobs WHERE id = ? AND principal = ?`)),
    cancelQueuedJob: rowsOf(
      db.prepare<[string, number, number, string, string], SqliteJobRow>(
        `UPDATE jobs SET version = version + 1, status = 'canceled', error = ?, updated_at = ?, finished_at = ? WHERE id = ? AND principal = ? AND status = 'queued'
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),
    requestCancel: db.prepare<[number, string, string]>(
      `UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND principal = ? AND status = 'running'`,
    ),

    /** An ended (failed or canceled) job queued again as new: same id and fence count, a fresh attempt budget. A null principal: any. */
    retryEndedJob: rowsOf(
      db.prepare<[{ id: string; principal: string | null; now: number }], SqliteJobRow>(
        `UPDATE jobs SET version = version + 1, status = 'queued', attempts = 0, cancel_requested = 0, progress = NULL, result = NULL, result_location = NULL,
         error = NULL, run_at = @now, updated_at = @now, finished_at = NULL, lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL
       WHERE id = @id AND (@principal IS NULL OR principal = @principal) AND status IN ('failed', 'canceled')
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),
    jobPrincipal: db.prepare<[string], { principal: string }>(`SELECT principal FROM jobs WHERE id = ?`),
    getJobOfScope: rowsOf(
      db.prepare<[{ id: string; principal: string | null }], SqliteJobRow>(
        `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = @id AND (@principal IS NULL OR principal = @principal)`,
      ),
    ),

    // --- claiming and leasing -----------------------------------------------------------
    // A lease has expired when its expiry on this clock has passed: each statement below reads one
    // range of jobs_leased (lease_expires_at). A lease taken on another clock (another boot: see
    // lease-clock.ts) has expired whatever its number says; expireLeasesOfOtherClocks marks such
    // leases expired on this clock first, so that the range finds them too. INDEXED BY, as in
    // claimQueued: without statistics the planner takes jobs_status (status = 'running') instead
    // and reads every running job on every claim.
    /** Leases taken on another clock than ? (this one) are given this clock, expired. */
    expireLeasesOfOtherClocks: db.prepare<[string, string]>(
      `UPDATE jobs SET lease_epoch = ?, lease_expires_at = 0 WHERE status = 'running' AND lease_epoch IS NOT ?`,
    ),
    /** Abandoned (lease expired) jobs whose cancellation was asked end as canceled. Parameters: problem, now, now, lease clock now. */
    cancelAbandoned: rowsOf(
      db.prepare<[string, number, number, number], SqliteJobRow>(
        `UPDATE jobs INDEXED BY jobs_leased SET version = version + 1, status = 'canceled', error = ?, lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
       WHERE status = 'running' AND lease_expires_at <= ? AND cancel_requested = 1
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),
    /** Abandoned jobs with no attempts left end as failed rather than crash a worker forever. */
    failAbandoned: rowsOf(
      db.prepare<[string, number, number, number], SqliteJobRow>(
        `UPDATE jobs INDEXED BY jobs_leased SET version = version + 1, status = 'failed', error = ?, lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
       WHERE status = 'running' AND lease_expires_at <= ? AND attempts >= max_attempts
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),
    /** The other abandoned jobs, oldest lease first, with the owner that let go of each; a limited operation's are its own claim's. Parameters: lease clock now, limit. */
    abandonedJobs: db.prepare<[number, number], { seq: number; lease_owner: string | null }>(
      `SELECT seq, lease_owner FROM jobs INDEXED BY jobs_leased WHERE status = 'running' AND lease_expires_at <= ? AND limited = 0 ORDER BY lease_expires_at LIMIT ?`,
    ),
    takeOver: rowsOf(
      db.prepare<[string, string, number, number, number], SqliteClaimedRow>(
        `UPDATE jobs SET version = version + 1, attempts = attempts + 1, fence = fence + 1, lease_owner = ?, lease_epoch = ?, lease_expires_at = ?, updated_at = ?
       WHERE seq = ? AND status = 'running'
       RETURNING ${CLAIMED_COLUMNS}`,
      ),
    ),
    /**
     * INDEXED BY: inside this UPDATE, SQLite's planner preferred jobs_status (status, seq) and sorted
     * every queued job to find the first few due (52 µs a job instead of 8.6 µs with 10,000 queued);
     * jobs_queued yields them in order, so a claim reads only the rows it takes.
     */
    claimQueued: rowsOf(
      db.prepare<[string, string, number, number, number, number], SqliteClaimedRow>(
        `UPDATE jobs SET version = version + 1, status = 'running', attempts = attempts + 1, fence = fence + 1, lease_owner = ?, lease_epoch = ?, lease_expires_at = ?, updated_at = ?
       WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_queued WHERE status = 'queued' AND priority = 0 AND limited = 0 AND run_at <= ? ORDER BY run_at, seq LIMIT ?)
       RETURNING ${CLAIMED_COLUMNS}`,
      ),
    ),
    /**
     * claimQueued when some operation has a priority: the first due jobs above priority 0, of
     * priority 0 and below it, each read in order from its index (no sort of the queue), then the
     * best of those. Each row comes with its seq, for the driver to put them in claim order.
     */
    claimQueuedByPriority: rowsOf(
      db.prepare<[{ owner: string; epoch: string; leaseExpiresAt: number; now: number; limit: number }], SqliteClaimedRow & { seq: number }>(
        `UPDATE jobs SET version = version + 1, status = 'running', attempts = attempts + 1, fence = fence + 1, lease_owner = @owner, lease_epoch = @epoch,
         lease_expires_at = @leaseExpiresAt, updated_at = @now
       WHERE seq IN (SELECT seq FROM (
           SELECT * FROM (SELECT seq, priority, run_at FROM jobs INDEXED BY jobs_queued_by_priority
                          WHERE status = 'queued' AND priority <> 0 AND limited = 0 AND priority > 0 AND run_at <= @now ORDER BY priority DESC, run_at, seq LIMIT @limit)
           UNION ALL
           SELECT * FROM (SELECT seq, priority, run_at FROM jobs INDEXED BY jobs_queued
                          WHERE status = 'queued' AND priority = 0 AND limited = 0 AND run_at <= @now ORDER BY run_at, seq LIMIT @limit)
           UNION ALL
           SELECT * FROM (SELECT seq, priority, run_at FROM jobs INDEXED BY jobs_queued_by_priority
                          WHERE status = 'queued' AND priority <> 0 AND limited = 0 AND priority < 0 AND run_at <= @now ORDER BY priority DESC, run_at, seq LIMIT @limit)
         ) ORDER BY priority DESC, run_at, seq LIMIT @limit)
       RETURNING ${CLAIMED_COLUMNS}, seq`,
      ),
    ),

    // --- claiming a limited operation's jobs (in one write transaction: one writer at a time) ---
    operationLimit: db.prepare<[string], { recent_starts: string }>(`SELECT recent_starts FROM operation_limits WHERE operation = ?`),
    writeOperationLimit: db.prepare<[string, string]>(
      `INSERT INTO operation_limits (operation, recent_starts) VALUES (?, ?) ON CONFLICT (operation) DO UPDATE SET recent_starts = excluded.recent_starts`,
    ),
    /** The operation's running attempts, lapsed leases included. */
    limitedRunning: db.prepare<[string], { running: number }>(
      `SELECT count(*) AS running FROM jobs INDEXED BY jobs_limited_running WHERE status = 'running' AND limited = 1 AND operation = ?`,
    ),
    /** The operation's abandoned jobs that are taken over (those being canceled or out of attempts end in claimJobs). Parameters: operation, lease clock now, limit. */
    limitedAbandoned: db.prepare<[string, number, number], { seq: number; lease_owner: string | null }>(
      `SELECT seq, lease_owner FROM jobs INDEXED BY jobs_limited_running
       WHERE status = 'running' AND limited = 1 AND operation = ? AND lease_expires_at <= ? AND attempts < max_attempts AND cancel_requested = 0
       ORDER BY lease_expires_at LIMIT ?`,
    ),
    claimLimitedQueued: rowsOf(
      db.prepare<[{ owner: string; epoch: string; leaseExpiresAt: number; now: number; operation: string; limit: number }], SqliteClaimedRow & { seq: number }>(
        `UPDATE jobs SET version = version + 1, status = 'running', attempts = attempts + 1, fence = fence + 1, lease_owner = @owner, lease_epoch = @epoch,
         lease_expires_at = @leaseExpiresAt, updated_at = @now
       WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_limited_queued
                     WHERE status = 'queued' AND limited = 1 AND operation = @operation AND run_at <= @now ORDER BY priority DESC, run_at, seq LIMIT @limit)
       RETURNING ${CLAIMED_COLUMNS}, seq`,
      ),
    ),
    renewLease: db.prepare<[string, number, number, string, number], { cancel_requested: number }>(
      `UPDATE jobs SET lease_epoch = ?, lease_expires_at = ?, updated_at = ? WHERE id = ? AND fence = ? AND status = 'running'
       RETURNING cancel_requested`,
    ),

    reportProgress: rowsOf(
      db.prepare<[string, number, string, number], SqliteJobRow>(
        `UPDATE jobs SET version = version + 1, progress = ?, updated_at = ? WHERE id = ? AND fence = ? AND status = 'running'
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),

    // --- finishing (every write presents the fence it claimed with) ---------------------
    /**
     * Cancel wins: once DELETE /jobs/{id} has asked (cancel_requested), the attempt's outcome is
     * discarded and the job ends canceled with the given problem, whatever the handler did.
     */
    finishJob: rowsOf(
      db.prepare<[string, string | null, string | null, string, string | null, number, number, string, number], SqliteJobRow>(
        `UPDATE jobs SET version = version + 1,
         status = CASE WHEN cancel_requested = 1 THEN 'canceled' ELSE ? END,
         result = CASE WHEN cancel_requested = 1 THEN NULL ELSE ? END,
         result_location = CASE WHEN cancel_requested = 1 THEN NULL ELSE ? END,
         error = CASE WHEN cancel_requested = 1 THEN ? ELSE ? END,
         lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
       WHERE id = ? AND fence = ? AND status = 'running'
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),
    retryJob: rowsOf(
      db.prepare<[string | null, number, number, string, number], SqliteJobRow>(
        `UPDATE jobs SET version = version + 1, status = 'queued', error = ?, run_at = ?, lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, updated_at = ?
       WHERE id = ? AND fence = ? AND status = 'running' AND cancel_requested = 0
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),
    finishCanceledRequest: rowsOf(
      db.prepare<[string, number, number, string, number], SqliteJobRow>(
        `UPDATE jobs SET version = version + 1, status = 'canceled', error = ?, lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
       WHERE id = ? AND fence = ? AND status = 'running' AND cancel_requested = 1
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),
    releaseJob: rowsOf(
      db.prepare<[number, number, string, number], SqliteJobRow>(
        `UPDATE jobs SET version = version + 1, status = 'queued', attempts = attempts - 1, run_at = ?, lease_owner = NULL, lease_epoch = NULL, lease_expires_at = NULL, updated_at = ?
       WHERE id = ? AND fence = ? AND status = 'running' AND cancel_requested = 0
       RETURNING ${JOB_COLUMNS}`,
      ),
    ),

    // --- the event log ------------------------------------------------------------------
    insertEvent: db.prepare<[number, string, number, string, string, number]>(
      `INSERT INTO job_events (id, job_id, version, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    eventsAfter: db.prepare<[string, number], EventRow>(`SELECT version, type, data FROM job_events WHERE job_id = ? AND version > ? ORDER BY version`),
    /**
     * The event log across jobs after a position, up to `upTo` (the head read in the same read
     * transaction), in position order, which is commit order (one writer): the rows of job_events
     * merged with the jobs whose row is their acceptance (accept_logged = 0: a job.queued of
     * version 0, its data built from the row), each with the job's principal, operation and what
     * an acceptance's event is built from. @types is a JSON array or NULL.
     */
    eventLogAfter: db.prepare<[EventLogParameters], EventLogRow>(
      `SELECT e.id AS id, e.job_id AS job_id, e.version AS version, e.type AS type, e.data AS data,
              j.principal AS principal, j.operation AS operation, j.max_attempts AS max_attempts, j.created_at AS created_at
       FROM job_events e JOIN jobs j ON j.id = e.job_id
       WHERE e.id > @after AND e.id <= @upTo
         AND (@principal IS NULL OR j.principal = @principal)
         AND (@operation IS NULL OR j.operation = @operation)
         AND (@types IS NULL OR e.type IN (SELECT value FROM json_each(@types)))
       UNION ALL
       SELECT j.seq, j.id, 0, 'job.queued', NULL, j.principal, j.operation, j.max_attempts, j.created_at
       FROM jobs j
       WHERE j.seq > @after AND j.seq <= @upTo AND j.accept_logged = 0
         AND (@principal IS NULL OR j.principal = @principal)
         AND (@operation IS NULL OR j.operation = @operation)
         AND (@types IS NULL OR 'job.queued' IN (SELECT value FROM json_each(@types)))
       ORDER BY id LIMIT @limit`,
    ),
    /**
     * The last position the log has handed out: the highest of the jobs' and the events', and of
     * event_log_head, which keeps it when the sweeper deleted the newest of them (LogPositions).
     */
    eventLogHead: db.prepare<[], { head: number }>(
      `SELECT max(coalesce((SELECT max(seq) FROM jobs), 0), coalesce((SELECT max(id) FROM job_events), 0), (SELECT head FROM event_log_head)) AS head`,
    ),
    /** Before the sweeper deletes jobs and their events: the head is kept, so no position is handed out again. */
    keepEventLogHead: db.prepare<[]>(
      `UPDATE event_log_head SET head = max(head, coalesce((SELECT max(seq) FROM jobs), 0), coalesce((SELECT max(id) FROM job_events), 0))`,
    ),
    /** ? is a JSON array of job ids. */
    jobVersions: db.prepare<[string], { id: string; version: number }>(`SELECT id, version FROM jobs WHERE id IN (SELECT value FROM json_each(?))`),

    // --- listing and counting (for operators; nothing on a request's path) ---------------
    listJobs: listingStatements(db, JOB_COLUMNS),
    listJobsWithInput: listingStatements(db, CLAIMED_COLUMNS),
    /** Read off the counters the driver keeps in the transaction of every change (JobCounter), not counted. */
    /** Adds ? (negative: takes away) to the count of jobs of operation ? in state ?: once per pair and group commit. */
    addToJobCount: db.prepare<[string, string, number]>(
      `INSERT INTO job_counts (operation, status, count) VALUES (?, ?, ?) ON CONFLICT (operation, status) DO UPDATE SET count = count + excluded.count`,
    ),
    countJobs: db.prepare<[], { operation: string; status: string; count: number }>(
      `SELECT operation, status, count FROM job_counts WHERE count > 0 ORDER BY operation, status`,
    ),
    /** Served by the three queue indexes: it reads the due queued jobs only (and the queued jobs with a priority). */
    oldestDueJobs: db.prepare<[{ now: number }], { operation: string; due_since: number }>(
      `SELECT operation, min(due_since) AS due_since FROM (
         SELECT operation, min(run_at) AS due_since FROM jobs INDEXED BY jobs_queued
         WHERE status = 'queued' AND priority = 0 AND limited = 0 AND run_at <= @now GROUP BY operation
         UNION ALL
         SELECT operation, min(run_at) FROM jobs INDEXED BY jobs_queued_by_priority
         WHERE status = 'queued' AND priority <> 0 AND limited = 0 AND run_at <= @now GROUP BY operation
         UNION ALL
         SELECT operation, min(run_at) FROM jobs INDEXED BY jobs_limited_queued WHERE status = 'queued' AND limited = 1 AND run_at <= @now GROUP BY operation
       ) GROUP BY operation ORDER BY operation`,
    ),
    /** Served by the id index (ids begin with their acceptance time): it reads the jobs accepted since then only. */
    acceptedPerMinute: db.prepare<[string, number], { minute: number; count: number }>(
      `SELECT created_at / 60000 * 60000 AS minute, count(*) AS count FROM jobs WHERE id >= ? AND created_at >= ? GROUP BY minute ORDER BY minute`,
    ),
    /** Served by jobs_finished_by_operation: per operation that has finished jobs, one range of the jobs finished since then. */
    finishedPerMinute: db.prepare<[number], { minute: number; status: string; count: number }>(
      `WITH RECURSIVE ${FINISHED_OPERATIONS}
       SELECT jobs.finished_at / 60000 * 60000 AS minute, jobs.status AS status, count(*) AS count
       FROM finished JOIN jobs ON jobs.operation = finished.operation AND jobs.finished_at >= ?
       GROUP BY minute, jobs.status ORDER BY minute, jobs.status`,
    ),
    jobInput: db.prepare<[string, string], { input: string }>(`SELECT input FROM jobs WHERE id = ? AND principal = ?`),
    getIdempotencyRecord: db.prepare<[string, string, string], IdempotencyRow>(
      `SELECT principal, operation, key, fingerprint, job_id, created_at, expires_at FROM idempotency_keys WHERE principal = ? AND operation = ? AND key = ?`,
    ),
    countIdempotencyRecords: db.prepare<[], { count: number }>(`SELECT count(*) AS count FROM idempotency_keys`),

    // --- webhook deliveries -------------------------------------------------------------
    /** A webhook delivery (notifier NULL) or a notification (url empty). */
    insertDelivery: db.prepare<[string, string, string, string | null, string, string, number, number, number, number]>(
      `INSERT INTO webhook_deliveries (id, job_id, url, notifier, event_type, payload, status, max_attempts, next_attempt_at, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`,
    ),
    /** Due deliveries of one kind: webhooks (the 6th parameter 1: notifier IS NULL) or notifications (0). */
    claimDeliveries: db.prepare<[string, number, number, number, number, number, number], DeliveryRow>(
      `UPDATE webhook_deliveries SET attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, updated_at = ?
       WHERE id IN (SELECT id FROM webhook_deliveries
                    WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at <= ?) AND attempts < max_attempts
                      AND (notifier IS NULL) = ?
                    ORDER BY next_attempt_at LIMIT ?)
       RETURNING ${DELIVERY_COLUMNS}`,
    ),
    failAbandonedDeliveries: db.prepare<[number, number]>(
      `UPDATE webhook_deliveries SET status = 'failed', last_error = 'the sender stopped during the last attempt', lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
       WHERE status = 'pending' AND attempts >= max_attempts AND lease_expires_at <= ?`,
    ),
    recordDelivery: db.prepare<[string, number | null, string | null, number, number, string, number, string]>(
      `UPDATE webhook_deliveries SET status = ?, last_status = ?, last_error = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
       WHERE id = ? AND attempts = ? AND lease_owner = ?`,
    ),
    deliveriesOfJob: db.prepare<[string], DeliveryRow>(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = ? ORDER BY created_at, id`),

    // --- schedules ----------------------------------------------------------------------
    /** A schedule as a starting process declares it: a new one starts at @now; a known one keeps its last tick. */
    declareSchedule: db.prepare<[{ name: string; operation: string; cron: string; timezone: string; windowMs: number; now: number }], { last_tick: number }>(
      `INSERT INTO schedules (name, operation, cron, timezone, window_ms, last_tick, declared_at) VALUES (@name, @operation, @cron, @timezone, @windowMs, @now, @now)
       ON CONFLICT (name) DO UPDATE SET operation = excluded.operation, cron = excluded.cron, timezone = excluded.timezone, window_ms = excluded.window_ms,
         declared_at = excluded.declared_at, retired_at = NULL
       RETURNING last_tick`,
    ),
    /** ? is a JSON array of the declared names; the others are marked retired at ? (once). */
    retireSchedules: db.prepare<[number, string]>(
      `UPDATE schedules SET retired_at = ? WHERE retired_at IS NULL AND name NOT IN (SELECT value FROM json_each(?))`,
    ),
    /** Of every process that read last tick @from, one moves it. */
    advanceSchedule: db.prepare<[{ name: string; from: number; to: number }]>(`UPDATE schedules SET last_tick = @to WHERE name = @name AND last_tick = @from`),
    recordScheduleJob: db.prepare<[string, string]>(`UPDATE schedules SET last_job_id = ? WHERE name = ?`),
    markScheduleJob: db.prepare<[string, string]>(`UPDATE jobs SET schedule = ? WHERE id = ?`),
    scheduleLastTick: db.prepare<[string], { last_tick: number }>(`SELECT last_tick FROM schedules WHERE name = ?`),
    listSchedules: db.prepare<[], ScheduleRow>(
      `SELECT name, operation, cron, timezone, window_ms, last_tick, last_job_id, declared_at, retired_at FROM schedules ORDER BY name`,
    ),

    // --- health -------------------------------------------------------------------------
    /** The readiness probe's write: one row, rewritten. */
    writeProbe: db.prepare<[number]>(`INSERT INTO store_probe (id, checked_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`),
    readProbe: db.prepare<[], { tables: number }>(`SELECT count(*) AS tables FROM sqlite_master`),

    // --- retention ----------------------------------------------------------------------
    deleteExpiredKeys: db.prepare<[number, number]>(
      `DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)`,
    ),
    /** The operations that have finished jobs: a skip through jobs_finished_by_operation, one step per operation. */
    finishedOperations: db.prepare<[], { operation: string }>(
      `WITH RECURSIVE ${FINISHED_OPERATIONS} SELECT operation FROM finished WHERE operation IS NOT NULL`,
    ),
    /** One operation's jobs finished before a time: one range of jobs_finished_by_operation. */
    finishedJobsBefore: db.prepare<[string, number, number], { id: string; operation: string; status: string }>(
      `SELECT id, operation, status FROM jobs WHERE operation = ? AND finished_at <= ? LIMIT ?`,
    ),
    deleteJobEvents: db.prepare<[string]>(`DELETE FROM job_events WHERE job_id = ?`),
    deleteJobDeliveries: db.prepare<[string]>(`DELETE FROM webhook_deliveries WHERE job_id = ?`),
    deleteJob: db.prepare<[string]>(`DELETE FROM jobs WHERE id = ?`),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
