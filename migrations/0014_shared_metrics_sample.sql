-- jobq schema, version 14: the metrics sampler's last reading, shared.
--
-- Every worker sets the gauges that count jobs (`jobq_jobs`, the queues'
-- lag, live workers). One of them reads the jobs table for a reading, and
-- the others, while it is fresh (younger than half their own sampling
-- interval), take it from this row: N workers cost one scan per interval,
-- not N. Writers serialize on the sampler's advisory lock.
--
-- UNLOGGED: a cache. A crash empties it, and the next sampler reads the
-- table again.
CREATE UNLOGGED TABLE jobq_metrics_sample (
    -- One row.
    one        boolean     PRIMARY KEY DEFAULT true CHECK (one),
    taken_at   timestamptz NOT NULL,
    -- Unfinished jobs per queue and state, with each part's lag in seconds:
    -- [{"queue": "email", "state": "available", "n": 12, "lag_s": 0.4}, ...]
    counts     jsonb       NOT NULL,
    -- Workers with a live lease.
    workers    bigint      NOT NULL,
    -- Readings taken of the jobs table since the row was created (for
    -- whoever wonders how often the scan runs).
    readings   bigint      NOT NULL DEFAULT 1
);
