-- The log of every job's events in commit order, which GET /jobs/events reads after a cursor.
-- A sequence is not commit-ordered on PostgreSQL: a transaction can take id 7, another id 8 and
-- commit first, and a reader that read up to 8 would never see 7. So each event is stamped with
-- the id of the transaction that wrote it (xid8, never wrapping around), and a reader takes only
-- events of transactions older than the oldest still running (its snapshot's xmin): no event of
-- such a transaction can commit any more, and every later transaction gets a larger id. The
-- cursor is (xid, id), id ordering one transaction's own events.
ALTER TABLE job_events ADD COLUMN xid xid8;
ALTER TABLE job_events ADD COLUMN id bigint;
-- Events written before: one transaction's (this one's), in the order they were written.
UPDATE job_events SET xid = pg_current_xact_id(), id = ordered.n
FROM (SELECT job_id, version, row_number() OVER (ORDER BY created_at, job_id, version) AS n FROM job_events) AS ordered
WHERE job_events.job_id = ordered.job_id AND job_events.version = ordered.version;
CREATE SEQUENCE job_events_id_seq OWNED BY job_events.id;
SELECT setval('job_events_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM job_events), false);
ALTER TABLE job_events
  ALTER COLUMN xid SET DEFAULT pg_current_xact_id(),
  ALTER COLUMN xid SET NOT NULL,
  ALTER COLUMN id SET DEFAULT nextval('job_events_id_seq'),
  ALTER COLUMN id SET NOT NULL,
  -- An acceptance is logged as job.queued of version 0 with no data: the job row says it all.
  ALTER COLUMN data DROP NOT NULL;
CREATE INDEX job_events_log ON job_events (xid, id);
