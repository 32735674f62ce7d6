-- Listings newest first read an index instead of scanning every job: the jobs in one state (an
-- operator's GET /jobs?status=failed), and one principal's jobs in one state (a caller's GET /jobs
-- reads one range per state and merges them). Each acceptance and each change of state writes them.
-- On a big table these take a write lock while they are built (a migration runs in a transaction).
CREATE INDEX jobs_status ON jobs (status, seq);
CREATE INDEX jobs_principal_status ON jobs (principal, status, seq);
