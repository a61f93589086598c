-- jobq schema, version 3: what the pruner needs to delete finished jobs past
-- their retention without scanning the table.

-- Bit 128 of `unique_states` is no state: it marks a key jobq owns, a cron
-- tick's. Such a key holds in every state so that a second worker cannot
-- enqueue the same tick, but once the tick is old, `jobq_cron.last_tick` keeps
-- it from being enqueued again (see `insert_cron_tick`), so its row may go.
--
-- Cron ticks enqueued before this version: mark their keys as jobq's own. Only
-- keys that hold (the unique index's rows) are looked at, not the history.
UPDATE jobq_jobs SET unique_states = unique_states | 128
WHERE unique_key IS NOT NULL AND (unique_states & jobq_state_bit(state)) <> 0
  AND unique_states = 127
  AND starts_with(unique_key, kind || ':cron:')
  AND kind IN (SELECT name FROM jobq_cron);

-- The finished jobs the pruner may delete, by state and age. Partial: a job
-- enters it when it finishes (one more index entry per completion, appended at
-- the right edge of its state's range) and only then, so claims and unfinished
-- jobs never pay for it. A finished job whose unique key still holds in its
-- state (other than a cron tick's) is left out: the pruner never deletes it, so
-- it never has to step over it either, however many such jobs accumulate.
--
-- On a large table, building this index blocks writes to jobq_jobs for a while
-- (about 10 s per 10 million rows). To avoid that, create it yourself before
-- upgrading, with the same statement and CONCURRENTLY (and check that it ended
-- valid: an invalid index of this name is skipped here and never used).
CREATE INDEX IF NOT EXISTS jobq_jobs_prunable ON jobq_jobs (state, finalized_at)
    WHERE state IN ('completed', 'discarded', 'cancelled')
      AND (unique_key IS NULL
           OR (unique_states & jobq_state_bit(state)) = 0
           OR (unique_states & 128) <> 0);
