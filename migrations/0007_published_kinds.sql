-- jobq schema, version 7: what each live worker runs, published at its start,
-- so that processes which do not link the jobs (the `jobq` command line, the
-- dashboard, metrics) can tell queues nobody serves, jobs of a kind nobody
-- knows, and when each cron job ticks next.
--
-- A worker writes its rows in the statement that registers it, and they go
-- with its `jobq_workers` row (ON DELETE CASCADE): when it stops, or when a
-- rescuer takes it for dead. No index on jobq_jobs: nothing here touches
-- the jobs table or its hot path.

-- The queues a worker runs, with how many of their jobs it runs at once.
CREATE TABLE jobq_worker_queues (
    worker_id    bigint  NOT NULL REFERENCES jobq_workers (id) ON DELETE CASCADE,
    queue        text    NOT NULL,
    concurrency  integer NOT NULL,
    PRIMARY KEY (worker_id, queue)
);

-- The job kinds a worker can run (every `#[job]` linked into it, or its
-- explicit registry), with the settings it runs them with.
CREATE TABLE jobq_worker_kinds (
    worker_id     bigint   NOT NULL REFERENCES jobq_workers (id) ON DELETE CASCADE,
    kind          text     NOT NULL,  -- the stored name (jobq_jobs.kind)
    aliases       text[]   NOT NULL DEFAULT '{}',  -- older names it still runs
    queue         text     NOT NULL,  -- its default queue
    priority      smallint NOT NULL,
    max_attempts  integer  NOT NULL,
    timeout_ms    bigint,             -- one attempt's limit, if any
    cron          text,               -- the cron expression of a cron job
    tz            text,               -- the zone `cron` is read in (null: UTC)
    source        text     NOT NULL,  -- where it is defined: `module (file.rs:line)`
    PRIMARY KEY (worker_id, kind)
);
