-- jobq schema, version 12: each worker publishes the limits its kinds
-- declare (`#[job(concurrency, rate, partition)]`), so that the command
-- line and the dashboard, which do not link the jobs, can show every limit
-- next to how much of it is in use. Null for a kind without limits, and in
-- the rows of workers of an older jobq.
ALTER TABLE jobq_worker_kinds
    ADD COLUMN concurrency_limit integer,  -- attempts at once (per partition)
    ADD COLUMN rate_limit integer,         -- attempts started per window (per partition)
    ADD COLUMN rate_window_ms bigint,      -- the rate's window
    ADD COLUMN partition text;             -- the argument the limits hold per value of
