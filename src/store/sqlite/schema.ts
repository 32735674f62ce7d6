import type BetterSqlite3 from 'better-sqlite3';
import { JOB_STATES } from '../../core/job-states.js';
import type { MigrationStep } from '../driver.js';

const states = JOB_STATES.map((state) => `'${state}'`).join(', ');

/**
 * Migrations, applied in order; PRAGMA user_version records how many have run.
 * Append new ones; never edit one that has shipped.
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,          -- insertion order; keeps the B-tree append-only
    id               TEXT    NOT NULL UNIQUE,      -- ULID: time-ordered, 80 random bits
    principal        TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    input            TEXT    NOT NULL,             -- canonical JSON {body, params, query}
    status           TEXT    NOT NULL CHECK (status IN (${states})),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,             -- earliest time the next attempt may start
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    fence            INTEGER NOT NULL DEFAULT 0,   -- bumped by every claim
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         TEXT,                         -- JSON {percent, message}, as last reported
    callback_url     TEXT,                         -- Callback-URL of the submission: webhooks go here
    result           TEXT,
    result_location  TEXT,                         -- set when the handler answered with a resource location (303)
    error            TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
  );
  CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE status = 'queued';
  CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
  CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

  CREATE TABLE idempotency_keys (
    principal   TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    job_id      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (principal, operation, key)
  ) WITHOUT ROWID;
  CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

  -- One row per change of a job after its acceptance (its first job.queued is the job row itself):
  -- the history that event streams replay, written in the transaction that made the change.
  CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY,                -- monotonic: commit order is id order
    job_id     TEXT    NOT NULL,
    type       TEXT    NOT NULL,                   -- job.running, job.progress, job.queued (retry), job.succeeded, …
    data       TEXT    NOT NULL,                   -- the job as GET /jobs/{id} showed it then
    created_at INTEGER NOT NULL
  );
  CREATE INDEX job_events_job ON job_events (job_id, id);

  -- Webhook deliveries, written in the transaction that finished the job, so none is lost.
  CREATE TABLE webhook_deliveries (
    id               TEXT    PRIMARY KEY,          -- the webhook-id header: stable across retries
    job_id           TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    payload          TEXT    NOT NULL,             -- the exact body that is signed and sent
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_status      INTEGER,                      -- the receiver's last HTTP status, if it answered
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
  );
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
  CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);
  `,
  `
  -- Leases are measured on the machine's monotonic clock, tagged with the boot (lease-clock.ts):
  -- lease_expires_at means nothing without its epoch, and a lease of another epoch has expired.
  ALTER TABLE jobs ADD COLUMN lease_epoch TEXT;
  -- The readiness probe's write.
  CREATE TABLE store_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
  );
  `,
  `
  -- Events are numbered per job: each change bumps the job's version and records the event with
  -- it (Last-Event-ID is that number), so numbering never depends on commit order across writers.
  ALTER TABLE jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE job_events ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
  UPDATE job_events SET version = (SELECT count(*) FROM job_events AS earlier WHERE earlier.job_id = job_events.job_id AND earlier.id <= job_events.id);
  UPDATE jobs SET version = (SELECT count(*) FROM job_events WHERE job_events.job_id = jobs.id);
  DROP INDEX job_events_job;
  CREATE UNIQUE INDEX job_events_job ON job_events (job_id, version);
  `,
  `
  -- Listings newest first read an index instead of scanning every job: the jobs in one state (an
  -- operator's GET /jobs?status=failed), and one principal's jobs in one state (a caller's GET /jobs
  -- reads one range per state and merges them). Each acceptance and each change of state writes them.
  CREATE INDEX jobs_status ON jobs (status, seq);
  CREATE INDEX jobs_principal_status ON jobs (principal, status, seq);
  `,
  `
  -- How many jobs there are of each operation in each state, kept by triggers in the transaction of
  -- every change (counting them took a second per 2 million jobs, with the event loop held).
  CREATE TABLE job_counts (
    operation TEXT    NOT NULL,
    status    TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (operation, status)
  ) WITHOUT ROWID;
  INSERT INTO job_counts (operation, status, count) SELECT operation, status, count(*) FROM jobs WHERE true GROUP BY operation, status;
  CREATE TRIGGER jobs_counted_in AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (operation, status, count) VALUES (NEW.operation, NEW.status, 1)
      ON CONFLICT (operation, status) DO UPDATE SET count = count + 1;
  END;
  CREATE TRIGGER jobs_counted_moved AFTER UPDATE OF status ON jobs WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE job_counts SET count = count - 1 WHERE operation = OLD.operation AND status = OLD.status;
    INSERT INTO job_counts (operation, status, count) VALUES (NEW.operation, NEW.status, 1)
      ON CONFLICT (operation, status) DO UPDATE SET count = count + 1;
  END;
  CREATE TRIGGER jobs_counted_out AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET count = count - 1 WHERE operation = OLD.operation AND status = OLD.status;
  END;
  `,
  `
  -- The log of every job's events in commit order (GET /jobs/events reads it after a cursor, the
  -- row's id). One writer at a time commits, so id order is commit order; AUTOINCREMENT keeps an
  -- id from being handed out again after the sweeper deleted the newest rows, so a cursor never
  -- points past an event that comes later. Acceptance is logged too, as a job.queued row of
  -- version 0 whose data is NULL: the job row holds all it says (the stream builds it from there).
  CREATE TABLE job_events_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    data       TEXT,
    created_at INTEGER NOT NULL
  );
  INSERT INTO job_events_log (id, job_id, version, type, data, created_at) SELECT id, job_id, version, type, data, created_at FROM job_events ORDER BY id;
  DROP TABLE job_events;
  ALTER TABLE job_events_log RENAME TO job_events;
  CREATE UNIQUE INDEX job_events_job ON job_events (job_id, version);
  `,
  `
  -- The W3C trace context (JSON {traceparent, tracestate}) active when the job was submitted, so
  -- that the worker's span for each attempt can link to the submission's trace. NULL: none was.
  ALTER TABLE jobs ADD COLUMN trace_context TEXT;
  `,
  `
  -- The listing indexes of migration 4, (status, seq) and (principal, status, seq), were written by
  -- every change of state, twice each (out of one state, into the next), and without statistics
  -- the planner read them instead of the worker's own indexes. Listings now read indexes that a
  -- job's common path (queued -> running -> succeeded) writes little: the queued jobs by seq
  -- (written at acceptance and at the claim), the failed and the canceled (written when a job ends
  -- so), a principal's jobs by seq (written once), and, without an index of their own, the running
  -- jobs through jobs_leased and the succeeded through the table (see listing in statements.ts).
  DROP INDEX jobs_status;
  DROP INDEX jobs_principal_status;
  CREATE INDEX jobs_principal ON jobs (principal, seq);
  CREATE INDEX jobs_queued_newest ON jobs (seq) WHERE status = 'queued';
  CREATE INDEX jobs_failed ON jobs (seq) WHERE status = 'failed';
  CREATE INDEX jobs_canceled ON jobs (seq) WHERE status = 'canceled';
  CREATE INDEX jobs_principal_failed ON jobs (principal, seq) WHERE status = 'failed';
  CREATE INDEX jobs_principal_canceled ON jobs (principal, seq) WHERE status = 'canceled';
  `,
  `
  -- job_counts is kept by the driver (job-counter.ts): each group commit adds its sums, one row
  -- per operation and state, instead of these triggers running once per row.
  DROP TRIGGER jobs_counted_in;
  DROP TRIGGER jobs_counted_moved;
  DROP TRIGGER jobs_counted_out;
  `,
  `
  -- Claim policies (x-asyncfirst priority, concurrency, rateLimit), stored with each job at its
  -- acceptance. The plain queue's index holds only the jobs of priority 0 with no limit, so that
  -- the claim of an operation without a policy reads what it read before; a job with a priority
  -- is in its own index, a limited one in its operation's, so each of them writes one queue index
  -- as before. A limited operation's running attempts are counted through jobs_limited_running.
  ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE jobs ADD COLUMN limited INTEGER NOT NULL DEFAULT 0;
  DROP INDEX jobs_queued;
  CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE status = 'queued' AND priority = 0 AND limited = 0;
  CREATE INDEX jobs_queued_by_priority ON jobs (priority DESC, run_at, seq) WHERE status = 'queued' AND priority <> 0 AND limited = 0;
  CREATE INDEX jobs_limited_queued ON jobs (operation, priority DESC, run_at, seq) WHERE status = 'queued' AND limited = 1;
  CREATE INDEX jobs_limited_running ON jobs (operation, lease_expires_at) WHERE status = 'running' AND limited = 1;
  -- One row per limited operation: the claims of its jobs hold it (one writer at a time here), and
  -- its rate limit's latest start times (a JSON array of milliseconds).
  CREATE TABLE operation_limits (
    operation     TEXT PRIMARY KEY,
    recent_starts TEXT NOT NULL DEFAULT '[]'
  ) WITHOUT ROWID;
  `,
  `
  -- Notifications (out-of-band notifiers, x-asyncfirst.notify) are deliveries too: written in the
  -- transaction that finished the job, claimed with a lease, retried with backoff. notifier names
  -- the notifier of such a row (its url is empty); NULL is a webhook delivery.
  ALTER TABLE webhook_deliveries ADD COLUMN notifier TEXT;
  `,
  `
  -- Recurring schedules (src/contract/schedules.ts): each one's last tick, which a process moves
  -- with a conditional UPDATE (last_tick = the tick it read) in the transaction that accepts the
  -- tick's job, so one process wins each tick. The definition is the contract's; cron, timezone
  -- and window are kept as the last process with a worker declared them, for the CLI to list.
  CREATE TABLE schedules (
    name        TEXT    PRIMARY KEY,
    operation   TEXT    NOT NULL,
    cron        TEXT    NOT NULL,
    timezone    TEXT    NOT NULL,
    window_ms   INTEGER NOT NULL,
    last_tick   INTEGER NOT NULL,              -- the last tick taken or skipped (or the first declaration)
    last_job_id TEXT,                          -- the job of the last tick that ran
    declared_at INTEGER NOT NULL,
    retired_at  INTEGER                        -- set when a process with a worker started without it
  ) WITHOUT ROWID;
  `,
  `
  -- Follow-ups (ctx.enqueue): a job stored with its parent's success names that parent. The index
  -- holds only such children (partial), so a job without a parent writes no entry of it; it serves
  -- the lookup of a job's children, oldest first.
  ALTER TABLE jobs ADD COLUMN parent_id TEXT;
  CREATE INDEX jobs_children ON jobs (parent_id, seq) WHERE parent_id IS NOT NULL;
  `,
  `
  -- Per-operation retention (x-asyncfirst retention.jobs): the sweeper deletes each operation's
  -- finished jobs after its own time, so the index of finished jobs is ordered by operation, then
  -- finish time, and each operation's expired jobs are one range of it. It replaces the index by
  -- finish time alone, so a finishing job still writes one index entry.
  DROP INDEX jobs_finished;
  CREATE INDEX jobs_finished_by_operation ON jobs (operation, finished_at) WHERE finished_at IS NOT NULL;
  `,
  `
  -- The schedule tick that made a job (JSON { name, tick }), shown on GET /jobs/{id}. Set by the
  -- transaction that takes the tick, after it accepted the job; NULL (and never written) for
  -- every other job.
  ALTER TABLE jobs ADD COLUMN schedule TEXT;
  `,
  `
  -- Idempotency records in a rowid table with a unique index on the key, instead of a table
  -- clustered on the key. Random keys (UUIDv4) land on a random leaf of the key's B-tree, and each
  -- acceptance writes that leaf into the WAL: entries of the key alone (about 60 bytes) split a
  -- leaf half as often as whole records (about 150), and the record itself is appended at the
  -- table's end. The expiry index then holds the rowid instead of the key. Measured on groups of
  -- 15 acceptances: 42 WAL pages a commit instead of 47.
  CREATE TABLE idempotency_records (
    principal   TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    job_id      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
  );
  INSERT INTO idempotency_records (principal, operation, key, fingerprint, job_id, created_at, expires_at)
    SELECT principal, operation, key, fingerprint, job_id, created_at, expires_at FROM idempotency_keys ORDER BY created_at;
  DROP TABLE idempotency_keys;
  ALTER TABLE idempotency_records RENAME TO idempotency_keys;
  CREATE UNIQUE INDEX idempotency_keys_key ON idempotency_keys (principal, operation, key);
  CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
  `,
  `
  -- One numbering for the event log's positions, shared by the jobs table and job_events: a job's
  -- seq is where its acceptance (job.queued, version 0) sits in the log, and a job that starts now
  -- writes no row of job_events for it (4 to 5 WAL pages a commit of 15 acceptances, the event row,
  -- its index entry and AUTOINCREMENT's sqlite_sequence, for an event the job row already says).
  -- The log is the merge of the two in position order. A job that starts later still logs its
  -- acceptance as a row (with its start time, which a retry changes in the job row): accept_logged
  -- = 1, as for every job stored before this migration, whose acceptance has its row.
  -- Positions are taken in the write transaction, after the highest of both tables and of
  -- event_log_head, which the sweeper raises before it deletes jobs and events, so a position is
  -- never handed out twice (what AUTOINCREMENT did, per row, for job_events alone).
  ALTER TABLE jobs ADD COLUMN accept_logged INTEGER NOT NULL DEFAULT 1;
  CREATE TABLE event_log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    head INTEGER NOT NULL
  );
  INSERT INTO event_log_head (id, head) SELECT 1, max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'job_events'), 0),
    coalesce((SELECT max(id) FROM job_events), 0),
    coalesce((SELECT max(seq) FROM jobs), 0));
  CREATE TABLE job_events_positioned (
    id         INTEGER PRIMARY KEY,
    job_id     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    data       TEXT,
    created_at INTEGER NOT NULL
  );
  INSERT INTO job_events_positioned (id, job_id, version, type, data, created_at) SELECT id, job_id, version, type, data, created_at FROM job_events ORDER BY id;
  DROP TABLE job_events;
  ALTER TABLE job_events_positioned RENAME TO job_events;
  CREATE UNIQUE INDEX job_events_job ON job_events (job_id, version);
  `,
];

/**
 * Brings the schema of an open database up to date, in one transaction. onStep hears of each
 * migration before and after it runs (asyncfirst migrate shows them on a terminal). `upTo` stops
 * at an earlier version: a test builds the database an older asyncfirst left with it.
 */
export function migrate(db: BetterSqlite3.Database, onStep?: (step: MigrationStep) => void, upTo: number = MIGRATIONS.length): void {
  // The version is read inside the write transaction: two processes opening one file at once
  // apply each migration once (the second finds the first's work done).
  db.transaction(() => {
    const applied = db.pragma('user_version', { simple: true }) as number;
    if (applied > MIGRATIONS.length) {
      throw new Error(`the database has schema version ${applied}, newer than this asyncfirst (${MIGRATIONS.length}); upgrade asyncfirst`);
    }
    for (let version = applied; version < upTo; version++) {
      onStep?.({ version: version + 1, of: MIGRATIONS.length });
      const started = performance.now();
      db.exec(MIGRATIONS[version] as string);
      onStep?.({ version: version + 1, of: MIGRATIONS.length, ms: performance.now() - started });
    }
    if (applied < upTo) db.pragma(`user_version = ${upTo}`);
  }).immediate();
}
