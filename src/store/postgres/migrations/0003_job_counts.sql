-- How many jobs there are of each operation in each state, without counting them (a count took half
-- a second per 2 million jobs). Every statement that inserts, deletes or moves jobs between states
-- appends its net change per operation and state to job_count_deltas (one statement-level trigger
-- each, reading the transition tables): appends only, so concurrent acceptances never wait on one
-- counter row. countJobs folds the deltas into one row per pair and sums them.
CREATE TABLE job_count_deltas (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  operation text   NOT NULL,
  status    text   NOT NULL,
  delta     bigint NOT NULL
);
INSERT INTO job_count_deltas (operation, status, delta) SELECT operation, status, count(*) FROM jobs GROUP BY operation, status;

CREATE FUNCTION count_inserted_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (operation, status, delta) SELECT operation, status, count(*) FROM inserted GROUP BY operation, status;
  RETURN NULL;
END $$;
CREATE FUNCTION count_deleted_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (operation, status, delta) SELECT operation, status, -count(*) FROM deleted GROUP BY operation, status;
  RETURN NULL;
END $$;
CREATE FUNCTION count_moved_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (operation, status, delta)
    SELECT operation, status, sum(delta) FROM (
      SELECT operation, status, -1 AS delta FROM before_change
      UNION ALL
      SELECT operation, status, 1 AS delta FROM after_change
    ) AS moved
    GROUP BY operation, status HAVING sum(delta) <> 0;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_counted_in AFTER INSERT ON jobs REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_jobs();
CREATE TRIGGER jobs_counted_out AFTER DELETE ON jobs REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION count_deleted_jobs();
-- Every UPDATE (PostgreSQL refuses transition tables with UPDATE OF a column list): one that moves
-- no job between states (a lease renewal, progress) appends nothing.
CREATE TRIGGER jobs_counted_moved AFTER UPDATE ON jobs REFERENCING OLD TABLE AS before_change NEW TABLE AS after_change
  FOR EACH STATEMENT EXECUTE FUNCTION count_moved_jobs();
