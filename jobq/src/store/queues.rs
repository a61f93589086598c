//! Queue control: pausing and resuming.

use sqlx::PgConnection;

use crate::queue::QueueName;

/// Pauses (`paused = true`) or resumes a queue and tells every worker.
pub(crate) async fn set_paused(
    conn: &mut PgConnection,
    queue: &QueueName,
    paused: bool,
) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "WITH q AS (
            INSERT INTO jobq_queues (name, paused_at) VALUES ($1, CASE WHEN $2 THEN now() END)
            ON CONFLICT (name) DO UPDATE
                SET paused_at = CASE WHEN $2 THEN coalesce(jobq_queues.paused_at, now()) END,
                    updated_at = now()
            RETURNING name
        )
        SELECT pg_notify('",
        insert_channel!(),
        "', name) FROM q"
    ))
    .bind(queue)
    .bind(paused)
    .execute(conn)
    .await?;
    Ok(())
}
