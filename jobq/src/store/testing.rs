//! The statements of `jobq::testing`: reading jobs back for assertions, and
//! making jobs due for a drain. Read-only but for [`make_due`], and never on
//! a worker's path.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::job::JobState;

/// A stored job as the test helpers show it.
#[derive(Debug, Clone)]
pub(crate) struct StoredJob {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    pub state: JobState,
    pub priority: i16,
    pub scheduled_at: DateTime<Utc>,
    /// The arguments as JSON text.
    pub args: String,
}

/// The jobs whose kind is one of `kinds` (every job when `None`), in id
/// order, at most `limit` of them, and how many there are in all. Run on the
/// caller's connection, so inside its transaction it sees that
/// transaction's uncommitted jobs.
pub(crate) async fn stored_jobs(
    conn: &mut PgConnection,
    kinds: Option<&[&str]>,
    limit: i64,
) -> sqlx::Result<(Vec<StoredJob>, i64)> {
    let rows = sqlx::query(
        "SELECT id, kind, queue, state, priority, scheduled_at, args::text AS args,
                count(*) OVER () AS total
         FROM jobq_jobs
         WHERE $1::text[] IS NULL OR kind = ANY ($1)
         ORDER BY id
         LIMIT $2",
    )
    .bind(kinds)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        None => 0,
    };
    let jobs = rows
        .iter()
        .map(|r| {
            Ok(StoredJob {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                queue: r.try_get("queue")?,
                state: r.try_get("state")?,
                priority: r.try_get("priority")?,
                scheduled_at: r.try_get("scheduled_at")?,
                args: r.try_get("args")?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok((jobs, total))
}

/// The queues holding a job of one of `kinds` that is waiting (available,
/// scheduled or retryable), by name.
pub(crate) async fn waiting_queues(
    conn: &mut PgConnection,
    kinds: &[String],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT queue FROM jobq_jobs
         WHERE kind = ANY ($1) AND state IN ('available', 'scheduled', 'retryable')
         ORDER BY queue",
    )
    .bind(kinds)
    .fetch_all(conn)
    .await
}

/// The kinds among `kinds` of the `available` jobs of `queue`: what a
/// claim of the queue would run.
pub(crate) async fn available_kinds(
    conn: &mut PgConnection,
    queue: &str,
    kinds: &[String],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT kind FROM jobq_jobs
         WHERE queue = $1 AND state = 'available' AND kind = ANY ($2)
         ORDER BY kind",
    )
    .bind(queue)
    .bind(kinds)
    .fetch_all(conn)
    .await
}

/// Makes the `scheduled` and `retryable` jobs of `queue` due by `until`
/// `available` (every one of them when `until` is `None`), as a claim makes
/// due jobs available. Their `scheduled_at` is kept: a job run early still
/// sees when it was due (`JobContext::scheduled_at`, a cron job's tick), and
/// claims order them as they would have. Returns how many it made available.
pub(crate) async fn make_due(
    conn: &mut PgConnection,
    queue: &str,
    until: Option<DateTime<Utc>>,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE jobq_jobs SET state = 'available'
         WHERE queue = $1 AND state IN ('scheduled', 'retryable')
           AND scheduled_at <= coalesce($2, 'infinity'::timestamptz)",
    )
    .bind(queue)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The state of job `id`, `None` when it is gone.
pub(crate) async fn job_state(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<JobState>> {
    sqlx::query_scalar("SELECT state FROM jobq_jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}
