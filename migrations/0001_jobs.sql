-- jobq schema, version 1: jobs, workers, and the indexes the worker's claim needs.
-- Applied by jobq::migrate(&pool) inside one transaction under an advisory lock;
-- recorded in jobq_migrations, never in sqlx's _sqlx_migrations.

CREATE TYPE jobq_state AS ENUM (
    'available',  -- may run now (or at scheduled_at)
    'scheduled',  -- enqueued to run at a future scheduled_at
    'running',    -- claimed by a worker (attempted_by) for attempt number `attempt`
    'retryable',  -- failed, waits for scheduled_at (backoff) to run again
    'completed',  -- finished successfully
    'discarded',  -- out of attempts, or can never run (undecodable args)
    'cancelled'   -- cancelled before it finished
);

CREATE TABLE jobq_jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text        NOT NULL,
    queue         text        NOT NULL,
    args          jsonb       NOT NULL,
    state         jobq_state  NOT NULL DEFAULT 'available',
    priority      smallint    NOT NULL DEFAULT 0,
    attempt       integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL CHECK (max_attempts > 0),
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempted_at  timestamptz,
    finalized_at  timestamptz,
    attempted_by  bigint,
    cancel_requested_at timestamptz,
    errors        jsonb       NOT NULL DEFAULT '[]',
    unique_key    text,
    tags          text[]      NOT NULL DEFAULT '{}',
    metadata      jsonb       NOT NULL DEFAULT '{}'
);

-- The claim: per queue, claimable rows in (priority, scheduled_at, id) order.
-- Partial, so finished history does not make it grow.
CREATE INDEX jobq_jobs_claim ON jobq_jobs (queue, priority, scheduled_at, id)
    WHERE state IN ('available', 'scheduled', 'retryable');

-- Finding a dead worker's jobs (lease rescue) without scanning history.
CREATE INDEX jobq_jobs_running ON jobq_jobs (attempted_by)
    WHERE state = 'running';

CREATE TABLE jobq_workers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    queues        text[]      NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
