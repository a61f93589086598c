//! What only the dashboard asks: how many jobs finished per time bucket
//! (served by indexes the worker already keeps, so a chart costs the rows
//! of its window, not the table), and an enqueue by kind name with JSON
//! arguments, for a process that does not link the jobs.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use crate::limit::JobLimits;
use crate::queue::QueueName;

/// What finished in one bucket of [`throughput`].
pub(crate) struct BucketRow {
    pub start: DateTime<Utc>,
    pub completed: i64,
    pub failed: i64,
}

/// Completed and failed jobs per bucket of `bucket_secs` seconds, for the
/// `buckets` buckets that end with the one holding `now()`, oldest first,
/// every bucket present (zero when nothing finished). Buckets are aligned on
/// multiples of their length since the epoch, so two reads a few seconds
/// apart draw the same bars.
///
/// Completed: jobs that completed in the bucket. Failed: jobs discarded in
/// it, and retryable jobs whose failed attempt started in it; a job that
/// failed and later completed counts once, as completed.
///
/// Finished jobs are found through `jobq_jobs_prunable` (state, finalized_at),
/// whose predicate the first branch repeats word for word so the planner can
/// use it; the few finished jobs it leaves out (their unique key still holds)
/// through `jobq_jobs_finished_held` (the same columns, migration 10), whose
/// predicate the second branch implies; retryable jobs through
/// `jobq_jobs_due`.
/// Over 10 million rows (busy machine): 80-160 ms for an hour of 14,000
/// finished jobs, 290 ms for a day of 335,000.
pub(crate) async fn throughput(
    pool: &PgPool,
    bucket_secs: i64,
    buckets: i64,
    queue: Option<&str>,
) -> sqlx::Result<Vec<BucketRow>> {
    let mut tx = pool.begin().await?;
    // The window's start is known before planning (not computed in the
    // statement), so the planner sizes the scan from the index's statistics;
    // and JIT stays off: compiling costs more than this short scan.
    sqlx::query("SELECT set_config('jit', 'off', true)")
        .execute(&mut *tx)
        .await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    let first = (now.timestamp().div_euclid(bucket_secs) - buckets + 1) * bucket_secs;
    let since = DateTime::from_timestamp(first, 0).unwrap_or(now);
    let rows = sqlx::query(concat!(
        "WITH finished AS (
            SELECT finalized_at AS at, state = 'completed' AS ok FROM jobq_jobs
            WHERE state IN ('completed', 'discarded') AND finalized_at >= $1
              AND ",
        prunable_rows!(),
        " AND ($4::text IS NULL OR queue = $4)
            UNION ALL
            SELECT finalized_at, state = 'completed' FROM jobq_jobs
            WHERE state IN ('completed', 'discarded') AND finalized_at >= $1
              AND ",
        finished_held!(),
        " AND ($4::text IS NULL OR queue = $4)
            UNION ALL
            SELECT attempted_at, false FROM jobq_jobs
            WHERE state = 'retryable' AND attempted_at >= $1
              -- Implied (a retry is due after the attempt that failed), and
              -- checked inside jobq_jobs_due, so older retryable jobs cost
              -- no heap read.
              AND scheduled_at >= $1
              AND ($4::text IS NULL OR queue = $4)
        ),
        counted AS (
            SELECT floor(extract(epoch FROM at - $1) / $2)::bigint AS bucket,
                   count(*) FILTER (WHERE ok) AS completed,
                   count(*) FILTER (WHERE NOT ok) AS failed
            FROM finished GROUP BY 1
        )
        SELECT $1 + make_interval(secs => (b * $2)::float8) AS start,
               coalesce(c.completed, 0) AS completed, coalesce(c.failed, 0) AS failed
        FROM generate_series(0::bigint, $3 - 1) AS b
        LEFT JOIN counted c ON c.bucket = b
        ORDER BY b"
    ))
    .bind(since)
    .bind(bucket_secs as f64)
    .bind(buckets)
    .bind(queue)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.into_iter()
        .map(|r| {
            Ok(BucketRow {
                start: r.try_get("start")?,
                completed: r.try_get("completed")?,
                failed: r.try_get("failed")?,
            })
        })
        .collect()
}

/// A job enqueued by name, with arguments as JSON text.
pub(crate) struct NamedJob<'a> {
    pub kind: &'a str,
    /// The kind's limits, as `bind_job!` takes them.
    pub limits: JobLimits,
    pub queue: &'a QueueName,
    pub args: &'a str,
    pub priority: i16,
    pub max_attempts: i32,
    pub run_at: Option<DateTime<Utc>>,
}

/// Inserts one job of a kind named at run time, and notifies its queue if
/// a producer sleeps on it: the statement of `insert_one`, for a caller
/// that holds the kind as a string rather than a `Job` type.
pub(crate) async fn insert_named(pool: &PgPool, job: &NamedJob<'_>) -> sqlx::Result<i64> {
    bind_job!(
        sqlx::query_scalar(concat!(
            "INSERT INTO jobq_jobs (",
            job_columns!(),
            ") VALUES (",
            job_values!(),
            ") RETURNING id, ",
            notify_if_asleep!("queue")
        )),
        job
    )
    .fetch_one(pool)
    .await
}
