import type { ClaimedRow as BaseClaimedRow, EventLogColumns, JobRow } from '../rows.js';

/**
 * Every SQL statement asyncfirst runs against PostgreSQL. How a job is accepted, claimed,
 * leased, finished or swept is read here and nowhere else. Each has a name, so node-postgres
 * prepares it once per connection. Lease times are on the database's clock (DB_NOW), never a
 * machine's, so a skewed clock cannot take a lease early. Unqualified table names resolve
 * through the connection's search_path (DATABASE_SCHEMA).
 */

/** Now on the database's clock, in milliseconds since the epoch. */
const DB_NOW = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;
/**
 * DB_NOW read once per statement, for a WHERE clause: clock_timestamp() is volatile, so a
 * condition on it is checked row by row after the scan, which then read every index entry of
 * jobs_leased (the running jobs, and the dead entries of every job that ran since the last vacuum)
 * three times in each claim. As a scalar subquery (an InitPlan) its value bounds the index range.
 */
const DB_NOW_ONCE = `(SELECT ${DB_NOW})`;

const JOB_COLUMN_NAMES = `id, principal, operation, status, attempts, max_attempts, priority, cancel_requested, progress, callback_url, result, result_location, error, run_at, created_at, updated_at, finished_at, version, fence, lease_owner, parent_id`;

/**
 * The columns a job is read with (qualified by `table` in statements that read another table
 * too); its lease's expiry as what the lease has left, since a time on the database's clock
 * means nothing to the machines that read it.
 */
function jobColumns(table?: string, extra = ''): string {
  const of = (column: string) => (table === undefined ? column : `${table}.${column}`);
  const names = extra === '' ? JOB_COLUMN_NAMES : `${JOB_COLUMN_NAMES}, ${extra}`;
  return `${names.split(', ').map(of).join(', ')}, ${of('lease_expires_at')} - ${DB_NOW} AS lease_expires_in`;
}

const JOB_COLUMNS = jobColumns();
/** A claimed (or ended) row: the job, its input and its position. */
const CLAIM_COLUMNS = (table: string) => `${jobColumns(table, 'input, trace_context')}, ${table}.seq`;
const DELIVERY_COLUMNS = `id, job_id, url, notifier, event_type, payload, status, attempts, max_attempts, next_attempt_at, last_status, last_error, created_at, updated_at`;
/** Clears the lease of a job that leaves `running`. */
const NO_LEASE = `lease_owner = NULL, lease_expires_at = NULL`;

/** A job row as this driver reads it: what the lease has left, in milliseconds on the database's clock (null: no lease). */
export interface PostgresJobRow extends JobRow {
  lease_expires_in: number | null;
}

/** A claimed row; on a takeover it names the owner whose lease had expired. */
export interface ClaimedRow extends BaseClaimedRow {
  lease_expires_in: number | null;
  previous_owner?: string | null;
}

/** A row of one claim: claimed (job.running, a takeover naming its previous owner), or ended as abandoned. */
export interface ClaimRow extends ClaimedRow {
  seq: number;
  change: 'job.running' | 'job.canceled' | 'job.failed';
}

/** A listed row: its position, and its input when the listing asked for it. */
export interface ListedRow extends PostgresJobRow {
  seq: number;
  input?: string;
}

/**
 * Jobs newest first, backwards from the cursor, in one of three scans (src/store/listing-scans.ts):
 * every job (the primary key, seq), the jobs in one state (jobs_status), or one principal's jobs
 * in one state (jobs_principal_status); the other filters apply as it goes. $1 before seq,
 * $2 operation, $3 created after, $4 created before (a null one does not filter), $5 limit,
 * then $6 state and $7 principal as the scope uses them.
 */
const LISTING_SCOPES = { every: 'TRUE', inState: 'status = $6', ownInState: 'principal = $7 AND status = $6' } as const;
const listing = (columns: string, scope: keyof typeof LISTING_SCOPES) =>
  `SELECT seq, ${columns} FROM jobs
   WHERE ${LISTING_SCOPES[scope]}
     AND seq < $1
     AND ($2::text IS NULL OR operation = $2)
     AND ($3::bigint IS NULL OR created_at > $3)
     AND ($4::bigint IS NULL OR created_at < $4)
   ORDER BY seq DESC LIMIT $5`;

/**
 * The part of an acceptance statement that logs each job it created (the CTE `job`) as job.queued
 * of version 0 in the event log, in the same statement, no round trip more: with no data (the job
 * row says it all), unless the job starts later, whose event `data` is given (`from` joins it in).
 */
const logAcceptance = (data: string, from = 'job') => `accepted AS (
       INSERT INTO job_events (job_id, version, type, data, created_at) SELECT job.id, 0, 'job.queued', ${data}, job.created_at FROM ${from}
     )`;

/** A row of the event log across jobs; xid8 values arrive as decimal text. */
export interface EventLogRow extends EventLogColumns {
  horizon: string;
  held_back: boolean;
  xid: string | null;
  id: number | null;
}

export interface Statement {
  name: string;
  text: string;
}

const statement = (name: string, text: string): Statement => ({ name: `asyncfirst_${name}`, text });

/**
 * The operations that have finished jobs, as the rows of a CTE `finished(operation)` (its last row
 * NULL): each step reads the next operation from jobs_finished_by_operation, so it costs one
 * index probe per operation, however many jobs each has.
 */
