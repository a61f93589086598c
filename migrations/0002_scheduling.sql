-- jobq schema, version 2: unique jobs, cron bookkeeping, queue pause, and an
-- index for finding the next due time of a queue's future jobs.

-- The bit of each state, for `unique_states` masks. IMMUTABLE so the unique
-- index below can use it: the enum's members are fixed by jobq's migrations.
CREATE FUNCTION jobq_state_bit(s jobq_state) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE s
        WHEN 'available' THEN 1
        WHEN 'scheduled' THEN 2
        WHEN 'running'   THEN 4
        WHEN 'retryable' THEN 8
        WHEN 'completed' THEN 16
        WHEN 'discarded' THEN 32
        WHEN 'cancelled' THEN 64
    END
$$;

-- A unique job's key holds only while the job is in one of `unique_states`.
ALTER TABLE jobq_jobs ADD COLUMN unique_states integer;

CREATE UNIQUE INDEX jobq_jobs_unique ON jobq_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND (unique_states & jobq_state_bit(state)) <> 0;

-- When a queue's producer is idle, it sleeps until the next future job is due.
CREATE INDEX jobq_jobs_due ON jobq_jobs (queue, scheduled_at)
    WHERE state IN ('scheduled', 'retryable');

-- The latest tick enqueued for each cron job, for catching up after downtime.
CREATE TABLE jobq_cron (
    name        text PRIMARY KEY,
    last_tick   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Queue control. A queue without a row is running.
CREATE TABLE jobq_queues (
    name        text PRIMARY KEY,
    paused_at   timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
