-- Recurring schedules (src/contract/schedules.ts): each one's last tick, which a process moves with
-- a conditional UPDATE (last_tick = the tick it read) in the transaction that accepts the tick's
-- job, so one process wins each tick. The definition is the contract's; cron, timezone and window
-- are kept as the last process with a worker declared them, for the CLI to list.
CREATE TABLE schedules (
  name        text    PRIMARY KEY,
  operation   text    NOT NULL,
  cron        text    NOT NULL,
  timezone    text    NOT NULL,
  window_ms   bigint  NOT NULL,
  last_tick   bigint  NOT NULL,                                      -- the last tick taken or skipped (or the first declaration)
  last_job_id text,                                                  -- the job of the last tick that ran
  declared_at bigint  NOT NULL,
  retired_at  bigint                                                 -- set when a process with a worker started without it
);
