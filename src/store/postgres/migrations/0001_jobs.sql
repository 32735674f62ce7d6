-- asyncfirst on PostgreSQL, schema version 1. Applied by migrate.ts under an advisory lock, in
-- the schema DATABASE_SCHEMA names (the search_path of every connection). Times are milliseconds
-- since the epoch; lease times are on the database's clock. :job_states is the list of job
-- states from src/store/job-states.ts.

CREATE TABLE jobs (
  seq              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order
  id               text    NOT NULL UNIQUE,                          -- ULID: time-ordered, 80 random bits
  principal        text    NOT NULL,
  operation        text    NOT NULL,
  input            text    NOT NULL,                                 -- canonical JSON {body, params, query}
  status           text    NOT NULL CHECK (status IN (:job_states)),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  run_at           bigint  NOT NULL,                                 -- earliest time the next attempt may start
  lease_owner      text,
  lease_expires_at bigint,                                           -- on the database clock
  fence            integer NOT NULL DEFAULT 0,                       -- bumped by every claim
  cancel_requested boolean NOT NULL DEFAULT false,
  progress         text,                                             -- JSON {percent, message}
  callback_url     text,
  result           text,                                             -- the result's JSON text, as the handler returned it
  result_location  text,
  error            text,                                             -- problem details JSON
  created_at       bigint  NOT NULL,
  updated_at       bigint  NOT NULL,
  finished_at      bigint,
  version          integer NOT NULL DEFAULT 0                        -- bumped by every change that records an event
);
CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE idempotency_keys (
  principal   text   NOT NULL,
  operation   text   NOT NULL,
  key         text   NOT NULL,
  fingerprint text   NOT NULL,
  job_id      text   NOT NULL,
  created_at  bigint NOT NULL,
  expires_at  bigint NOT NULL,
  PRIMARY KEY (principal, operation, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- One row per change of a job after its acceptance, numbered by the job's version.
CREATE TABLE job_events (
  job_id     text    NOT NULL,
  version    integer NOT NULL,
  type       text    NOT NULL,
  data       text    NOT NULL,                                       -- the job as GET /jobs/{id} showed it then
  created_at bigint  NOT NULL,
  PRIMARY KEY (job_id, version)
);

CREATE TABLE webhook_deliveries (
  id               text    PRIMARY KEY,                              -- the webhook-id header: stable across retries
  job_id           text    NOT NULL,
  url              text    NOT NULL,
  event_type       text    NOT NULL,
  payload          text    NOT NULL,
  status           text    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  next_attempt_at  bigint  NOT NULL,
  lease_owner      text,
  lease_expires_at bigint,
  last_status      integer,
  last_error       text,
  created_at       bigint  NOT NULL,
  updated_at       bigint  NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);
