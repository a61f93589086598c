//! Throughput over time, for charts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store;

/// What finished in one time bucket of [`throughput`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Throughput {
    /// When the bucket starts (it ends where the next one starts).
    pub start: DateTime<Utc>,
    /// Jobs that completed in the bucket.
    pub completed: i64,
    /// Jobs discarded in the bucket, and retryable jobs whose failed attempt
    /// started in it. A job that failed and then completed counts once, as
    /// completed, in the bucket it completed in.
    pub failed: i64,
}

/// Completed and failed jobs per `bucket`, for the `buckets` buckets up to
/// now (the last one holds the present moment), oldest first, every bucket
/// present. Buckets are aligned on multiples of their length, so the last
/// one is partial. `queue` narrows it to one queue.
///
/// Reads only the jobs that finished in the window, through the indexes the
/// pruner and claims already use: an hour of history costs that hour's rows
/// whatever the table's size.
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) -> jobq::Result<()> {
/// use std::time::Duration;
/// let last_hour = jobq::admin::throughput(&pool, Duration::from_secs(60), 60, None).await?;
/// let done: i64 = last_hour.iter().map(|b| b.completed).sum();
/// println!("{done} jobs completed in the last hour");
/// # Ok(()) }
/// ```
pub async fn throughput(
    pool: &PgPool,
    bucket: Duration,
    buckets: u32,
    queue: Option<&str>,
) -> crate::Result<Vec<Throughput>> {
    let bucket_secs = bucket.as_secs().max(1).min(i64::MAX as u64) as i64;
    let rows = store::throughput(pool, bucket_secs, i64::from(buckets.max(1)), queue).await?;
    Ok(rows
        .into_iter()
        .map(|r| Throughput {
            start: r.start,
            completed: r.completed,
            failed: r.failed,
        })
        .collect())
}

/// A job to enqueue by its kind's name, with JSON arguments: see
/// [`enqueue_json`].
#[derive(Debug, Clone)]
pub struct NamedJob {
    /// The kind (the job's stored name, as `kinds` lists it).
    pub kind: String,
    /// The queue it goes to.
    pub queue: String,
    /// Its arguments, as the job's `Args` serialize.
    pub args: serde_json::Value,
    /// Its priority; lower runs first.
    pub priority: i16,
    /// Attempts it may use in all, at least 1.
    pub max_attempts: i32,
    /// When it may run; `None` is now.
    pub run_at: Option<DateTime<Utc>>,
}

/// Enqueues a job by its kind's name, for a process that does not link the
/// job (the dashboard, a script). Returns its id.
///
/// Nothing here can decode the arguments as the job's `Args` would: that
/// type lives in the worker. A worker that cannot decode them discards the
/// job at its first attempt with serde's message (`missing field "to"`),
/// kept in the job's error history; nothing else is affected. The kind is
/// not checked either: a job of a kind no worker knows waits, and the
/// dashboard's overview warns about it.
///
/// Nor are the kind's limits known here (workers do not publish them): a
/// job of a kind with concurrency or rate limits is enqueued without its
/// limit key, and waits until a worker of that kind starts and adopts it.
pub async fn enqueue_json(pool: &PgPool, job: &NamedJob) -> crate::Result<i64> {
    let queue = crate::queue::QueueName::new(job.queue.as_str())
        .map_err(|e| crate::Error::Enqueue(e.to_string()))?;
    if job.kind.trim().is_empty() {
        return Err(crate::Error::Enqueue("the job's kind is empty".into()));
    }
    if job.max_attempts < 1 {
        return Err(crate::Error::Enqueue(format!(
            "max_attempts must be at least 1, not {}",
            job.max_attempts
        )));
    }
    let args = serde_json::to_string(&job.args)
        .map_err(|e| crate::Error::Enqueue(format!("the arguments do not serialize: {e}")))?;
    if holds_nul(&job.args) {
        return Err(crate::Error::Enqueue(
            "the arguments hold a NUL character (\\u0000), which PostgreSQL's jsonb cannot store"
                .into(),
        ));
    }
    let named = store::NamedJob {
        kind: &job.kind,
        // Workers do not publish their kinds' limits: a limited kind's job
        // enqueued here has no limit key, and waits until a worker of that
        // kind adopts it (as it adopts jobs enqueued before their limits).
        limits: crate::limit::JobLimits::NONE,
        queue: &queue,
        args: &args,
        priority: job.priority,
        max_attempts: job.max_attempts,
        run_at: job.run_at,
    };
    Ok(store::insert_named(pool, &named).await?)
}

/// Whether a string or key anywhere in `value` holds a NUL character.
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}
