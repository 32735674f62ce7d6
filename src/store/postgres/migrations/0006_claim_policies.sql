-- Claim policies (x-asyncfirst priority, concurrency, rateLimit), stored with each job at its
-- acceptance. The plain queue's index holds only the jobs of priority 0 with no limit, so that the
-- claim of an operation without a policy reads what it read before; a job with a priority is in its
-- own index, a limited one in its operation's, so each writes one queue index as before. A limited
-- operation's running attempts are counted (and its abandoned ones found) through jobs_limited_running.
ALTER TABLE jobs ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN limited boolean NOT NULL DEFAULT false;
DROP INDEX jobs_queued;
CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE status = 'queued' AND priority = 0 AND NOT limited;
CREATE INDEX jobs_queued_by_priority ON jobs (priority DESC, run_at, seq) WHERE status = 'queued' AND priority <> 0 AND NOT limited;
CREATE INDEX jobs_limited_queued ON jobs (operation, priority DESC, run_at, seq) WHERE status = 'queued' AND limited;
CREATE INDEX jobs_limited_running ON jobs (operation, lease_expires_at) WHERE status = 'running' AND limited;

-- One row per limited operation: a claim of its jobs holds the row's lock until it commits, so two
-- processes never count its running attempts at once; and its rate limit's latest start times
-- (milliseconds on the database's clock).
CREATE TABLE operation_limits (
  operation     text PRIMARY KEY,
  recent_starts bigint[] NOT NULL DEFAULT '{}'
);
