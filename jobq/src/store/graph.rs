//! Jobs that wait for other jobs: inserting them, and workflows.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::NewJob;
use crate::job::JobState;

/// Locks the jobs `ids` (in id order, as every writer of many rows does)
/// until the transaction ends, and marks the unfinished ones as having
/// dependents (bit 2 of `on_finish`; a row already marked is not written
/// again), so that their end releases the
/// dependents about to be inserted. Returns each found job's id and state:
/// current, since `FOR UPDATE` reads the latest committed row. An end that
/// commits after this statement sees the mark (a completion waiting for the
/// lock reads it once it gets the row), so none goes unheard.
pub(crate) async fn lock_parents(
    conn: &mut PgConnection,
    ids: &[i64],
) -> sqlx::Result<Vec<(i64, JobState)>> {
    sqlx::query_as(
        "WITH locked AS (
            SELECT id, state FROM jobq_jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE
        ),
        marked AS (
            UPDATE jobq_jobs AS j SET on_finish = coalesce(j.on_finish, 0) | 2
            FROM locked AS l
            WHERE j.id = l.id AND l.state NOT IN ('completed', 'discarded', 'cancelled')
              AND coalesce(j.on_finish, 0) & 2 = 0
            RETURNING j.id
        )
        SELECT id, state FROM locked WHERE (SELECT count(*) FROM marked) >= 0",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// One job of a graph, ready to insert: its row, the state it starts in
/// (`pending`, `available`, `scheduled`, or `cancelled` when a dependency
/// already failed), and what that needs.
pub(crate) struct GraphJob {
    pub job: NewJob,
    pub state: JobState,
    /// Dependencies not finished yet: one `jobq_deps` row each.
    pub deps_left: i32,
    /// Whether jobs of the graph wait for it (bit 2 of `on_finish`).
    pub has_dependents: bool,
    /// For a job cancelled at once: the dependency that failed, as a job
    /// of the graph (its index) or an earlier job (its id), and its state.
    pub failed: Option<(GraphRef, JobState)>,
}

/// A job a graph's job depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GraphRef {
    /// The graph's job at this index (an earlier one).
    Node(usize),
    /// A job inserted before the graph.
    Job(i64),
}

/// One dependency of a graph's job.
pub(crate) struct GraphEdge {
    /// The dependent's index.
    pub child: usize,
    pub parent: GraphRef,
    /// Whether the child waits for it: it has not finished (else it is only
    /// recorded in the child's `depends_on`).
    pub waits: bool,
    pub any_outcome: bool,
}

