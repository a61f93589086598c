-- jobq schema, version 5: hardening against bad input and faults.
--
-- Sections below are filled by the hardening work (issue: one bad job must
-- never stop the others).

-- == Results and error history ==

-- Appends `entry` to a job's error history, keeping the first entry and the
-- last 20: 21 at most, so a job that fails thousands of times (given that
-- many attempts, or cancelled and interrupted again and again) keeps a
-- bounded row. The first failure often says the
-- most; the last ones say what happens now. Each entry's message is capped
-- by the worker (8 KiB), so a row's history stays under about 170 kB.
-- A history that is not an array (written by hand) is kept as its first
-- element rather than lost.
CREATE FUNCTION jobq_push_error(errors jsonb, entry jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN errors IS NULL THEN jsonb_build_array(entry)
        WHEN jsonb_typeof(errors) <> 'array' THEN jsonb_build_array(errors, entry)
        WHEN jsonb_array_length(errors) < 21 THEN errors || jsonb_build_array(entry)
        ELSE jsonb_build_array(errors -> 0)
            || (SELECT jsonb_agg(e ORDER BY i)
                FROM jsonb_array_elements(errors) WITH ORDINALITY AS t(e, i)
                WHERE i > jsonb_array_length(errors) - 19)
            || jsonb_build_array(entry)
    END
$$;

-- == Claims, unique keys, leases ==

-- Timestamps are finite. A row with `scheduled_at = '-infinity'` could not be
-- read back by a worker, and 'infinity' broke the next-due computation of its
-- queue. Rows written before this version with such a value are mended
-- first: '-infinity' means "as soon as possible", 'infinity' the latest date
-- a client reads back.
UPDATE jobq_jobs SET
    scheduled_at = CASE WHEN scheduled_at = '-infinity' THEN created_at
                        WHEN scheduled_at = 'infinity' THEN '9999-12-31 00:00:00+00'
                        ELSE scheduled_at END,
    attempted_at = CASE WHEN isfinite(attempted_at) THEN attempted_at END,
    finalized_at = CASE WHEN isfinite(finalized_at) THEN finalized_at
                        WHEN finalized_at IS NOT NULL THEN now() END
WHERE NOT isfinite(scheduled_at) OR NOT isfinite(attempted_at) OR NOT isfinite(finalized_at);
ALTER TABLE jobq_jobs
    ADD CONSTRAINT jobq_jobs_scheduled_at_finite CHECK (isfinite(scheduled_at)),
    ADD CONSTRAINT jobq_jobs_created_at_finite CHECK (isfinite(created_at)),
    ADD CONSTRAINT jobq_jobs_attempted_at_finite CHECK (isfinite(attempted_at)),
    ADD CONSTRAINT jobq_jobs_finalized_at_finite CHECK (isfinite(finalized_at)),
    ADD CONSTRAINT jobq_jobs_unique_until_finite CHECK (isfinite(unique_until));

-- Attempts lost with a worker (killed, cut off) are counted apart from the
-- job's attempts: a job claimed into a worker's buffer never started, so
-- losing it must not use one of its attempts. The rescuer gives the attempt
-- back and counts it here; a job lost this many times is discarded (see
-- `LOST_ATTEMPTS_LIMIT`), so a job that keeps killing its worker still ends.
ALTER TABLE jobq_jobs ADD COLUMN lost_attempts integer NOT NULL DEFAULT 0;

-- Claims read only `available` rows, per queue and kind. Jobs that wait for a
-- future time (`scheduled`, `retryable`) are moved to `available` when due,
-- by the claims of their queue (jobq_jobs_due finds them), and rows of a kind
-- the claiming worker does not run are never read: a claim costs the same
-- with 200,000 future jobs or jobs of unknown kinds in its queue as without.
CREATE INDEX jobq_jobs_ready ON jobq_jobs (queue, kind, priority, scheduled_at, id)
    WHERE state = 'available';
DROP INDEX jobq_jobs_claim;

-- A unique key holds in every unfinished state (enqueue refuses other sets
-- from this version on): a key that held in only some of them made the
-- state change into another fail on a second row with the same key, which
-- stalled claims and result writes. Keys written before this version are
-- widened. Where widening would make two rows hold one key, the one that
-- holds it now (else the oldest) keeps it and the others lose theirs: they
-- were enqueued as separate jobs already.
UPDATE jobq_jobs AS j SET unique_key = NULL
FROM (
    SELECT id, row_number() OVER (
               PARTITION BY unique_key
               ORDER BY ((unique_states & jobq_state_bit(state)) <> 0) DESC, id) AS rank
    FROM jobq_jobs
    WHERE unique_key IS NOT NULL
      AND ((CASE WHEN (unique_states & 128) = 0 THEN unique_states | 15 ELSE unique_states END)
           & jobq_state_bit(state)) <> 0
) AS r
WHERE j.id = r.id AND r.rank > 1;
UPDATE jobq_jobs SET unique_states = unique_states | 15
WHERE unique_key IS NOT NULL AND (unique_states & 128) = 0 AND (unique_states & 15) <> 15;

-- Each worker's own lease: a rescuer judges a worker by the lease that
-- worker keeps, not by its own, so workers with different settings (a
-- rolling deploy that changes them) never take each other for dead.
ALTER TABLE jobq_workers ADD COLUMN lease_ms bigint;

-- The attempt a worker said it started, for jobs lost with their worker at
-- least twice: those run alone in their worker (see `SUSPECT_LOST_ATTEMPTS`),
-- and only an attempt that started counts as lost again, so a job that
-- keeps killing its worker ends discarded while the jobs that happened to
-- be there with it do not.
ALTER TABLE jobq_jobs ADD COLUMN started_attempt integer;
