//! Read-only queries for people and tools: statistics now; the CLI, the
//! dashboard and metrics read through here too.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use crate::job::JobState;

/// One row of [`stats`]: a queue, a state, how many jobs, and the oldest
/// due time among the claimable ones.
pub(crate) struct StatRow {
    pub queue: String,
    /// `None` for a paused queue that holds no job.
    pub state: Option<JobState>,
    pub count: i64,
    pub oldest_due: Option<DateTime<Utc>>,
    pub paused: bool,
    pub now: DateTime<Utc>,
}

/// Counts jobs per queue and state, with paused queues that hold no job.
pub(crate) async fn stats(pool: &PgPool) -> sqlx::Result<Vec<StatRow>> {
    let rows = sqlx::query(
        "WITH counts AS (
            SELECT queue, state, count(*) AS n,
                   min(scheduled_at) FILTER (
                       WHERE state IN ('available', 'scheduled', 'retryable')
                         AND scheduled_at <= now()) AS oldest_due
            FROM jobq_jobs GROUP BY queue, state
        )
        SELECT coalesce(c.queue, q.name) AS queue, c.state, coalesce(c.n, 0) AS n,
               c.oldest_due, (q.paused_at IS NOT NULL) AS paused, now() AS now
        FROM counts c FULL JOIN jobq_queues q ON q.name = c.queue
        ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StatRow {
                queue: r.try_get("queue")?,
                state: r.try_get("state")?,
                count: r.try_get("n")?,
                oldest_due: r.try_get("oldest_due")?,
                paused: r.try_get::<Option<bool>, _>("paused")?.unwrap_or(false),
                now: r.try_get("now")?,
            })
        })
        .collect()
}
