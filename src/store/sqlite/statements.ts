import type BetterSqlite3 from 'better-sqlite3';

/** The columns a job is read with (GET /jobs/{id}). */
const JOB_COLUMNS = `id, principal, operation, status, attempts, max_attempts, cancel_requested, result, error, run_at, created_at, updated_at, finished_at`;
const CLAIMED_COLUMNS = `id, principal, operation, input, attempts, max_attempts, fence`;

export interface JobRow {
  id: string;
  principal: string;
  operation: string;
  status: string;
  attempts: number;
  max_attempts: number;
  cancel_requested: number;
  result: string | null;
  error: string | null;
  run_at: number;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

export interface ClaimedRow {
  id: string;
  principal: string;
  operation: string;
  input: string;
  attempts: number;
  max_attempts: number;
  fence: number;
}

/**
 * Every SQL statement asyncfirst runs against SQLite, prepared once per connection.
 * How a job is claimed, leased, finished or swept is read here and nowhere else.
 */
export function prepareStatements(db: BetterSqlite3.Database) {
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
    insertJob: db.prepare<[string, string, string, string, number, number, number, number]>(
      `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at)
       VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)`,
    ),

    // --- reading and canceling ----------------------------------------------------------
    getJob: db.prepare<[string, string], JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ? AND principal = ?`),
    cancelQueuedJob: db.prepare<[string, number, number, string, string]>(
      `UPDATE jobs SET status = 'canceled', error = ?, updated_at = ?, finished_at = ? WHERE id = ? AND principal = ? AND status = 'queued'`,
    ),
    requestCancel: db.prepare<[number, string, string]>(
      `UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND principal = ? AND status = 'running'`,
    ),

    // --- claiming and leasing -----------------------------------------------------------
    /** Abandoned (lease expired) jobs whose cancellation was asked end as canceled. */
    cancelAbandoned: db.prepare<[string, number, number, number]>(
      `UPDATE jobs SET status = 'canceled', error = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
       WHERE status = 'running' AND lease_expires_at <= ? AND cancel_requested = 1`,
    ),
    /** Abandoned jobs with no attempts left end as failed rather than crash a worker forever. */
    failAbandoned: db.prepare<[string, number, number, number]>(
      `UPDATE jobs SET status = 'failed', error = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
       WHERE status = 'running' AND lease_expires_at <= ? AND attempts >= max_attempts`,
    ),
    takeOverAbandoned: db.prepare<[string, number, number, number, number], ClaimedRow>(
      `UPDATE jobs SET attempts = attempts + 1, fence = fence + 1, lease_owner = ?, lease_expires_at = ?, updated_at = ?
       WHERE seq IN (SELECT seq FROM jobs WHERE status = 'running' AND lease_expires_at <= ? ORDER BY lease_expires_at LIMIT ?)
       RETURNING ${CLAIMED_COLUMNS}`,
    ),
    claimQueued: db.prepare<[string, number, number, number, number], ClaimedRow>(
      `UPDATE jobs SET status = 'running', attempts = attempts + 1, fence = fence + 1, lease_owner = ?, lease_expires_at = ?, updated_at = ?
       WHERE seq IN (SELECT seq FROM jobs WHERE status = 'queued' AND run_at <= ? ORDER BY run_at, seq LIMIT ?)
       RETURNING ${CLAIMED_COLUMNS}`,
    ),
    renewLease: db.prepare<[number, number, string, number], { cancel_requested: number }>(
      `UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE id = ? AND fence = ? AND status = 'running'
       RETURNING cancel_requested`,
    ),

    // --- finishing (every write presents the fence it claimed with) ---------------------
    finishJob: db.prepare<[string, string | null, string | null, number, number, string, number]>(
      `UPDATE jobs SET status = ?, result = ?, error = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ?
       WHERE id = ? AND fence = ? AND status = 'running'`,
    ),
    retryJob: db.prepare<[string, number, number, string, number]>(
      `UPDATE jobs SET status = 'queued', error = ?, run_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
       WHERE id = ? AND fence = ? AND status = 'running'`,
    ),
    releaseJob: db.prepare<[number, number, string, number]>(
      `UPDATE jobs SET status = 'queued', attempts = attempts - 1, run_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
       WHERE id = ? AND fence = ? AND status = 'running'`,
    ),

    // --- retention ----------------------------------------------------------------------
    deleteExpiredKeys: db.prepare<[number, number]>(
      `DELETE FROM idempotency_keys WHERE (principal, operation, key) IN
         (SELECT principal, operation, key FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)`,
    ),
    deleteFinishedJobs: db.prepare<[number, number]>(`DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE finished_at <= ? LIMIT ?)`),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
