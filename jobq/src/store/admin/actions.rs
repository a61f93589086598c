//! Bulk actions: one statement per batch, each its own transaction.

use sqlx::{Connection, PgPool, Postgres, QueryBuilder, Row};

use super::jobs::{IdRange, no_jit, push_filter};
use crate::admin::{Action, JobFilter};
use crate::job::JobState;

/// A job a batch looked at: its state before, and whether it was changed.
pub(crate) struct ActedRow {
    pub id: i64,
    pub state: JobState,
    pub changed: bool,
}

/// The states `action` changes ([`Action::changes`], the one list), as SQL
/// literals: `'retryable', 'completed'`.
fn changed_states(action: Action) -> String {
    action
        .changes()
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The change `action` makes to the jobs of the CTE `batch` (columns `id`,
/// `state`, `unique_key`), as a CTE `changed` returning the changed rows'
/// `id`, `queue` and whether each is `running`; then a CTE `told` that
/// wakes their queues' workers (or, for a cancel, tells the workers of the
/// running ones). Each write checks the job's state again, on the row's
/// newest version, against [`Action::changes`]: a job changed since the
/// batch was read is left alone. `changed` also returns each row's `state`
/// (after) and `on_finish`, for [`finish_sql`].
fn change_sql(action: Action) -> String {
    let states = changed_states(action);
    let wake = concat!(
        "told AS (
            SELECT pg_notify('",
        insert_channel!(),
        "', q.queue) FROM (SELECT DISTINCT queue FROM changed) AS q
        )"
    );
    match action {
        // A job whose unique key another row holds would break the unique
        // index once unfinished: it is left as it is. Within one batch,
        // of the rows sharing a key only the newest is retried (the others
        // would take the same key).
        Action::Retry => format!(
            "changed AS (
                UPDATE jobq_jobs AS j SET
                    state = 'available', scheduled_at = now(), finalized_at = NULL,
                    cancel_requested_at = NULL, lost_attempts = 0, started_attempt = NULL,
                    max_attempts = greatest(j.max_attempts, j.attempt + 1)
                FROM (SELECT id, row_number() OVER (
                          PARTITION BY unique_key, CASE WHEN unique_key IS NULL THEN id END
                          ORDER BY id DESC) AS rank
                      FROM batch) AS b
                WHERE j.id = b.id AND b.rank = 1
                  AND j.state IN ({states})
                  AND (j.unique_key IS NULL OR NOT EXISTS (
                      SELECT 1 FROM jobq_jobs o
                      WHERE o.unique_key = j.unique_key AND o.id <> j.id
                        AND (o.unique_states & jobq_state_bit(o.state)) <> 0))
                RETURNING j.id, j.queue, false AS running, j.state, j.on_finish
            ),
            {wake}"
        ),
        Action::RunNow => format!(
            "changed AS (
                UPDATE jobq_jobs AS j SET state = 'available', scheduled_at = now()
                FROM batch b
                WHERE j.id = b.id AND j.state IN ({states})
                RETURNING j.id, j.queue, false AS running, j.state, j.on_finish
            ),
            {wake}"
        ),
        // As `store::cancel`, for many.
        Action::Cancel => format!(
            "changed AS (
                UPDATE jobq_jobs AS j SET
                    state = CASE WHEN j.state = 'running' THEN j.state ELSE 'cancelled' END,
                    finalized_at = CASE WHEN j.state = 'running' THEN j.finalized_at ELSE now() END,
                    cancel_requested_at = now(), deps_left = NULL
                FROM batch b
                WHERE j.id = b.id AND j.state IN ({states})
                RETURNING j.id, j.queue, j.state = 'running' AS running, j.state, j.on_finish
            ),
            told AS (
                SELECT pg_notify('{control}', json_build_object('cancel', id)::text)
                FROM changed WHERE running
            )",
            control = control_channel!()
        ),
        // A running job is not among them: its worker would finish it
        // unseen.
        Action::Delete => format!(
            "changed AS (
                DELETE FROM jobq_jobs AS j USING batch b
                WHERE j.id = b.id AND j.state IN ({states})
                RETURNING j.id, j.queue, false AS running, j.state, j.on_finish
            ),
            told AS (SELECT 1)"
        ),
    }
}

/// An expression (0) that sets off what the end of a followed job the action
/// ended must (see `jobq_finished`, migrations 6 and 10): for a cancelled
/// job, or a deleted one whatever its state, its waiters are told (one of a
/// deleted job then finds no job) and its dependents released or cancelled.
/// A deleted job counts as a dependency that did not complete: it is
/// flagged with bit 4 of the mask, so that the dependents' error entry says
/// it was deleted.
fn finish_sql(action: Action) -> &'static str {
    match action {
        Action::Retry | Action::RunNow => "0",
        Action::Cancel => after_finish!("changed"),
        Action::Delete => {
            "(SELECT jobq_finished(array_agg(id), array_agg(state),
                                   array_agg(on_finish | 4::smallint))
              FROM changed WHERE on_finish IS NOT NULL)"
        }
    }
}

/// Runs one batch: `batch` is the CTE selecting the jobs.
async fn act(
    pool: &PgPool,
    mut qb: QueryBuilder<Postgres>,
    action: Action,
) -> sqlx::Result<Vec<ActedRow>> {
    qb.push("), ");
    qb.push(change_sql(action));
    qb.push(
        " SELECT b.id, b.state, (c.id IS NOT NULL) AS changed
         FROM batch b LEFT JOIN changed c ON c.id = b.id
         WHERE (SELECT count(*) FROM told) >= 0 AND ",
    );
    qb.push(finish_sql(action));
    qb.push(" = 0 ORDER BY b.id DESC");
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    no_jit(&mut tx).await?;
    let rows = qb.build().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(ActedRow {
                id: r.try_get("id")?,
                state: r.try_get("state")?,
                changed: r.try_get("changed")?,
            })
        })
        .collect()
}

/// Does `action` to the jobs `ids`, in one transaction; returns a row per
/// job found.
pub(crate) async fn act_on_ids(
    pool: &PgPool,
    action: Action,
    ids: &[i64],
) -> sqlx::Result<Vec<ActedRow>> {
    let mut qb = QueryBuilder::new(
        "WITH batch AS (SELECT id, state, unique_key FROM jobq_jobs WHERE id = ANY(",
    );
    qb.push_bind(ids.to_vec()).push(")");
    act(pool, qb, action).await
}

/// Does `action` to the next `limit` jobs matching `filter` below id
/// `before` (newest first), in one transaction; returns a row per job
/// looked at: fewer than `limit` when no job is left. `range` is the
/// filter's [`id_range`](super::id_range).
pub(crate) async fn act_on_filter(
    pool: &PgPool,
    action: Action,
    filter: &JobFilter,
    range: IdRange,
    before: Option<i64>,
    limit: usize,
) -> sqlx::Result<Vec<ActedRow>> {
    let mut qb =
        QueryBuilder::new("WITH batch AS (SELECT id, state, unique_key FROM jobq_jobs WHERE TRUE");
    push_filter(&mut qb, filter, range);
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before);
    }
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    act(pool, qb, action).await
}
