-- Follow-ups (ctx.enqueue): a job stored with its parent's success names that parent. The index
-- holds only such children (partial), so a job without a parent writes no entry of it; it serves
-- the lookup of a job's children, oldest first.
ALTER TABLE jobs ADD COLUMN parent_id text;
CREATE INDEX jobs_children ON jobs (parent_id, seq) WHERE parent_id IS NOT NULL;
