//! Limits: the limited claim, queue limits, and giving old jobs their
//! limit key. The design is in [`crate::limit`].

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::claim::{Claim, read_claim};
use crate::queue::QueueName;

/// The first key of the limits' advisory locks (the second is
/// `hashtext(limit)`). Spelled in `jobq_claim_limited` (migration 8) too.
pub const LIMIT_LOCK_CLASS: i32 = 27250;

/// One kind as the limited claim sees it: its stored name, and its job's
/// limits (all `None` for a kind without limits, claimed this way only
/// because its queue has a limit).
#[derive(Debug, Clone)]
pub(crate) struct LimitedKind {
    /// The stored kind: the job's name or an alias.
    pub kind: String,
    /// The job's name, which names the limit; `None` when it has none.
    pub name: Option<&'static str>,
    pub partition: Option<&'static str>,
    pub concurrency: Option<i32>,
    pub rate: Option<i32>,
    pub window_ms: Option<i64>,
}

/// Claims up to `room` jobs of `kinds` in `queue` within their limits and
/// the queue's (see `jobq_claim_limited` in migration 8, and
/// [`crate::limit`] for why it holds across workers).
pub(crate) async fn claim_limited(
    conn: &mut PgConnection,
    queue: &str,
    kinds: &[LimitedKind],
    room: i64,
    worker_id: i64,
    claim_at: DateTime<Utc>,
) -> sqlx::Result<Claim> {
    let rows =
        sqlx::query("SELECT * FROM jobq_claim_limited($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(queue)
            .bind(kinds.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>())
            .bind(kinds.iter().map(|k| k.name).collect::<Vec<_>>())
            .bind(kinds.iter().map(|k| k.partition).collect::<Vec<_>>())
            .bind(kinds.iter().map(|k| k.concurrency).collect::<Vec<_>>())
            .bind(kinds.iter().map(|k| k.rate).collect::<Vec<_>>())
            .bind(kinds.iter().map(|k| k.window_ms).collect::<Vec<_>>())
            .bind(i32::try_from(room).unwrap_or(i32::MAX))
            .bind(worker_id)
            .bind(claim_at)
            .fetch_all(conn)
            .await?;
    read_claim(&rows)
}

/// Gives the waiting jobs of `kind` in `queue` that have no limit key (they
/// were enqueued before their job had limits) the key they would have been
/// enqueued with, so that the limited claim finds them. Returns how many.
pub(crate) async fn adopt_limit_keys(
    conn: &mut PgConnection,
    queue: &str,
    kind: &LimitedKind,
) -> sqlx::Result<u64> {
    let Some(name) = kind.name else {
        return Ok(0);
    };
    let done = sqlx::query(concat!(
        "UPDATE jobq_jobs SET limit_key = ",
        limit_key_sql!("args", "$3", "$4"),
        " WHERE state = 'available' AND queue = $1 AND kind = $2 AND limit_key IS NULL"
    ))
    .bind(queue)
    .bind(&kind.kind)
    .bind(name)
    .bind(kind.partition)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Sets (or, with all `None`, clears) a queue's limits, and wakes the
/// queue's producers so they claim under the new limits at once.
pub(crate) async fn set_queue_limit(
    conn: &mut PgConnection,
    queue: &QueueName,
    concurrency: Option<i32>,
    rate: Option<i32>,
    window_ms: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "WITH q AS (
            INSERT INTO jobq_queues (name, concurrency_limit, rate_limit, rate_window_ms)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (name) DO UPDATE
                SET concurrency_limit = $2, rate_limit = $3, rate_window_ms = $4,
                    updated_at = now()
            RETURNING name
        )
        SELECT pg_notify('",
        insert_channel!(),
        "', name) FROM q"
    ))
    .bind(queue)
    .bind(concurrency)
    .bind(rate)
    .bind(window_ms)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limited_claim_locks_under_the_lock_class() {
        let sql = include_str!("../../migrations/0008_limits.sql");
        assert!(sql.contains(&format!("pg_advisory_xact_lock({LIMIT_LOCK_CLASS}, ")));
    }
}
