//! Looking at jobs and acting on them: the queries behind the `jobq` command
//! line and the dashboard, for your own tools too.
//!
//! Every function takes the pool and returns plain structs that serialize
//! with serde (durations as seconds, `*_seconds` in JSON; times as RFC 3339),
//! so a tool prints them as a table or as JSON without a second model.
//!
//! - [`overview`]: per queue, the jobs waiting and running, lag, throughput,
//!   pause, limit and the workers serving it; each kind's limits and their
//!   use ([`KindLimits`]); with [`Warning`]s.
//! - [`list_jobs`], [`job`], [`count_by_state`], [`count_matching`]: find jobs
//!   by a [`JobFilter`], a page at a time ([`Cursor`]).
//! - [`apply`]: retry, cancel, delete or run now ([`Action`]) jobs by id or
//!   by filter, in bounded batches, reporting [`Progress`].
//! - [`workers`], [`kinds`], [`cron_jobs`]: what live workers publish.
//! - [`prune_preview`]: what a [`Retention`](crate::Retention) would delete.
//! - [`throughput`]: completed and failed jobs per time bucket, for charts;
//!   [`enqueue_json`]: a job by its kind's name with JSON arguments, for a
//!   process that does not link the jobs (the dashboard).
//! - [`pause_queue`](crate::pause_queue) and
//!   [`resume_queue`](crate::resume_queue) change a queue.
//!
//! # What live workers publish
//!
//! A process that does not link your jobs (the command line, a dashboard)
//! learns about them from the workers: each worker records at start the
//! queues it runs (with their concurrency) and the job kinds it knows (with
//! queue, cron schedule, time zone, timeout, attempts and where each is
//! defined), and these rows go with the worker's when it stops or is taken
//! for dead. From them come [`Warning`]s (a queue nobody serves, jobs of a
//! kind no worker knows) and each cron job's next tick.
//!
//! # Cost on a big table
//!
//! The queries use indexes, so they stay quick with millions of finished
//! jobs in the table: counts of waiting and running jobs read only those
//! jobs; failed jobs are counted through an index of their own; finished
//! jobs are counted over the last hour only ([`overview`]). A list or count
//! by a filter that no index narrows (arguments, kind, queue, finished
//! states) reads at most a window of the newest jobs ([`list_jobs`],
//! [`count_matching`]) and says so; a time range reads only the ids it
//! covers. [`count_by_state`] alone counts every match: on a big table,
//! narrow its filter.
//!
//! ```no_run
//! use jobq::admin::{self, Action, JobFilter, Target};
//! use jobq::JobState;
//!
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), jobq::Error> {
//! let overview = admin::overview(&pool).await?;
//! for w in &overview.warnings {
//!     eprintln!("warning: {w}");
//! }
//! // Retry every discarded `send_email` job, 1,000 per transaction.
//! let filter = JobFilter {
//!     states: vec![JobState::Discarded],
//!     kinds: vec!["send_email".into()],
//!     ..JobFilter::default()
//! };
//! let done = admin::apply(&pool, Action::Retry, Target::Filter(&filter), 1000, |p| {
//!     eprintln!("{} retried so far", p.changed);
//! })
//! .await?;
//! println!("retried {} jobs", done.progress.changed);
//! # Ok(()) }
//! ```

mod actions;
mod dashboard;
mod jobs;
mod limits;
mod published;
mod text;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::Result;
use crate::job::JobState;
use crate::maintenance::pruner::{Keep, Retention};
use crate::store;

pub use actions::{Action, BulkOutcome, DEFAULT_BATCH, Progress, Target, Unchanged, apply};
pub use dashboard::{NamedJob, Throughput, enqueue_json, throughput};
pub(crate) use jobs::UNKNOWN_KIND_CAP;
pub use jobs::{
    Attempt, Count, Cursor, Event, JobDetail, JobFilter, JobPage, JobSummary, LinkedJob,
    MAX_DEPENDENTS, SEARCH_WINDOW, count_by_state, count_matching, job, list_jobs,
};
pub use limits::{
    BUSIEST_PARTITIONS, KindLimits, PartitionUse, PartitionsUse, QueueLimit, RateLimit,
};
pub use published::{
    CronJob, CronRun, KindInfo, LiveRetention, RECENT_CRON_RUNS, WorkerInfo, WorkerQueue,
    cron_jobs, kinds, live_retention, workers,
};
pub use text::{
    FilterError, FilterText, format_count, format_duration, format_relative, parse_time,
};

/// Durations as seconds (a float) in JSON.
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) mod option {
        use std::time::Duration;

        use serde::Serializer;

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&d.as_secs_f64()),
                None => s.serialize_none(),
            }
        }
    }
}

