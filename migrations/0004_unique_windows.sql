-- jobq schema, version 4: a unique key with a window (`unique_for`) stops
-- holding once its window has ended, so the pruner may delete its row.
--
-- Before this version such a row, finished in a state its key holds in (say
-- `.unique_for(1h).unique_states(&JobState::ALL)`: once per hour, whatever
-- happens), was kept for ever, one row per key per window. Enqueue now records
-- when the window ends; rows enqueued before this version have no end recorded
-- and are still kept (their key does not say the window's length).
ALTER TABLE jobq_jobs ADD COLUMN IF NOT EXISTS unique_until timestamptz;

-- The finished jobs that `jobq_jobs_prunable` leaves out because their key
-- holds, but whose key has a window: the pruner looks for those past their
-- retention here, oldest first, as for every other finished job, and checks
-- the window's end inside the index. Only such rows enter it, so it stays
-- small and costs other jobs nothing.
--
-- This migration locks jobq_jobs against reads and writes while it runs, and
-- building the index reads the whole table (0.26 s over 2 million finished
-- jobs in memory here, so about 1.5 s per 10 million). To avoid that on a
-- large table, do both steps yourself before upgrading: the ALTER TABLE above
-- as it is (instant), then this statement with CONCURRENTLY (and check that
-- it ended valid: an invalid index of this name is skipped here and never
-- used).
CREATE INDEX IF NOT EXISTS jobq_jobs_window_ended
    ON jobq_jobs (state, finalized_at, unique_until)
    WHERE unique_until IS NOT NULL
      AND state IN ('completed', 'discarded', 'cancelled')
      AND (unique_states & jobq_state_bit(state)) <> 0;
