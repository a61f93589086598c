-- jobq schema, version 13: jobs that wait for other jobs, and workflows.
--
-- Every column is null for a job that uses none of it, so such rows are no
-- larger than before (see version 6), and no index sees them.

-- A job enqueued `.after(..)` other jobs waits in this state until every one
-- of them has finished. Claims read only `available` rows, so they never see
-- it. (A new enum value cannot be used in the transaction that adds it; this
-- file only names it in function bodies, which run later.)
ALTER TYPE jobq_state ADD VALUE IF NOT EXISTS 'pending' BEFORE 'available';

ALTER TABLE jobq_jobs
    -- Every job this one was enqueued after, as given.
    ADD COLUMN depends_on bigint[],
    -- How many of them have not finished yet, while the job is `pending`;
    -- null once it is not (released, cancelled) and for every other job.
    ADD COLUMN deps_left integer,
    -- The workflow the job was inserted with (`jobq::Workflow`): the id of
    -- its first job.
    ADD COLUMN workflow_id bigint;

-- Cancelling a workflow finds its jobs here; only workflow jobs are in it.
CREATE INDEX jobq_jobs_workflow ON jobq_jobs (workflow_id) WHERE workflow_id IS NOT NULL;

-- The pending jobs, by queue, for the overview's counts: `deps_left` is set
-- exactly while a job is `pending` (which this file may not name: see above).
CREATE INDEX jobq_jobs_pending ON jobq_jobs (queue) WHERE deps_left IS NOT NULL;

-- A job's dependents, finished or not, for `jobq jobs show` and the
-- dashboard: only jobs enqueued with dependencies are in it.
CREATE INDEX jobq_jobs_depends_on ON jobq_jobs USING gin (depends_on)
    WHERE depends_on IS NOT NULL;

-- One row per dependency not finished yet when its dependent was enqueued:
-- `child` waits for `parent`. The parent's end consumes its rows (DELETE ..
-- RETURNING), so an end counts once however often it is reported, and the
-- table holds only what is still awaited. `any_outcome`: the child runs
-- whether the parent completes or not (`.after_any_outcome(..)`); otherwise
-- a parent that ends discarded or cancelled cancels the child.
CREATE TABLE jobq_deps (
    parent      bigint  NOT NULL,
    child       bigint  NOT NULL,
    any_outcome boolean NOT NULL,
    PRIMARY KEY (parent, child)
);

-- Bit 2 of `on_finish`: the job has dependents (rows in `jobq_deps`). Its
-- end, in the same transaction as the write of that end:
-- - consumes its `jobq_deps` rows and counts them off each dependent's
--   `deps_left` (under the dependent's row lock, so two parents ending at
--   once in two transactions both count);
-- - makes a dependent with nothing left to wait for `available` (or
--   `scheduled`, when it was enqueued for a later time), and wakes its
--   queue's sleeping producers as an enqueue does (wake lock 27249,
--   `jobq::__private::WAKE_LOCK_CLASS`; channel `jobq_insert`);
-- - cancels a dependent whose parent ended discarded or cancelled, or was
--   deleted (bit 4 of its mask, set by the statements that delete jobs and
--   never stored), unless it takes any outcome, with an error entry naming
--   that parent; and so on down the graph, one level per loop (not one call
--   per level, so a chain of any length is cancelled without deepening the
--   stack).
--
-- Lock order: every writer that locks several jobs' rows locks them in id
-- order (the enqueue its dependencies, the completer its batch), and each
-- level's dependents are locked here in id order before they are written,
-- so that the ends of many dependencies of one dependent, in several
-- transactions at once, queue up on its row instead of deadlocking. (A
-- dependent's id is above its dependencies': they existed first.)
CREATE OR REPLACE FUNCTION jobq_finished(ids bigint[], states jobq_state[], masks smallint[])
    RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    parents bigint[];
    parent_states jobq_state[];
    parent_deleted boolean[];
    queues text[];
BEGIN
    PERFORM pg_notify('jobq_finished', f.id::text)
    FROM unnest(ids, masks) AS f(id, mask)
    WHERE f.mask & 1 <> 0;
    SELECT array_agg(f.id), array_agg(f.state), array_agg(f.mask & 4 <> 0)
    INTO parents, parent_states, parent_deleted
    FROM unnest(ids, states, masks) AS f(id, state, mask)
    WHERE f.mask & 2 <> 0;
    WHILE parents IS NOT NULL LOOP
        PERFORM 1 FROM jobq_jobs
        WHERE id IN (SELECT e.child FROM jobq_deps AS e WHERE e.parent = ANY (parents))
        ORDER BY id
        FOR NO KEY UPDATE;
        WITH edges AS (
            DELETE FROM jobq_deps AS e
            USING unnest(parents, parent_states, parent_deleted) AS p(id, state, deleted)
            WHERE e.parent = p.id
            RETURNING e.child, e.parent, e.any_outcome,
                      CASE WHEN p.deleted THEN 'was deleted' ELSE 'ended ' || p.state END AS how,
                      p.deleted OR p.state <> 'completed' AS failed
        ),
        hits AS (
            SELECT child, count(*)::int AS n,
                   min(parent) FILTER (WHERE failed AND NOT any_outcome) AS failed,
                   (array_agg(how ORDER BY parent)
                        FILTER (WHERE failed AND NOT any_outcome))[1] AS failed_how
            FROM edges
            GROUP BY child
            ORDER BY child
        ),
        moved AS (
            UPDATE jobq_jobs AS d SET
                deps_left = CASE WHEN h.failed IS NULL AND d.deps_left > h.n
                                 THEN d.deps_left - h.n END,
                state = CASE
                    WHEN h.failed IS NOT NULL THEN 'cancelled'
                    WHEN d.deps_left > h.n THEN 'pending'
                    WHEN d.scheduled_at > now() THEN 'scheduled'
                    ELSE 'available' END::jobq_state,
                finalized_at = CASE WHEN h.failed IS NOT NULL THEN now() END,
                errors = CASE WHEN h.failed IS NULL THEN d.errors
                    ELSE jobq_push_error(d.errors, jsonb_build_object(
                        'attempt', d.attempt, 'at', now(), 'kind', 'dependency',
                        'error', format('cancelled: its dependency %s %s',
                                        h.failed, h.failed_how)))
                    END
            FROM hits AS h
            WHERE d.id = h.child AND d.state = 'pending'
            RETURNING d.id, d.state, d.queue, d.on_finish
        ),
        told AS (
            SELECT count(pg_notify('jobq_finished', id::text)) AS n
            FROM moved WHERE state = 'cancelled' AND on_finish & 1 <> 0
        )
        SELECT array_agg(id) FILTER (WHERE state = 'cancelled' AND on_finish & 2 <> 0),
               array_agg(DISTINCT queue) FILTER (WHERE state = 'available')
        INTO parents, queues
        FROM moved, told;
        PERFORM CASE WHEN NOT pg_try_advisory_xact_lock_shared(27249, hashtext(q))
                     THEN pg_notify('jobq_insert', q) END
        FROM unnest(queues) AS q;
        IF parents IS NOT NULL THEN
            parent_states := array_fill('cancelled'::jobq_state, ARRAY[cardinality(parents)]);
            parent_deleted := array_fill(false, ARRAY[cardinality(parents)]);
        END IF;
    END LOOP;
    RETURN 0;
END
$$;
