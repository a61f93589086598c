-- jobq schema, version 6: jobs' results, and callers that wait for them.
--
-- Both columns are null for every job that uses neither: a null costs a row
-- one bit of its null bitmap, which this table already has room for, so such
-- rows are no larger than before.

-- What a completed job returned, as JSON; null when it returned `()` (or
-- anything else serde writes as `null`), and for every job not completed.
-- Deleted with its row, by the pruner (`Retention`).
ALTER TABLE jobq_jobs ADD COLUMN result jsonb;

-- What must happen when the job finishes, beyond writing its row: a bit
-- mask, null when nothing. Bit 1: a caller waits for it (`wait`), so its
-- end is announced on the channel `jobq_finished` (the job's id as
-- payload). Later versions add bits.
--
-- The statements that write ordinary results skip rows where it is set
-- (`on_finish IS NULL` is part of their fence), and the worker writes those
-- with a statement that also calls `jobq_finished`, in the same
-- transaction: jobs nobody follows pay one null test, never a NOTIFY.
ALTER TABLE jobq_jobs ADD COLUMN on_finish smallint;

-- Called by every statement that finishes followed jobs, in its own
-- transaction, with the ids, final states and `on_finish` masks of those
-- jobs (null arrays when none). Returns 0, so that a statement can add it
-- to what it returns, which makes PostgreSQL run it.
CREATE FUNCTION jobq_finished(ids bigint[], states jobq_state[], masks smallint[])
    RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_notify('jobq_finished', f.id::text)
    FROM unnest(ids, masks) AS f(id, mask)
    WHERE f.mask & 1 <> 0;
    RETURN 0;
END
$$;