/// Inserts `jobs` and their dependencies with one statement; returns their
/// ids in input order. The ids are drawn first (from the table's identity
/// sequence, in the same statement), so that dependencies between the
/// graph's own jobs can be written with the rows. With `workflow`, every
/// job records the first one's id as its `workflow_id`. Queues that get an
/// `available` job are notified if a producer sleeps on them. With the
/// `opentelemetry` feature, every job carries `trace`, the context of the
/// span it was inserted in.
pub(crate) async fn insert_graph(
    conn: &mut PgConnection,
    jobs: &[GraphJob],
    edges: &[GraphEdge],
    workflow: bool,
    #[cfg(feature = "opentelemetry")] trace: Option<String>,
) -> sqlx::Result<Vec<i64>> {
    let kinds: Vec<&str> = jobs.iter().map(|g| g.job.kind).collect();
    let queues: Vec<&str> = jobs.iter().map(|g| g.job.queue.as_str()).collect();
    let args: Vec<&str> = jobs.iter().map(|g| g.job.args.as_str()).collect();
    let priorities: Vec<i16> = jobs.iter().map(|g| g.job.priority).collect();
    let attempts: Vec<i32> = jobs.iter().map(|g| g.job.max_attempts).collect();
    let run_at: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|g| g.job.run_at).collect();
    let states: Vec<&str> = jobs.iter().map(|g| g.state.as_str()).collect();
    let deps_left: Vec<Option<i32>> = jobs
        .iter()
        .map(|g| (g.deps_left > 0).then_some(g.deps_left))
        .collect();
    let on_finish: Vec<Option<i16>> = jobs.iter().map(|g| g.has_dependents.then_some(2)).collect();
    let (fail_node, fail_job, fail_state) = split_refs(jobs.iter().map(|g| g.failed));
    let edge_child: Vec<i32> = edges.iter().map(|e| e.child as i32 + 1).collect();
    let (edge_node, edge_job, _) =
        split_refs(edges.iter().map(|e| Some((e.parent, JobState::Pending))));
    let edge_waits: Vec<bool> = edges.iter().map(|e| e.waits).collect();
    let edge_any: Vec<bool> = edges.iter().map(|e| e.any_outcome).collect();
    // A limited kind's jobs carry their limit key, as every insert writes it.
    let limit_names: Vec<Option<&str>> = jobs
        .iter()
        .map(|g| g.job.limits.is_limited().then_some(g.job.kind))
        .collect();
    let limit_fields: Vec<Option<&str>> = jobs.iter().map(|g| g.job.limits.partition).collect();
    let query = sqlx::query_scalar(concat!(
        "WITH ids AS MATERIALIZED (
            SELECT ord, nextval(pg_get_serial_sequence('jobq_jobs', 'id')) AS id
            FROM generate_series(1, cardinality($1::text[])) AS ord
        ),
        e AS MATERIALIZED (
            SELECT e.child, coalesce(p.id, e.parent_job) AS parent, e.waits, e.any_outcome
            FROM unnest($13::int[], $14::int[], $15::bigint[], $16::bool[], $17::bool[])
                AS e(child, parent_node, parent_job, waits, any_outcome)
            LEFT JOIN ids AS p ON p.ord = e.parent_node
        ),
        lists AS (
            SELECT child, array_agg(parent ORDER BY parent) AS parents FROM e GROUP BY child
        ),
        ins AS (
            INSERT INTO jobq_jobs (id, kind, queue, args, priority, max_attempts, scheduled_at,
                                   state, deps_left, on_finish, depends_on, workflow_id,
                                   finalized_at, errors, limit_key",
        trace_column!(),
        ")
            OVERRIDING SYSTEM VALUE
            SELECT i.id, n.kind, n.queue, n.args::jsonb, n.priority, n.max_attempts,
                   coalesce(n.run_at, now()), n.state::jobq_state, n.deps_left, n.on_finish,
                   l.parents,
                   CASE WHEN $18 THEN (SELECT id FROM ids WHERE ord = 1) END,
                   CASE WHEN n.state = 'cancelled' THEN now() END,
                   CASE WHEN n.state = 'cancelled' THEN jsonb_build_array(jsonb_build_object(
                       'attempt', 0, 'at', now(), 'kind', 'dependency',
                       'error', format('cancelled: its dependency %s ended %s',
                                       coalesce(f.id, n.fail_job), n.fail_state)))
                   ELSE '[]' END,
                   ",
        limit_key_sql!("n.args", "n.limit_name", "n.limit_field"),
        trace_value!("$21"),
        "
            FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::int4[],
                        $6::timestamptz[], $7::text[], $8::int4[], $9::int2[],
                        $10::int[], $11::bigint[], $12::text[], $19::text[], $20::text[])
                WITH ORDINALITY AS n(kind, queue, args, priority, max_attempts, run_at, state,
                                     deps_left, on_finish, fail_node, fail_job, fail_state,
                                     limit_name, limit_field, ord)
            JOIN ids AS i ON i.ord = n.ord
            LEFT JOIN ids AS f ON f.ord = n.fail_node
            LEFT JOIN lists AS l ON l.child = n.ord
            RETURNING queue, state
        ),
        deps AS (
            INSERT INTO jobq_deps (parent, child, any_outcome)
            SELECT e.parent, c.id, e.any_outcome FROM e JOIN ids AS c ON c.ord = e.child
            WHERE e.waits
            ORDER BY 1, 2
            RETURNING 1
        ),
        told AS (
            SELECT count(",
        notify_if_asleep!("q.queue"),
        ") AS n FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
        )
        SELECT array_agg(id ORDER BY ord) FROM ids
        WHERE (SELECT count(*) FROM deps) + (SELECT n FROM told) >= 0"
    ))
    .bind(&kinds)
    .bind(&queues)
    .bind(&args)
    .bind(&priorities)
    .bind(&attempts)
    .bind(&run_at)
    .bind(&states)
    .bind(&deps_left)
    .bind(&on_finish)
    .bind(&fail_node)
    .bind(&fail_job)
    .bind(&fail_state)
    .bind(&edge_child)
    .bind(&edge_node)
    .bind(&edge_job)
    .bind(&edge_waits)
    .bind(&edge_any)
    .bind(workflow)
    .bind(&limit_names)
    .bind(&limit_fields);
    bind_trace!(query, trace).fetch_one(conn).await
}

