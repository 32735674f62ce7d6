-- Per-operation retention (x-asyncfirst retention.jobs): the sweeper deletes each operation's
-- finished jobs after its own time, so the index of finished jobs is ordered by operation, then
-- finish time, and each operation's expired jobs are one range of it. It replaces the index by
-- finish time alone, so a finishing job still writes one index entry.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished_by_operation ON jobs (operation, finished_at) WHERE finished_at IS NOT NULL;