const FINISHED_OPERATIONS = `finished(operation) AS (
     SELECT (SELECT operation FROM jobs WHERE finished_at IS NOT NULL ORDER BY operation LIMIT 1)
     UNION ALL
     SELECT (SELECT operation FROM jobs WHERE finished_at IS NOT NULL AND jobs.operation > finished.operation ORDER BY operation LIMIT 1)
     FROM finished WHERE finished.operation IS NOT NULL
   )`;

/** What is left of a claim's limit ($4) after its takeovers. */
const LEFT_AFTER_TAKEOVERS = `GREATEST(0, $4 - (SELECT count(*) FROM taken))`;
/** The due jobs of priority 0 with no limit (the plain queue), by run time and insertion. */
const PLAIN_DUE = `due AS (
       SELECT seq FROM jobs WHERE status = 'queued' AND priority = 0 AND NOT limited AND run_at <= $3 ORDER BY run_at, seq
       LIMIT ${LEFT_AFTER_TAKEOVERS} FOR UPDATE SKIP LOCKED
     )`;
/** The due jobs with no limit by priority: the first of each part, each read in order from its index, then the best of those. */
const DUE_BY_PRIORITY = `due_above AS (
       SELECT seq, priority, run_at FROM jobs WHERE status = 'queued' AND priority <> 0 AND NOT limited AND priority > 0 AND run_at <= $3
       ORDER BY priority DESC, run_at, seq LIMIT ${LEFT_AFTER_TAKEOVERS} FOR UPDATE SKIP LOCKED
     ), due_plain AS (
       SELECT seq, priority, run_at FROM jobs WHERE status = 'queued' AND priority = 0 AND NOT limited AND run_at <= $3
       ORDER BY run_at, seq LIMIT ${LEFT_AFTER_TAKEOVERS} FOR UPDATE SKIP LOCKED
     ), due_below AS (
       SELECT seq, priority, run_at FROM jobs WHERE status = 'queued' AND priority <> 0 AND NOT limited AND priority < 0 AND run_at <= $3
       ORDER BY priority DESC, run_at, seq LIMIT ${LEFT_AFTER_TAKEOVERS} FOR UPDATE SKIP LOCKED
     ), due AS (
       SELECT seq FROM (SELECT * FROM due_above UNION ALL SELECT * FROM due_plain UNION ALL SELECT * FROM due_below) AS candidates
       ORDER BY priority DESC, run_at, seq LIMIT ${LEFT_AFTER_TAKEOVERS}
     )`;

/**
 * Whether any running job's lease has lapsed (the CTE `lapsed` of a claim), which gates the claim's
 * three reads of the lapsed leases. Those are bitmap scans of jobs_leased, and a bitmap scan never
 * marks an index entry dead: each read the entry, and the heap tuple, of every job that finished
 * since the last vacuum with its lease since lapsed (in a schema never vacuumed, some 700 to 1,300
 * buffers read by every claim at 10,000 such jobs). The probe is a plain index scan that stops at
 * the first lapsed lease and marks the dead entries it passes, so the next claims skip them (some
 * 20 to 50 buffers per claim at the same 10,000 jobs). Almost always it finds none, and the scans
 * do not run; when it finds one, they run as before.
 */
const ANY_LAPSED = `(SELECT found FROM lapsed)`;

/**
 * The text of a claim with its due jobs chosen by `due` (a CTE named due, of seq): the comment of
 * SQL.claimJobs says what it does. A limited operation's jobs are never taken over or claimed here.
 */
function claimStatement(due: string): string {
  return `WITH lapsed AS (
       SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND lease_expires_at <= ${DB_NOW_ONCE}) AS found
     ), canceled AS (
       UPDATE jobs SET version = version + 1, status = 'canceled', error = $5, ${NO_LEASE}, updated_at = $3, finished_at = $3
       WHERE seq IN (SELECT seq FROM jobs WHERE status = 'running' AND lease_expires_at <= ${DB_NOW_ONCE} AND cancel_requested AND ${ANY_LAPSED} FOR UPDATE SKIP LOCKED)
       RETURNING ${CLAIM_COLUMNS('jobs')}, NULL::text AS previous_owner, 'job.canceled' AS change
     ), failed AS (
       UPDATE jobs SET version = version + 1, status = 'failed', error = $6, ${NO_LEASE}, updated_at = $3, finished_at = $3
       WHERE seq IN (SELECT seq FROM jobs WHERE status = 'running' AND lease_expires_at <= ${DB_NOW_ONCE} AND attempts >= max_attempts AND NOT cancel_requested
                     AND ${ANY_LAPSED} FOR UPDATE SKIP LOCKED)
       RETURNING ${CLAIM_COLUMNS('jobs')}, NULL::text AS previous_owner, 'job.failed' AS change
     ), abandoned AS (
       SELECT seq, lease_owner FROM jobs
       WHERE status = 'running' AND lease_expires_at <= ${DB_NOW_ONCE} AND attempts < max_attempts AND NOT cancel_requested AND NOT limited AND ${ANY_LAPSED}
       ORDER BY lease_expires_at LIMIT $4 FOR UPDATE SKIP LOCKED
     ), taken AS (
       UPDATE jobs SET version = version + 1, attempts = attempts + 1, fence = fence + 1, lease_owner = $1, lease_expires_at = ${DB_NOW} + $2, updated_at = $3
       FROM abandoned WHERE jobs.seq = abandoned.seq
       RETURNING ${CLAIM_COLUMNS('jobs')}, abandoned.lease_owner AS previous_owner, 'job.running' AS change
     ), ${due}, queued AS (
       UPDATE jobs SET version = version + 1, status = 'running', attempts = attempts + 1, fence = fence + 1,
         lease_owner = $1, lease_expires_at = ${DB_NOW} + $2, updated_at = $3
       FROM due WHERE jobs.seq = due.seq
       RETURNING ${CLAIM_COLUMNS('jobs')}, NULL::text AS previous_owner, 'job.running' AS change
     )
     SELECT * FROM canceled UNION ALL SELECT * FROM failed UNION ALL SELECT * FROM taken UNION ALL SELECT * FROM queued`;
}

