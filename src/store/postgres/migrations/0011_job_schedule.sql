-- The schedule tick that made a job (JSON { name, tick }), shown on GET /jobs/{id}. Set by the
-- transaction that takes the tick, after it accepted the job; NULL (and never written) for every
-- other job. A nullable column without a default: adding it rewrites nothing.
ALTER TABLE jobs ADD COLUMN schedule text;