/// References as the statement takes them: the 1-based index of a graph's
/// job, or a job's id, each null when the other is given, and the state.
#[allow(clippy::type_complexity)]
fn split_refs(
    refs: impl Iterator<Item = Option<(GraphRef, JobState)>>,
) -> (
    Vec<Option<i32>>,
    Vec<Option<i64>>,
    Vec<Option<&'static str>>,
) {
    let mut nodes = Vec::new();
    let mut jobs = Vec::new();
    let mut states = Vec::new();
    for r in refs {
        let (node, job, state) = match r {
            None => (None, None, None),
            Some((GraphRef::Node(i), s)) => (Some(i as i32 + 1), None, Some(s.as_str())),
            Some((GraphRef::Job(id), s)) => (None, Some(id), Some(s.as_str())),
        };
        nodes.push(node);
        jobs.push(job);
        states.push(state);
    }
    (nodes, jobs, states)
}

/// Cancels every unfinished job of workflow `workflow` (see
/// [`cancel`](super::cancel) for one job): those that wait end
/// `cancelled` at once, running ones are asked to stop. Returns how many
/// jobs that touched.
pub(crate) async fn cancel_workflow(conn: &mut PgConnection, workflow: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(concat!(
        "WITH target AS (
            SELECT id, state FROM jobq_jobs
            WHERE workflow_id = $1
              AND state IN ('pending', 'available', 'scheduled', 'retryable', 'running')
            ORDER BY id
            FOR UPDATE
        ),
        changed AS (
            UPDATE jobq_jobs AS j SET
                state = CASE WHEN t.state = 'running' THEN j.state ELSE 'cancelled' END,
                finalized_at = CASE WHEN t.state = 'running' THEN j.finalized_at ELSE now() END,
                cancel_requested_at = now(), deps_left = NULL,
                errors = CASE WHEN t.state = 'running' THEN j.errors
                    ELSE jobq_push_error(j.errors, jsonb_build_object(
                        'attempt', j.attempt, 'at', now(), 'kind', 'cancelled',
                        'error', 'its workflow was cancelled'))
                    END
            FROM target t
            WHERE j.id = t.id
            RETURNING j.id, t.state AS before, j.state, j.on_finish
        ),
        told AS (
            SELECT count(pg_notify('",
        control_channel!(),
        "', json_build_object('cancel', id)::text)) AS n
            FROM changed WHERE before = 'running'
        )
        SELECT count(*) + (SELECT n FROM told) * 0 + ",
        after_finish!("changed"),
        " FROM changed"
    ))
    .bind(workflow)
    .fetch_one(conn)
    .await
}

/// The jobs job `id` was enqueued after, in id order; empty for a job
/// enqueued without dependencies, `None` when there is no such job.
pub(crate) async fn dependencies_of(
    conn: &mut PgConnection,
    id: i64,
) -> sqlx::Result<Option<Vec<i64>>> {
    let row: Option<(Option<Vec<i64>>,)> =
        sqlx::query_as("SELECT depends_on FROM jobq_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(deps,)| deps.unwrap_or_default()))
}