/// The age of `then` at `now`, zero when it lies ahead.
pub(crate) fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

/// The state of every queue, and what looks wrong: see [`overview`].
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// The database's time when it was taken.
    pub at: DateTime<Utc>,
    /// Every queue that holds an unfinished job, finished one in the last
    /// hour, is paused, has a limit, or is run by a live worker; by name.
    pub queues: Vec<QueueOverview>,
    /// The limits live workers declare for their kinds, with their use; by
    /// kind.
    pub kind_limits: Vec<KindLimits>,
    /// Live workers (see [`workers`]).
    pub workers: i64,
    /// What needs a look, most urgent first.
    pub warnings: Vec<Warning>,
}

/// One queue in the [`Overview`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueOverview {
    /// The queue's name.
    pub queue: String,
    /// Whether the queue is paused ([`pause_queue`](crate::pause_queue)).
    pub paused: bool,
    /// Jobs that wait for other jobs to finish (`.after(..)`).
    pub pending: i64,
    /// Jobs that may run now, not claimed yet.
    pub available: i64,
    /// Jobs waiting for their time (enqueued with a delay, or cron ticks not
    /// due).
    pub scheduled: i64,
    /// Jobs running now.
    pub running: i64,
    /// Jobs that failed and wait for their next attempt.
    pub retryable: i64,
    /// Jobs out of attempts, or that can never run, not pruned yet.
    pub discarded: i64,
    /// Cancelled jobs, not pruned yet.
    pub cancelled: i64,
    /// How long the oldest job that is due has waited past its due time:
    /// the queue's lag (`None` when no job waits).
    #[serde(rename = "lag_seconds", with = "seconds::option")]
    pub lag: Option<Duration>,
    /// Jobs completed in the last minute.
    pub completed_last_minute: i64,
    /// Jobs completed in the last hour.
    pub completed_last_hour: i64,
    /// Jobs whose attempt failed in the last minute: discarded then, or
    /// waiting to be retried after an attempt that started then.
    pub failed_last_minute: i64,
    /// The same over the last hour.
    pub failed_last_hour: i64,
    /// Live workers that run this queue.
    pub workers: i64,
    /// How many of its jobs those workers run at once, together.
    pub concurrency: i64,
    /// Its limit, set at run time
    /// ([`set_queue_limit`](crate::set_queue_limit)), with its use; `None`
    /// without one.
    pub limit: Option<QueueLimit>,
}

/// Something that needs a look, in [`Overview::warnings`]. `Display` says it
/// in a sentence with what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// Jobs wait in a queue that no live worker runs.
    QueueNotServed {
        /// The queue.
        queue: String,
        /// Its unfinished jobs (available, scheduled, retryable).
        waiting: i64,
    },
    /// Jobs that may run wait in a queue whose workers do not know their
    /// kind (renamed without `aliases`, or the worker lacks the job).
    UnknownKind {
        /// The stored kind.
        kind: String,
        /// The queue they wait in.
        queue: String,
        /// How many wait (counted up to 10,000; more shows as 10,001).
        waiting: i64,
    },
    /// A live worker knows this cron job, but none runs its queue, so no
    /// tick is enqueued.
    CronNotServed {
        /// The cron job's kind.
        kind: String,
        /// Its queue.
        queue: String,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::QueueNotServed { queue, waiting } => write!(
                f,
                "queue `{queue}` has {waiting} waiting job(s) and no live worker runs it; \
                 start a worker with `.queue(\"{queue}\", n)`"
            ),
            Warning::UnknownKind {
                kind,
                queue,
                waiting,
            } => {
                let waiting = if *waiting > UNKNOWN_KIND_CAP {
                    format!("more than {}", UNKNOWN_KIND_CAP)
                } else {
                    waiting.to_string()
                };
                write!(
                    f,
                    "{waiting} job(s) of kind `{kind}` wait in queue `{queue}`, and no live \
                     worker that runs `{queue}` knows that kind; if the job was renamed, \
                     add `aliases = [\"{kind}\"]` to its #[job]"
                )
            }
            Warning::CronNotServed { kind, queue } => write!(
                f,
                "cron job `{kind}` never ticks: no live worker runs its queue `{queue}`"
            ),
        }
    }
}

