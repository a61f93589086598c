//! Cancelling jobs.

use sqlx::{PgConnection, PgPool};

use crate::job::JobState;

/// Cancels a job: one that waits ends `cancelled` at once; one that runs is
/// marked, and its worker is told through NOTIFY to fire its token. Returns
/// the job's state before the call, or `None` when there is no such job.
pub(crate) async fn cancel(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<JobState>> {
    sqlx::query_scalar(concat!(
        "WITH target AS (
            SELECT id, state FROM jobq_jobs WHERE id = $1 FOR UPDATE
        ),
        changed AS (
            UPDATE jobq_jobs AS j SET
                state = CASE WHEN t.state = 'running' THEN j.state ELSE 'cancelled' END,
                finalized_at = CASE WHEN t.state = 'running' THEN j.finalized_at ELSE now() END,
                cancel_requested_at = now(), deps_left = NULL
            FROM target t
            WHERE j.id = t.id
              AND t.state IN ('pending', 'available', 'scheduled', 'retryable', 'running')
            RETURNING j.id, t.state AS before, j.state, j.on_finish
        ),
        told AS (
            SELECT pg_notify('",
        control_channel!(),
        "', json_build_object('cancel', id)::text)
            FROM changed WHERE before = 'running'
        )
        SELECT t.state FROM target t WHERE (SELECT count(*) FROM told) >= 0
            AND ",
        after_finish!("changed"),
        " = 0"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// This worker's running (or buffered) jobs whose cancellation was asked:
/// for replaying requests whose NOTIFY was missed while the listener was
/// disconnected.
pub(crate) async fn cancel_requested(pool: &PgPool, worker_id: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM jobq_jobs
         WHERE state = 'running' AND attempted_by = $1 AND cancel_requested_at IS NOT NULL",
    )
    .bind(worker_id)
    .fetch_all(pool)
    .await
}
