//! Concurrency and rate limits, enforced by the database in the claim, so
//! they hold across any number of worker processes.
//!
//! # What a user writes
//!
//! - `#[job(concurrency = 5)]`: at most 5 attempts of the job run at once.
//! - `#[job(rate = "100/1m")]` (`/1s`, `/30s`, `/1m`, `/1h`...): at most 100
//!   attempts *start* in any window of one minute, sliding (not per calendar
//!   minute).
//! - `partition = "user_id"` next to either: the limit holds per distinct
//!   value of that argument (`args ->> 'user_id'` as PostgreSQL reads it).
//! - [`set_queue_limit`]`(&pool, "email", Limit::concurrency(50))`: a limit
//!   on every job of a queue, set at run time, seen by every worker at its
//!   next claim.
//!
//! A worker's own concurrency for a queue still caps what that worker runs.
//!
//! # What is counted
//!
//! - **Running** means a job row in state `running`: from the claim that
//!   takes it to the write of its result, or to its rescue when its worker
//!   died. A job a worker holds but has not started yet counts, so jobs
//!   under a concurrency limit are claimed only for free slots, never
//!   buffered ahead.
//! - **Started** means claimed: an attempt starts at its claim's stamp, the
//!   job's `attempted_at`. Every attempt counts, retries included, and an
//!   attempt whose worker then dies still counted. A rate of `N/W` lets no
//!   more than `N` stamps fall in any window `[t, t + W)`. The stamps come
//!   from the claiming workers' clocks (as `attempted_at` always has): keep
//!   the hosts' clocks in sync.
//!
//! # How the claim enforces them
//!
//! Kinds without a limit, in a queue without one, are claimed exactly as
//! before: the plain claim (`CLAIM_SQL`) is unchanged but for reading the
//! queue's limit columns in the row it already reads for the pause flag. A
//! worker knows from its registry which kinds have limits and claims those
//! with a second statement, `jobq_claim_limited` (migration 8): under a
//! concurrency limit only for the slots it has free, under rate limits
//! alone like any other claim. When a queue gets a limit, the plain claim takes
//! nothing from it and says so, and the worker claims the whole queue through
//! the limited statement until a claim says the limit is gone.
//!
//! The limited claim, in one round trip:
//!
//! 1. **Locks** each limit it counts against (the queue's, each limited
//!    job's) with a transaction advisory lock, in key order so two claims
//!    never wait on each other in a cycle. Claims under the same limit run
//!    one after the other; claims of other kinds never wait.
//! 2. **Counts** with statements that start after the locks are held (a
//!    volatile function takes a new snapshot per statement), so every claim
//!    of the same limits that committed before is seen: two workers can never
//!    both see 4 running under a limit of 5 and both take one. Running
//!    attempts are counted from the rows (`jobq_jobs_limited_running`), so
//!    there is no counter to release: a completion, a retry, a hand-back or
//!    a rescue that moves a row out of `running` frees its slot in the same
//!    write. Nothing is held in memory, so a database restart changes
//!    nothing. Starts are counted in `jobq_limit_starts`, one row per claim
//!    and limit; rows past their window are deleted by later claims under
//!    that limit, and those of partitions no claim takes jobs of any more by
//!    a worker's periodic service, ten minutes past their window.
//! 3. **Takes** the best waiting jobs within each limit's room. A limited
//!    kind's jobs carry a `limit_key` (name and partition) set at enqueue;
//!    the claim first reads the partitions of the first `4 x room + 16`
//!    waiting jobs in claim order and takes from each at most its room.
//!    Only when that takes less than the room (the head of the queue belongs
//!    to partitions at their limit, or few jobs wait) does it walk every
//!    partition that has waiting jobs, with a skip scan over
//!    `jobq_jobs_limited_waiting`, one index descent per partition. A
//!    saturated partition costs one descent however many jobs it has
//!    waiting, and never stops the others: there is no head-of-line
//!    blocking. With many partitions, the first read keeps a claim's cost
//!    independent of how many there are (migration 16). That index is
//!    partial on `state` as a range, so that no plan can read the kind's
//!    whole queue (`jobq_jobs_ready`) instead, whatever the statistics
//!    (migration 17).
//!
//! A claim held back by a limit tells the worker how long until a rate
//! permit frees (it sleeps that long), or that a concurrency slot is needed
//! (it checks again 10 ms later, or as soon as one of
//! its own jobs ends).
//!
//! When the plain claim and the limited one run in the same round, the
//! limited one leaves the promotion of due jobs and the next due time to
//! the plain one (migration 11). A producer whose every job is claimed only
//! for a free slot takes nothing beyond its slots, so with every slot busy
//! it waits for one to free instead of asking the database.
//!
//! Jobs enqueued before their kind had a limit have no `limit_key`, so the
//! limited claim does not see them. A service of every worker with limited
//! kinds gives the waiting ones their key, one process at a time (an
//! advisory lock), in one statement, when the worker starts and every half
//! minute after: they run, under the limit, within that time.

use std::future::Future;
use std::time::Duration;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::queue::QueueName;
use crate::store;

/// A rate: at most `count` attempts started in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Duration,
}