/// Every queue's state and the [`Warning`]s. Reads the unfinished jobs
/// (through the indexes jobq claims with), the finished ones of the last
/// hour, and what live workers publish; never the whole history.
pub async fn overview(pool: &PgPool) -> Result<Overview> {
    let mut conn = pool.begin().await?;
    store::no_jit(&mut conn).await?;
    store::no_parallel(&mut conn).await?;
    let at = store::admin_now(&mut conn).await?;
    let mut queues = store::queue_overview(&mut conn).await?;
    let served = store::served_queues(&mut conn).await?;
    for q in &mut queues {
        if let Some(s) = served.iter().find(|s| s.queue == q.queue) {
            q.workers = s.workers;
            q.concurrency = s.concurrency;
        }
    }
    for s in &served {
        if !queues.iter().any(|q| q.queue == s.queue) {
            queues.push(QueueOverview {
                queue: s.queue.clone(),
                workers: s.workers,
                concurrency: s.concurrency,
                ..QueueOverview::default()
            });
        }
    }
    for (queue, limit) in store::queue_limits(&mut conn).await? {
        match queues.iter_mut().find(|q| q.queue == queue) {
            Some(q) => q.limit = Some(limit),
            None => queues.push(QueueOverview {
                queue,
                limit: Some(limit),
                ..QueueOverview::default()
            }),
        }
    }
    let kind_limits = store::kind_limits(&mut conn).await?;
    queues.sort_by(|a, b| a.queue.cmp(&b.queue));
    let mut warnings = Vec::new();
    for q in queues.iter().filter(|q| q.workers == 0) {
        let waiting = q.available + q.scheduled + q.retryable;
        if waiting > 0 {
            warnings.push(Warning::QueueNotServed {
                queue: q.queue.clone(),
                waiting,
            });
        }
    }
    warnings.extend(store::unknown_kinds(&mut conn).await?);
    warnings.extend(store::cron_not_served(&mut conn).await?);
    let workers = store::live_workers(&mut conn).await?;
    conn.commit().await?;
    Ok(Overview {
        at,
        queues,
        kind_limits,
        workers,
        warnings,
    })
}

/// How many prunable jobs per state [`prune_preview`] counts exactly.
const PRUNE_COUNT_CAP: i64 = 100_000;

/// What [`prune_preview`] found for one state.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePreview {
    /// `completed`, `discarded` or `cancelled`.
    pub state: JobState,
    /// How long the retention keeps jobs in this state (`None`: for ever).
    #[serde(rename = "keep_seconds", with = "seconds::option")]
    pub keep: Option<Duration>,
    /// Jobs the pruner would delete now: exact up to 100,000, estimated
    /// past it.
    pub prunable: Count,
    /// When the oldest of them finished.
    pub oldest: Option<DateTime<Utc>>,
}

/// What the workers' pruner would delete now under `retention`: per
/// finished state, how many jobs and the oldest. Deletes nothing. Counts
/// through the index the pruner walks, up to 100,000 jobs per state, and
/// estimates past that.
pub async fn prune_preview(pool: &PgPool, retention: &Retention) -> Result<Vec<PrunePreview>> {
    let mut out = Vec::new();
    for (state, keep) in [
        (JobState::Completed, retention.completed),
        (JobState::Discarded, retention.discarded),
        (JobState::Cancelled, retention.cancelled),
    ] {
        let keep = match keep {
            Keep::For(d) => Some(d),
            Keep::Forever => None,
        };
        let exact = Count::exactly;
        let (prunable, oldest) = match keep {
            Some(d) => {
                let keep_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                let (n, oldest) =
                    store::count_prunable(pool, state, keep_ms, PRUNE_COUNT_CAP).await?;
                let count = if n > PRUNE_COUNT_CAP {
                    let estimate = store::estimate_prunable(pool, state, keep_ms).await?;
                    Count {
                        count: estimate.max(n),
                        exact: false,
                        searched: None,
                    }
                } else {
                    exact(n)
                };
                (count, oldest)
            }
            None => (exact(0), None),
        };
        out.push(PrunePreview {
            state,
            keep,
            prunable,
            oldest,
        });
    }
    Ok(out)
}
