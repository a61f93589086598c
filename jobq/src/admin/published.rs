//! What live workers publish: themselves, their kinds, their cron jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::PgPool;

use super::seconds;
use crate::error::Result;
use crate::job::JobState;
use crate::store;

/// A live worker process: [`workers`].
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// Its id (`jobq_jobs.attempted_by` of the jobs it runs).
    pub id: i64,
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long ago it last renewed its lease.
    #[serde(rename = "heartbeat_age_seconds", with = "seconds")]
    pub heartbeat_age: Duration,
    /// How long it may miss its heartbeat before it is taken for dead.
    #[serde(rename = "lease_seconds", with = "seconds::option")]
    pub lease: Option<Duration>,
    /// Whether it missed its lease: it is probably dead, and a rescuer will
    /// take its jobs back.
    pub stale: bool,
    /// The queues it runs.
    pub queues: Vec<WorkerQueue>,
    /// Jobs it runs now (or holds, claimed, about to start).
    pub running: i64,
    /// Job kinds it knows.
    pub kinds: i64,
}

/// A queue a worker runs, in [`WorkerInfo::queues`].
#[derive(Debug, Clone, Serialize)]
pub struct WorkerQueue {
    /// The queue.
    pub queue: String,
    /// How many of its jobs the worker runs at once (`None` for a worker of
    /// a jobq version that did not say).
    pub concurrency: Option<i32>,
}

/// Live workers, oldest first.
pub async fn workers(pool: &PgPool) -> Result<Vec<WorkerInfo>> {
    Ok(store::workers(pool).await?)
}

/// A job kind that live workers know: [`kinds`]. Workers that disagree
/// about a kind's settings (during a deploy) give one entry per version.
#[derive(Debug, Clone, Serialize)]
pub struct KindInfo {
    /// The stored name.
    pub kind: String,
    /// Older names it still runs.
    pub aliases: Vec<String>,
    /// Its default queue.
    pub queue: String,
    /// Its default priority.
    pub priority: i16,
    /// Attempts in all.
    pub max_attempts: i32,
    /// One attempt's limit, if any.
    #[serde(rename = "timeout_seconds", with = "seconds::option")]
    pub timeout: Option<Duration>,
    /// Its cron expression, for a cron job.
    pub cron: Option<String>,
    /// The time zone `cron` is read in (`None`: UTC).
    pub tz: Option<String>,
    /// Where it is defined: `module (file.rs:line)`.
    pub source: String,
    /// How many live workers know it so.
    pub workers: i64,
}

/// Every job kind live workers know, by name.
pub async fn kinds(pool: &PgPool) -> Result<Vec<KindInfo>> {
    Ok(store::kinds(pool).await?)
}

/// A cron job: [`cron_jobs`].
#[derive(Debug, Clone, Serialize)]
pub struct CronJob {
    /// Its kind.
    pub kind: String,
    /// Its queue (`None` when no live worker knows it any more).
    pub queue: Option<String>,
    /// Its cron expression (`None` when no live worker knows it).
    pub schedule: Option<String>,
    /// The time zone it is read in.
    pub tz: Option<String>,
    /// Whether a live worker runs its queue, and so enqueues its ticks.
    pub served: bool,
    /// Its next tick after now (`None` when not served, or the expression
    /// never fires again).
    pub next_tick: Option<DateTime<Utc>>,
    /// The latest tick enqueued; before the first, when a worker first
    /// scheduled the job (ticks missed after it are caught up).
    pub last_tick: Option<DateTime<Utc>>,
    /// The job of that tick, while it is kept.
    pub last_run: Option<CronRun>,
}

/// The job of a cron job's latest tick, in [`CronJob::last_run`].
#[derive(Debug, Clone, Serialize)]
pub struct CronRun {
    /// The job.
    pub id: i64,
    /// Its state: its outcome once it finished.
    pub state: JobState,
    /// When it finished.
    pub finalized_at: Option<DateTime<Utc>>,
    /// Its latest error.
    pub error: Option<String>,
}

/// Every cron job live workers know, and every one that ever ticked, by
/// name: schedule, zone, next tick, latest tick and how its job went.
pub async fn cron_jobs(pool: &PgPool) -> Result<Vec<CronJob>> {
    let now = Utc::now();
    let mut jobs = store::cron_jobs(pool).await?;
    for job in &mut jobs {
        if job.served
            && let Some(expr) = &job.schedule
        {
            job.next_tick = next_tick(expr, job.tz.as_deref(), now);
        }
    }
    Ok(jobs)
}

/// The first tick of `expr`, read in `tz`, after `now`.
fn next_tick(expr: &str, tz: Option<&str>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = jobq_rules::parse_cron(expr).ok()?;
    let tz: Tz = match tz {
        None => Tz::UTC,
        Some(name) => name.parse().ok()?,
    };
    cron.find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The retention that live workers prune with, as it applies: [`live_retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRetention {
    /// Per finished state, the shortest time any live worker keeps such
    /// jobs: whichever worker holds the pruner's turn deletes with its own
    /// retention, so the shortest wins. Its `interval` is the default's.
    pub retention: crate::Retention,
    /// How many live workers prune (and publish their retention).
    pub workers: usize,
    /// Whether they were given different retentions (each should have the
    /// same: see [`Retention`](crate::Retention)).
    pub differ: bool,
}

/// What live workers prune with ([`Worker::retention`](crate::Worker::retention),
/// published at their start): `None` when no live worker prunes.
pub async fn live_retention(pool: &PgPool) -> Result<Option<LiveRetention>> {
    let published = store::retentions(pool).await?;
    let Some(first) = published.first().copied() else {
        return Ok(None);
    };
    let shortest = |get: fn(&store::PublishedRetention) -> Option<i64>| {
        let keep = published
            .iter()
            .map(get)
            .min_by_key(|ms| ms.unwrap_or(i64::MAX));
        match keep.flatten() {
            Some(ms) => crate::Keep::For(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            None => crate::Keep::Forever,
        }
    };
    Ok(Some(LiveRetention {
        retention: crate::Retention {
            completed: shortest(|r| r.completed_ms),
            discarded: shortest(|r| r.discarded_ms),
            cancelled: shortest(|r| r.cancelled_ms),
            ..crate::Retention::default()
        },
        workers: published.len(),
        differ: published.iter().any(|r| *r != first),
    }))
}