impl Rate {
    /// At most `count` starts in any window of `per` (whole milliseconds,
    /// at least one). Panics on a zero count or window; [`Rate::parse`]
    /// returns an error instead.
    pub const fn new(count: u32, per: Duration) -> Self {
        assert!(count > 0, "a rate allows at least one attempt");
        assert!(per.as_millis() > 0, "a rate's window is at least 1 ms");
        Rate { count, per }
    }

    /// At most `count` starts in any one second.
    pub const fn per_second(count: u32) -> Self {
        Rate::new(count, Duration::from_secs(1))
    }

    /// At most `count` starts in any one minute.
    pub const fn per_minute(count: u32) -> Self {
        Rate::new(count, Duration::from_secs(60))
    }

    /// At most `count` starts in any one hour.
    pub const fn per_hour(count: u32) -> Self {
        Rate::new(count, Duration::from_secs(3600))
    }

    /// Reads a rate written as `#[job(rate = ..)]` takes it: `"100/1m"`.
    ///
    /// ```
    /// assert_eq!(jobq::Rate::parse("100/1m")?, jobq::Rate::per_minute(100));
    /// assert!(jobq::Rate::parse("100 a minute").is_err());
    /// # Ok::<(), jobq::Error>(())
    /// ```
    pub fn parse(rate: &str) -> Result<Self> {
        let spec = jobq_rules::parse_rate(rate).map_err(|e| Error::Queue(e.to_string()))?;
        Ok(Rate::new(spec.count, Duration::from_secs(spec.per_secs)))
    }

    /// Attempts allowed per window.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The window's length.
    pub const fn per(&self) -> Duration {
        self.per
    }

    pub(crate) fn window_ms(&self) -> i64 {
        i64::try_from(self.per.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The limits `#[job]` declares for a job type (`concurrency`, `rate`,
/// `partition`), in its [`JobDef`](crate::JobDef).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobLimits {
    /// At most this many attempts run at once.
    pub concurrency: Option<u32>,
    /// At most this many attempts start per window.
    pub rate: Option<Rate>,
    /// The argument whose value partitions the limits: each value has
    /// limits of its own. Its name as stored in the arguments' JSON.
    pub partition: Option<&'static str>,
}

impl JobLimits {
    /// No limits.
    pub const NONE: JobLimits = JobLimits {
        concurrency: None,
        rate: None,
        partition: None,
    };

    /// Whether any limit is set.
    pub const fn is_limited(&self) -> bool {
        self.concurrency.is_some() || self.rate.is_some()
    }
}

/// A queue's limits, for [`set_queue_limit`]: every job of the queue,
/// whatever its kind, counts against them (next to its kind's own limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    concurrency: Option<u32>,
    rate: Option<Rate>,
}

impl Limit {
    /// At most `n` of the queue's jobs run at once (`n` at least 1).
    pub const fn concurrency(n: u32) -> Self {
        Limit {
            concurrency: Some(n),
            rate: None,
        }
    }

    /// At most `rate` of the queue's attempts start per window.
    pub const fn rate(rate: Rate) -> Self {
        Limit {
            concurrency: None,
            rate: Some(rate),
        }
    }

    /// This limit and a concurrency limit of `n`.
    pub const fn and_concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// This limit and a rate limit.
    pub const fn and_rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }
}

/// Sets `queue`'s limits, replacing any it had, for every worker: each
/// claim of the queue from the moment this commits counts against them
/// (a claim already running when it commits may still take its jobs).
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), jobq::Error> {
/// use jobq::{Limit, Rate};
/// jobq::set_queue_limit(&pool, "email", Limit::concurrency(50)).await?;
/// jobq::set_queue_limit(&pool, "sms", Limit::rate(Rate::per_second(10)).and_concurrency(5))
///     .await?;
/// jobq::clear_queue_limit(&pool, "sms").await?;
/// # Ok(()) }
/// ```
pub fn set_queue_limit<'c, A>(
    db: A,
    queue: &str,
    limit: Limit,
) -> impl Future<Output = Result<()>> + Send + 'c
where
    A: Db<'c>,
{
    write_queue_limit(db, queue.to_owned(), Some(limit))
}

/// Removes `queue`'s limits: its jobs are claimed as fast as workers can
/// take them again (each kind's own limits still hold).
pub fn clear_queue_limit<'c, A>(db: A, queue: &str) -> impl Future<Output = Result<()>> + Send + 'c
where
    A: Db<'c>,
{
    write_queue_limit(db, queue.to_owned(), None)
}

fn write_queue_limit<'c, A>(
    db: A,
    queue: String,
    limit: Option<Limit>,
) -> impl Future<Output = Result<()>> + Send + 'c
where
    A: Db<'c>,
{
    async move {
        let queue = QueueName::new(queue).map_err(|e| Error::Queue(e.to_string()))?;
        if limit.is_some_and(|l| l.concurrency == Some(0)) {
            return Err(Error::Queue(format!(
                "queue `{queue}`: a concurrency limit is at least 1; pause the queue to stop it"
            )));
        }
        let concurrency = limit
            .and_then(|l| l.concurrency)
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let rate = limit.and_then(|l| l.rate);
        let mut conn = db.acquire().await?;
        store::set_queue_limit(
            &mut conn,
            &queue,
            concurrency,
            rate.map(|r| i32::try_from(r.count()).unwrap_or(i32::MAX)),
            rate.map(|r| r.window_ms()),
        )
        .await?;
        Ok(())
    }
}