export const SQL = {
  // --- acceptance ---------------------------------------------------------------------
  /**
   * The key record and the job in one statement. A live record is never rebound: ON CONFLICT
   * updates only a record past its expiry (judged on the row's newest version, after waiting for
   * a concurrent inserter to commit), and the job is inserted only when the record was written.
   * $1 principal, $2 operation, $3 key, $4 fingerprint, $5 job id, $6 now, $7 key expiry,
   * $8 input, $9 max attempts, $10 callback URL, $11 trace context, $12 channel, $13 notification,
   * $14 run time, $15 the acceptance's event data (NULL but for a job that starts later), $16 priority, $17 limited.
   */
  acceptJob: statement(
    'accept_job',
    `WITH key AS (
       INSERT INTO idempotency_keys AS k (principal, operation, key, fingerprint, job_id, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (principal, operation, key) DO UPDATE
         SET fingerprint = EXCLUDED.fingerprint, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
         WHERE k.expires_at <= EXCLUDED.created_at
       RETURNING k.job_id
     ), job AS (
       INSERT INTO jobs (id, principal, operation, input, status, max_attempts, callback_url, trace_context, run_at, created_at, updated_at, priority, limited)
       SELECT job_id, $1, $2, $8, 'queued', $9, $10, $11, $14::bigint, $6, $6, $16::integer, $17::boolean FROM key
       RETURNING id, created_at
     ), ${logAcceptance('$15::text')}
     SELECT id, pg_notify($12, $13) FROM job`,
  ),
  /**
   * The same for a batch, in the order of their keys (so concurrent batches take the key index's
   * locks in one order and cannot deadlock); returns the ids of the jobs created. $1 is the batch
   * as one JSON array of objects with the columns of `input` below (acceptBatchJson in the driver), which
   * node-postgres sends as it is: JSON.stringify writes it natively, where fifteen text arrays
   * cost a pass of node-postgres's array quoting over every value. $2 channel, $3 notification.
   */
  acceptJobs: statement(
    'accept_jobs',
    `WITH input AS (
       SELECT * FROM json_to_recordset($1::json)
         AS i(principal text, operation text, key text, fingerprint text, job_id text, now bigint, key_expires_at bigint, input text, max_attempts integer,
              callback_url text, trace_context text, run_at bigint, accepted_event text, priority integer, limited boolean)
     ), key AS (
       INSERT INTO idempotency_keys AS k (principal, operation, key, fingerprint, job_id, created_at, expires_at)
       SELECT principal, operation, key, fingerprint, job_id, now, key_expires_at FROM input
       ON CONFLICT (principal, operation, key) DO UPDATE
         SET fingerprint = EXCLUDED.fingerprint, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
         WHERE k.expires_at <= EXCLUDED.created_at
       RETURNING k.job_id
     ), job AS (
       INSERT INTO jobs (id, principal, operation, input, status, max_attempts, callback_url, trace_context, run_at, created_at, updated_at, priority, limited)
       SELECT i.job_id, i.principal, i.operation, i.input, 'queued', i.max_attempts, i.callback_url, i.trace_context, i.run_at, i.now, i.now, i.priority, i.limited
       FROM input i JOIN key ON key.job_id = i.job_id
       RETURNING id, created_at
     ), ${logAcceptance('i.accepted_event', 'job JOIN input i ON i.job_id = job.id')}
     -- One NOTIFY per created job, all with one payload: PostgreSQL delivers identical ones once.
     SELECT id, pg_notify($2, $3) FROM job`,
  ),
  /**
   * A succeeded parent's follow-ups (ctx.enqueue), in its finish's transaction: acceptJobs with each
   * job's parent named, inserted in the order given (the order the handlers asked for them: seq, by
   * which children are listed, follows it), no NOTIFY of its own (the finish's events send one).
   * A key a live record binds makes no job. Returns the ids of the jobs created. Unlike acceptJobs
   * the keys are not sorted: each is derived from its parent's id, which only this transaction finishes.
   * $1 is the follow-ups as acceptJobs takes its batch (acceptBatchJson), each with its parent and
   * its place in the order given (`ord`).
   */
  acceptFollowUps: statement(
    'accept_follow_ups',
    `WITH input AS (
       SELECT * FROM json_to_recordset($1::json)
         AS i(principal text, operation text, key text, fingerprint text, job_id text, now bigint, key_expires_at bigint, input text, max_attempts integer,
              trace_context text, run_at bigint, accepted_event text, parent_id text, priority integer, limited boolean, ord integer)
     ), key AS (
       INSERT INTO idempotency_keys AS k (principal, operation, key, fingerprint, job_id, created_at, expires_at)
       SELECT principal, operation, key, fingerprint, job_id, now, key_expires_at FROM input
       ON CONFLICT (principal, operation, key) DO UPDATE
         SET fingerprint = EXCLUDED.fingerprint, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
         WHERE k.expires_at <= EXCLUDED.created_at
       RETURNING k.job_id
     ), job AS (
       INSERT INTO jobs (id, principal, operation, input, status, max_attempts, trace_context, run_at, created_at, updated_at, parent_id, priority, limited)
       SELECT i.job_id, i.principal, i.operation, i.input, 'queued', i.max_attempts, i.trace_context, i.run_at, i.now, i.now, i.parent_id, i.priority, i.limited
       FROM input i JOIN key ON key.job_id = i.job_id ORDER BY i.ord
       RETURNING id, created_at
     ), ${logAcceptance('i.accepted_event', 'job JOIN input i ON i.job_id = job.id')}
     SELECT id FROM job`,
  ),
  /** The record that binds a key, and whether its job still exists (the sweeper may have removed it). */
  findKey: statement(
    'find_key',
    `SELECT k.fingerprint, k.job_id, EXISTS (SELECT 1 FROM jobs WHERE jobs.id = k.job_id) AS job_exists
     FROM idempotency_keys k WHERE k.principal = $1 AND k.operation = $2 AND k.key = $3`,
  ),
  /** Rebinds a record whose job was swept, only if it still names that job ($12), and inserts the new job; $13 channel, $14 notification, $15 run time, $16 event data, $17 priority, $18 limited. */
  rebindKey: statement(
    'rebind_key',
    `WITH key AS (
       UPDATE idempotency_keys SET fingerprint = $4, job_id = $5, created_at = $6, expires_at = $7
       WHERE principal = $1 AND operation = $2 AND key = $3 AND job_id = $12
       RETURNING job_id
     ), job AS (
       INSERT INTO jobs (id, principal, operation, input, status, max_attempts, callback_url, trace_context, run_at, created_at, updated_at, priority, limited)
       SELECT job_id, $1, $2, $8, 'queued', $9, $10, $11, $15::bigint, $6, $6, $17::integer, $18::boolean FROM key
       RETURNING id, created_at
     ), ${logAcceptance('$16::text')}
     SELECT id, pg_notify($13, $14) FROM job`,
  ),

  // --- reading --------------------------------------------------------------------------
  getJob: statement('get_job', `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1 AND principal = $2`),
  /**
   * The job as GET /jobs/{id} shows it: with the schedule tick that made it and the ids of the
   * jobs its success enqueued, oldest first (null: none), in one round trip; the children are
   * served by jobs_children, which holds only jobs with a parent. $1 id, $2 principal.
   */
  getJobWithChildren: statement(
    'get_job_with_children',
    `SELECT ${JOB_COLUMNS}, schedule, (SELECT array_agg(c.id ORDER BY c.seq) FROM jobs c WHERE c.parent_id = jobs.id) AS children
     FROM jobs WHERE id = $1 AND principal = $2`,
  ),
  /** The job and its events after a version, in one statement (one snapshot). */
  jobWithEvents: statement(
    'job_with_events',
    `SELECT ${jobColumns('j')}, e.version AS event_version, e.type AS event_type, e.data AS event_data
     FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id AND e.version > $3
     WHERE j.id = $1 AND j.principal = $2
     ORDER BY e.version`,
  ),
  jobVersions: statement('job_versions', `SELECT id, version FROM jobs WHERE id = ANY($1::text[])`),
  deliveriesOfJob: statement('deliveries_of_job', `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, id`),

  // --- listing and counting (for operators; nothing on a request's path) ---------------
  listEveryJob: statement('list_every_job', listing(JOB_COLUMNS, 'every')),
  listEveryJobWithInput: statement('list_every_job_with_input', listing(jobColumns(undefined, 'input'), 'every')),
  listJobsInState: statement('list_jobs_in_state', listing(JOB_COLUMNS, 'inState')),
  listJobsInStateWithInput: statement('list_jobs_in_state_with_input', listing(jobColumns(undefined, 'input'), 'inState')),
  listOwnJobsInState: statement('list_own_jobs_in_state', listing(JOB_COLUMNS, 'ownInState')),
  listOwnJobsInStateWithInput: statement('list_own_jobs_in_state_with_input', listing(jobColumns(undefined, 'input'), 'ownInState')),
  /** Ordered as SQLite orders text (by code point), whatever the database's collation. */
  /** Serializes folds of the counters (in one schema), so each fold sees the one before it committed. */
  lockJobCounts: statement('lock_job_counts', `SELECT pg_advisory_xact_lock(hashtext('asyncfirst:job_counts:' || current_schema()))`),
  /**
   * The counters migration 3's triggers keep: the deltas folded into one row per operation and state
   * (a delta appended meanwhile by a transaction not yet committed stays, and is folded next time).
   */
  countJobs: statement(
    'count_jobs',
    `WITH folded AS (
       DELETE FROM job_count_deltas RETURNING operation, status, delta
     ), kept AS (
       INSERT INTO job_count_deltas (operation, status, delta)
       SELECT operation, status, sum(delta)::bigint FROM folded GROUP BY operation, status HAVING sum(delta) <> 0
       RETURNING operation, status, delta
     )
     SELECT operation, status, delta AS count FROM kept WHERE delta > 0 ORDER BY operation COLLATE "C", status COLLATE "C"`,
  ),
  /** Served by the three queue indexes (plain, by priority, limited): it reads the queued jobs only. */
  oldestDueJobs: statement(
    'oldest_due_jobs',
    `SELECT operation, min(due_since) AS due_since FROM (
       SELECT operation, min(run_at) AS due_since FROM jobs WHERE status = 'queued' AND priority = 0 AND NOT limited AND run_at <= $1 GROUP BY operation
       UNION ALL
       SELECT operation, min(run_at) FROM jobs WHERE status = 'queued' AND priority <> 0 AND NOT limited AND run_at <= $1 GROUP BY operation
       UNION ALL
       SELECT operation, min(run_at) FROM jobs WHERE status = 'queued' AND limited AND run_at <= $1 GROUP BY operation
     ) AS due GROUP BY operation ORDER BY operation COLLATE "C"`,
  ),
  /** Served by the id index (ids begin with their acceptance time): it reads the jobs accepted since then only. */
  acceptedPerMinute: statement(
    'accepted_per_minute',
    `SELECT created_at / 60000 * 60000 AS minute, count(*) AS count FROM jobs WHERE id >= $1 AND created_at >= $2 GROUP BY minute ORDER BY minute`,
  ),
  /** Served by jobs_finished_by_operation: per operation that has finished jobs, one range of the jobs finished since then. */
  finishedPerMinute: statement(
    'finished_per_minute',
    // The aggregate inside LATERAL keeps it one parameterized range per operation (a plain join
    // is planned as a hash join over every finished job's index entry).
    `WITH RECURSIVE ${FINISHED_OPERATIONS}
     SELECT minute, status, sum(count)::bigint AS count FROM finished CROSS JOIN LATERAL (
       SELECT finished_at / 60000 * 60000 AS minute, status, count(*) AS count FROM jobs
       WHERE jobs.operation = finished.operation AND jobs.finished_at >= $1 GROUP BY 1, 2
     ) AS per_operation
     GROUP BY minute, status ORDER BY minute, status COLLATE "C"`,
  ),
  jobInput: statement('job_input', `SELECT input FROM jobs WHERE id = $1 AND principal = $2`),
  getIdempotencyRecord: statement(
    'get_idempotency_record',
    `SELECT principal, operation, key, fingerprint, job_id, created_at, expires_at FROM idempotency_keys WHERE principal = $1 AND operation = $2 AND key = $3`,
  ),
  countIdempotencyRecords: statement('count_idempotency_records', `SELECT count(*) AS count FROM idempotency_keys`),

  // --- canceling ------------------------------------------------------------------------
  cancelQueuedJob: statement(
    'cancel_queued_job',
    `UPDATE jobs SET version = version + 1, status = 'canceled', error = $1, updated_at = $2, finished_at = $2
     WHERE id = $3 AND principal = $4 AND status = 'queued'
     RETURNING ${JOB_COLUMNS}`,
  ),
  requestCancel: statement(
    'request_cancel',
    `UPDATE jobs SET cancel_requested = true, updated_at = $1 WHERE id = $2 AND principal = $3 AND status = 'running' RETURNING ${JOB_COLUMNS}`,
  ),

  /** An ended (failed or canceled) job queued again as new: same id and fence count, a fresh attempt budget. $1 id, $2 principal (null: any), $3 now. */
  retryEndedJob: statement(
    'retry_ended_job',
    `UPDATE jobs SET version = version + 1, status = 'queued', attempts = 0, cancel_requested = false, progress = NULL, result = NULL, result_location = NULL,
       error = NULL, run_at = $3, updated_at = $3, finished_at = NULL, ${NO_LEASE}
     WHERE id = $1 AND ($2::text IS NULL OR principal = $2) AND status IN ('failed', 'canceled')
     RETURNING ${JOB_COLUMNS}`,
  ),
  jobPrincipal: statement('job_principal', `SELECT principal FROM jobs WHERE id = $1`),
  getJobOfScope: statement('get_job_of_scope', `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1 AND ($2::text IS NULL OR principal = $2)`),

  // --- claiming and leasing (a lease has expired when lease_expires_at <= DB_NOW) ---------
  /**
   * One claim, in one statement (one round trip): abandoned jobs (their lease expired) whose
   * cancel was asked end canceled; abandoned ones with no attempts left end failed; the others
   * are taken over, oldest lease first, naming the owner that let go; then due queued jobs fill
   * what is left of the limit, by run time then insertion (those of priority 0; claimJobsByPriority
   * takes every priority). Rows other claimers hold are skipped. A limited operation's jobs are
   * neither taken over nor claimed here, but in claimLimitedJobs, under the operation's lock.
   * The four parts touch disjoint rows (the guards partition them), so each row changes once.
   * A job being canceled is never failed or taken over: a cancel committed after this statement
   * looked (or while it skipped the row as locked) was answered 202, so the job must end
   * canceled, by the next claim. Each row says what happened to it (`change`). The first three
   * parts read jobs_leased only when a probe of it finds a lapsed lease (see ANY_LAPSED).
   * $1 owner, $2 lease ms, $3 now, $4 limit, $5 the canceled-while-running problem, $6 the abandoned problem.
   */
  claimJobs: statement('claim_jobs', claimStatement(PLAIN_DUE)),
  /**
   * claimJobs when some operation has a priority: the first due jobs above priority 0, of priority
   * 0 and below it, each read in order from its index, then the best of those. Rows locked but not
   * taken stay locked (skipped by other claims) until this transaction commits, a moment later.
   */
  claimJobsByPriority: statement('claim_jobs_by_priority', claimStatement(DUE_BY_PRIORITY)),

  // --- claiming a limited operation's jobs (one transaction, holding its operation_limits row) ---
  /** $1 operation. Waits for a claim of the operation in another process to commit; with now on the database's clock. */
  lockOperationLimit: statement('lock_operation_limit', `SELECT recent_starts, ${DB_NOW} AS now FROM operation_limits WHERE operation = $1 FOR UPDATE`),
  /** $1 operation: the row the claims of its jobs lock, made by the first. */
  addOperationLimit: statement('add_operation_limit', `INSERT INTO operation_limits (operation) VALUES ($1) ON CONFLICT (operation) DO NOTHING`),
  /**
   * $1 operation: its running attempts, lapsed leases included. Under READ COMMITTED this statement's
   * snapshot is taken after the lock was granted, so it sees every claim of the operation that held
   * the lock before (they committed to release it).
   */
  limitedRunning: statement('limited_running', `SELECT count(*)::integer AS running FROM jobs WHERE status = 'running' AND limited AND operation = $1`),
  /** $1 operation, $2 the rate limit's start times. */
  writeOperationLimit: statement('write_operation_limit', `UPDATE operation_limits SET recent_starts = $2::bigint[] WHERE operation = $1`),
  /**
   * The operation's abandoned jobs taken over (up to $5; those being canceled or out of attempts
   * end in claimJobs), then its due jobs by priority, run time and insertion, up to $6 starts in
   * all. $1 owner, $2 lease ms, $3 now, $4 operation, $5 takeovers, $6 starts.
   */
  claimLimitedJobs: statement(
    'claim_limited_jobs',
    `WITH abandoned AS (
       SELECT seq, lease_owner FROM jobs
       WHERE status = 'running' AND limited AND operation = $4 AND lease_expires_at <= ${DB_NOW_ONCE} AND attempts < max_attempts AND NOT cancel_requested
       ORDER BY lease_expires_at LIMIT $5 FOR UPDATE SKIP LOCKED
     ), taken AS (
       UPDATE jobs SET version = version + 1, attempts = attempts + 1, fence = fence + 1, lease_owner = $1, lease_expires_at = ${DB_NOW} + $2, updated_at = $3
       FROM abandoned WHERE jobs.seq = abandoned.seq
       RETURNING ${CLAIM_COLUMNS('jobs')}, abandoned.lease_owner AS previous_owner, 'job.running' AS change
     ), due AS (
       SELECT seq FROM jobs WHERE status = 'queued' AND limited AND operation = $4 AND run_at <= $3 ORDER BY priority DESC, run_at, seq
       LIMIT GREATEST(0, LEAST($6, $5 - (SELECT count(*) FROM taken))) FOR UPDATE SKIP LOCKED
     ), queued AS (
       UPDATE jobs SET version = version + 1, status = 'running', attempts = attempts + 1, fence = fence + 1,
         lease_owner = $1, lease_expires_at = ${DB_NOW} + $2, updated_at = $3
       FROM due WHERE jobs.seq = due.seq
       RETURNING ${CLAIM_COLUMNS('jobs')}, NULL::text AS previous_owner, 'job.running' AS change
     )
     SELECT * FROM taken UNION ALL SELECT * FROM queued`,
  ),
  /** $1 lease ms, $2 now, $3 id, $4 fence. */
  renewLease: statement(
    'renew_lease',
    `UPDATE jobs SET lease_expires_at = ${DB_NOW} + $1, updated_at = $2 WHERE id = $3 AND fence = $4 AND status = 'running' RETURNING cancel_requested`,
  ),
  reportProgress: statement(
    'report_progress',
    `UPDATE jobs SET version = version + 1, progress = $1, updated_at = $2 WHERE id = $3 AND fence = $4 AND status = 'running' RETURNING ${JOB_COLUMNS}`,
  ),

  // --- finishing (every write presents the fence it claimed with) ---------------------
  /**
   * Cancel wins: once a cancel was asked, the outcome is discarded and the job ends canceled with
   * $4. $1 status, $2 result, $3 location, $5 error, $6 now, $7 id, $8 fence.
   */
  finishJob: statement(
    'finish_job',
    `UPDATE jobs SET version = version + 1,
       status = CASE WHEN cancel_requested THEN 'canceled' ELSE $1 END,
       result = CASE WHEN cancel_requested THEN NULL ELSE $2 END,
       result_location = CASE WHEN cancel_requested THEN NULL ELSE $3 END,
       error = CASE WHEN cancel_requested THEN $4 ELSE $5 END,
       ${NO_LEASE}, updated_at = $6, finished_at = $6
     WHERE id = $7 AND fence = $8 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
  ),
  /**
   * finishJob for a batch, as arrays sorted by job id. $1 ids, $2 fences, $3 statuses, $4 results,
   * $5 locations, $6 errors, $7 nows, $8 the canceled problem.
   */
  finishJobs: statement(
    'finish_jobs',
    `UPDATE jobs SET version = jobs.version + 1,
       status = CASE WHEN jobs.cancel_requested THEN 'canceled' ELSE f.status END,
       result = CASE WHEN jobs.cancel_requested THEN NULL ELSE f.result END,
       result_location = CASE WHEN jobs.cancel_requested THEN NULL ELSE f.location END,
       error = CASE WHEN jobs.cancel_requested THEN $8 ELSE f.error END,
       ${NO_LEASE}, updated_at = f.now, finished_at = f.now
     FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) AS f(id, fence, status, result, location, error, now)
     WHERE jobs.id = f.id AND jobs.fence = f.fence AND jobs.status = 'running'
     RETURNING ${jobColumns('jobs')}`,
  ),
  /** $1 error, $2 run at, $3 now, $4 id, $5 fence. */
  retryJob: statement(
    'retry_job',
    `UPDATE jobs SET version = version + 1, status = 'queued', error = $1, run_at = $2, ${NO_LEASE}, updated_at = $3
     WHERE id = $4 AND fence = $5 AND status = 'running' AND NOT cancel_requested
     RETURNING ${JOB_COLUMNS}`,
  ),
  /** $1 run at, $2 now, $3 id, $4 fence. */
  releaseJob: statement(
    'release_job',
    `UPDATE jobs SET version = version + 1, status = 'queued', attempts = attempts - 1, run_at = $1, ${NO_LEASE}, updated_at = $2
     WHERE id = $3 AND fence = $4 AND status = 'running' AND NOT cancel_requested
     RETURNING ${JOB_COLUMNS}`,
  ),
  /** $1 problem, $2 now, $3 id, $4 fence. */
  finishCanceledRequest: statement(
    'finish_canceled_request',
    `UPDATE jobs SET version = version + 1, status = 'canceled', error = $1, ${NO_LEASE}, updated_at = $2, finished_at = $2
     WHERE id = $3 AND fence = $4 AND status = 'running' AND cancel_requested
     RETURNING ${JOB_COLUMNS}`,
  ),

  // --- what a change records, and the notification of its commit -------------------------
  /**
   * The events of one transaction, as arrays; then NOTIFY ($6 channel, $7 payload), delivered at
   * COMMIT. `out_of_order` is true when a job's previous event was written by a transaction with a
   * larger id than this one (this one took its id, then waited for that one's row lock): the log
   * across jobs is read in transaction-id order, so this event would come before the one it
   * follows. The driver then runs the transaction again, under a new, larger id.
   * The previous event is looked up per inserted row, a scalar subquery on job_events' primary key:
   * as a join, a connection that planned the statement while job_events was small (the first
   * minutes of a new schema, with no ANALYZE since) kept a hash join over a scan of the whole log,
   * which grew with every job run (11 ms per claim and finish at 24,000 events, against 0.08 ms).
   */
  insertEvents: statement(
    'insert_events',
    `WITH inserted AS (
       INSERT INTO job_events (job_id, version, type, data, created_at)
       SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], $5::bigint[])
       RETURNING job_id, version, xid
     )
     SELECT pg_notify($6, $7), EXISTS (
       SELECT 1 FROM inserted i WHERE (SELECT e.xid FROM job_events e WHERE e.job_id = i.job_id AND e.version = i.version - 1) > i.xid
     ) AS out_of_order`,
  ),
  /**
   * The event log across jobs after the position ($1 xid, $2 id), in (xid, id) order, taking only
   * events of transactions older than the oldest still running (the snapshot's xmin, `horizon`):
   * those have all committed (or rolled back) and every transaction yet to write gets a larger
   * id, so a reader that moved past a position can never see an event appear before it. One row
   * even when no event matches, for the horizon and `held_back` (committed events past the
   * position wait for an older transaction). Filters $3 principal, $4 operation, $5 event types
   * (a null one does not filter), $6 limit. Served by job_events_log (xid, id).
   */
  readEventLog: statement(
    'read_event_log',
    `SELECT h.horizon, EXISTS (SELECT 1 FROM job_events WHERE xid >= h.horizon AND (xid, id) > ($1::xid8, $2::bigint)) AS held_back, ev.*
     FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) AS h
     LEFT JOIN LATERAL (
       SELECT e.xid, e.id, e.job_id, e.version, e.type, e.data, j.principal, j.operation, j.max_attempts, j.created_at
       FROM job_events e JOIN jobs j ON j.id = e.job_id
       WHERE (e.xid, e.id) > ($1::xid8, $2::bigint) AND e.xid < h.horizon
         AND ($3::text IS NULL OR j.principal = $3)
         AND ($4::text IS NULL OR j.operation = $4)
         AND ($5::text[] IS NULL OR e.type = ANY($5::text[]))
       ORDER BY e.xid, e.id LIMIT $6
     ) AS ev ON true
     ORDER BY ev.xid, ev.id`,
  ),
  /** Every event of a transaction older than this one has committed: (horizon, 0) is after all of them. */
  eventLogHead: statement('event_log_head', `SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon`),
  /** Webhook deliveries ($8 notifier NULL) and notifications ($3 url empty) of one transaction, as arrays; $7 now. */
  insertDeliveries: statement(
    'insert_deliveries',
    `INSERT INTO webhook_deliveries (id, job_id, url, notifier, event_type, payload, status, max_attempts, next_attempt_at, created_at, updated_at)
     SELECT id, job_id, url, notifier, event_type, payload, 'pending', max_attempts, $7, $7, $7
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $8::text[]) AS d(id, job_id, url, event_type, payload, max_attempts, notifier)`,
  ),
  notify: statement('notify', `SELECT pg_notify($1, $2)`),

  // --- webhook deliveries -------------------------------------------------------------
  /** $1 now. Delivery leases are on the database clock too. */
  failAbandonedDeliveries: statement(
    'fail_abandoned_deliveries',
    `UPDATE webhook_deliveries SET status = 'failed', last_error = 'the sender stopped during the last attempt', lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
     WHERE status = 'pending' AND attempts >= max_attempts AND lease_expires_at <= ${DB_NOW_ONCE}`,
  ),
  /** $1 owner, $2 lease ms, $3 now, $4 limit, $5 true: webhook deliveries (notifier IS NULL), false: notifications. */
  claimDeliveries: statement(
    'claim_deliveries',
    `WITH due AS (
       SELECT id FROM webhook_deliveries
       WHERE status = 'pending' AND next_attempt_at <= $3 AND (lease_expires_at IS NULL OR lease_expires_at <= ${DB_NOW_ONCE}) AND attempts < max_attempts
         AND (notifier IS NULL) = $5::boolean
       ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED
     )
     UPDATE webhook_deliveries SET attempts = attempts + 1, lease_owner = $1, lease_expires_at = ${DB_NOW} + $2, updated_at = $3
     FROM due WHERE webhook_deliveries.id = due.id
     RETURNING webhook_deliveries.${DELIVERY_COLUMNS.split(', ').join(', webhook_deliveries.')}`,
  ),
  /** $1 status, $2 http status, $3 error, $4 next attempt, $5 now, $6 id, $7 attempts, $8 owner. */
  recordDelivery: statement(
    'record_delivery',
    `UPDATE webhook_deliveries SET status = $1, last_status = $2, last_error = $3, next_attempt_at = $4, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5
     WHERE id = $6 AND attempts = $7 AND lease_owner = $8`,
  ),

  // --- retention and health -----------------------------------------------------------
  /** $1 now, $2 limit. */
  deleteExpiredKeys: statement(
    'delete_expired_keys',
    `DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  ),
  /** The operations that have finished jobs: a skip through jobs_finished_by_operation, one step per operation. */
  finishedOperations: statement('finished_operations', `WITH RECURSIVE ${FINISHED_OPERATIONS} SELECT operation FROM finished WHERE operation IS NOT NULL`),
  /** Operation $1's jobs finished before $2 (at most $3, one range of jobs_finished_by_operation), with their events and deliveries. */
  deleteFinishedJobs: statement(
    'delete_finished_jobs',
    `WITH doomed AS (
       SELECT id FROM jobs WHERE operation = $1 AND finished_at <= $2 LIMIT $3 FOR UPDATE SKIP LOCKED
     ), events AS (
       DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed)
     ), deliveries AS (
       DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM doomed)
     )
     DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)`,
  ),
  // --- schedules ------------------------------------------------------------------------
  /** A schedule as a starting process declares it: a new one starts at $6; a known one keeps its last tick. */
  declareSchedule: statement(
    'declare_schedule',
    `INSERT INTO schedules (name, operation, cron, timezone, window_ms, last_tick, declared_at) VALUES ($1, $2, $3, $4, $5, $6, $6)
     ON CONFLICT (name) DO UPDATE SET operation = EXCLUDED.operation, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, window_ms = EXCLUDED.window_ms,
       declared_at = EXCLUDED.declared_at, retired_at = NULL
     RETURNING last_tick`,
  ),
  /** The schedules not in $2 (the declared names) are marked retired at $1 (once). */
  retireSchedules: statement('retire_schedules', `UPDATE schedules SET retired_at = $1 WHERE retired_at IS NULL AND NOT (name = ANY($2::text[]))`),
  /** Of every process that read last tick $2, one moves it to $3 (the others wait for its commit, then match nothing). */
  advanceSchedule: statement('advance_schedule', `UPDATE schedules SET last_tick = $3 WHERE name = $1 AND last_tick = $2 RETURNING last_tick`),
  recordScheduleJob: statement('record_schedule_job', `UPDATE schedules SET last_job_id = $2 WHERE name = $1`),
  markScheduleJob: statement('mark_schedule_job', `UPDATE jobs SET schedule = $2 WHERE id = $1`),
  scheduleLastTick: statement('schedule_last_tick', `SELECT last_tick FROM schedules WHERE name = $1`),
  listSchedules: statement(
    'list_schedules',
    `SELECT name, operation, cron, timezone, window_ms, last_tick, last_job_id, declared_at, retired_at FROM schedules ORDER BY name`,
  ),
  /** Readiness: a round trip, and whether this server takes writes (a standby or a demoted primary does not). */
  ping: statement('ping', `SELECT current_setting('transaction_read_only') AS read_only`),
} as const;
