//! What live workers publish: themselves, their kinds, their cron jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::seconds;
use crate::error::Result;
use crate::job::JobState;
use crate::schedule::cron::Schedule;
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
    /// The jobs of its latest ticks, newest first: up to
    /// [`RECENT_CRON_RUNS`] ticks of its schedule up to `last_tick`, those
    /// whose job is still kept (the first is `last_run`).
    pub recent_runs: Vec<CronRun>,
}

/// How many of a cron job's latest ticks [`CronJob::recent_runs`] looks at.
pub const RECENT_CRON_RUNS: usize = 5;

/// The job of one of a cron job's ticks, in [`CronJob::last_run`] and
/// [`CronJob::recent_runs`].
#[derive(Debug, Clone, Serialize)]
pub struct CronRun {
    /// The tick it was enqueued for.
    pub tick: DateTime<Utc>,
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
    // Each job's latest ticks: the one recorded, and those of its schedule
    // before it (one lookup by unique key for all of them).
    let mut ticks: Vec<(usize, DateTime<Utc>)> = Vec::new();
    for (i, job) in jobs.iter_mut().enumerate() {
        let schedule = job
            .schedule
            .as_deref()
            .and_then(|expr| Schedule::new(expr, job.tz.as_deref()).ok());
        if job.served
            && let Some(s) = &schedule
        {
            job.next_tick = s.next_after(now);
        }
        let Some(last) = job.last_tick else {
            continue;
        };
        ticks.push((i, last));
        let mut t = last;
        for _ in 1..RECENT_CRON_RUNS {
            match schedule.as_ref().and_then(|s| s.previous_before(t)) {
                Some(before) => {
                    ticks.push((i, before));
                    t = before;
                }
                None => break,
            }
        }
    }
    let keys: Vec<String> = ticks
        .iter()
        .map(|&(i, t)| store::cron_tick_key(&jobs[i].kind, t))
        .collect();
    let mut runs = store::cron_runs(pool, &keys).await?;
    for (&(i, tick), key) in ticks.iter().zip(&keys) {
        if let Some(mut run) = runs.remove(key) {
            run.tick = tick;
            let job = &mut jobs[i];
            if job.last_tick == Some(tick) {
                job.last_run = Some(run.clone());
            }
            job.recent_runs.push(run);
        }
    }
    Ok(jobs)
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
