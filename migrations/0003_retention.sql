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
