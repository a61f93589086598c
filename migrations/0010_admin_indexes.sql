-- jobq schema, version 10: two partial indexes for the overview of the command
-- line and the dashboard on big tables. Neither holds a job that is waiting,
-- running or completed without a unique key, so enqueue, claim and
-- completion never write to them.

-- Discarded and cancelled jobs per queue: the overview counts them for every
-- queue, and without this index that read the whole history (3.6 s over 10
-- million jobs, 300,000 of them failed). A job enters it when it is
-- discarded or cancelled (one entry; each later change of such a job, a
-- retry, adds one more) and leaves it when it is pruned.
CREATE INDEX IF NOT EXISTS jobq_jobs_failed ON jobq_jobs (queue, state)
    WHERE state IN ('discarded', 'cancelled');

-- The finished jobs that `jobq_jobs_prunable` leaves out (a unique key that
-- still holds, other than a cron tick's), by state and finish time, so that
-- "what finished in the last hour" reads that hour of them rather than every
-- such job ever kept (through `jobq_jobs_unique`, which holds cron ticks of
-- every age too). A job enters it only when a unique job whose key holds
-- after it finishes ends.
CREATE INDEX IF NOT EXISTS jobq_jobs_finished_held ON jobq_jobs (state, finalized_at)
    WHERE state IN ('completed', 'discarded', 'cancelled')
      AND unique_key IS NOT NULL
      AND (unique_states & jobq_state_bit(state)) <> 0
      AND (unique_states & 128) = 0;
