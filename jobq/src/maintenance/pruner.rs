//! The pruner: deletes finished jobs once they are older than their state's
//! retention, so the jobs table holds recent history, not all of it.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::job::JobState;
use crate::service::{Every, Periodic, Tick};
use crate::store;

/// How long a finished job is kept: for a while, or for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Deleted once it finished longer ago than this (`Duration::ZERO`: at
    /// the pruner's next pass).
    For(Duration),
    /// Never deleted by jobq.
    Forever,
}

/// How long finished jobs are kept, per final state, before the pruner
/// deletes them; give it to [`Worker::retention`](crate::Worker::retention).
///
/// Every worker runs the pruner; an advisory lock makes one process at a time
/// do the work. Every `interval` it deletes the jobs that finished (their
/// `finalized_at`) longer ago than their state's retention, oldest first, at
/// most 10,000 per statement, each statement its own short transaction.
/// Under a `statement_timeout` too short for that, it deletes fewer per
/// statement (halving to as few as 10), and grows back slowly.
///
/// It never deletes a job that has not finished, nor a finished job whose
/// unique key still holds in its state: a job enqueued with
/// `.unique_states(&JobState::ALL)` is kept for ever, since deleting it would
/// let its key be used again. Two kinds of key no enqueue can use again are
/// the exception, and their rows are deleted like any other: a cron tick's
/// (jobq remembers each cron job's latest tick), though never within an hour
/// of finishing; and a key with a window (`unique_for`), though never within
/// an hour after its window ended.
///
/// ```
/// use std::time::Duration;
/// use jobq::{Keep, Retention};
///
/// let retention = Retention {
///     completed: Keep::For(Duration::from_secs(3600)), // one hour
///     discarded: Keep::Forever,                        // to look into by hand
///     ..Retention::default()                           // cancelled: 7 days
/// };
/// assert_eq!(retention.interval, Duration::from_secs(60));
///
/// # #[allow(dead_code)]
/// async fn run(pool: sqlx::PgPool, retention: Retention) -> Result<(), jobq::Error> {
///     jobq::Worker::new(pool).retention(retention).run().await
/// }
/// ```
///
/// Give every worker the same retention: whichever process holds the lock
/// prunes with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long `completed` jobs are kept (default 24 hours).
    pub completed: Keep,
    /// How long `cancelled` jobs are kept (default 7 days).
    pub cancelled: Keep,
    /// How long `discarded` jobs, and the errors of their attempts, are kept
    /// (default 7 days).
    pub discarded: Keep,
    /// How often the pruner looks for jobs to delete (default 1 minute). It
    /// also looks when the worker starts.
    pub interval: Duration,
}

impl Default for Retention {
    /// Completed jobs 24 hours, cancelled and discarded jobs 7 days, pruned
    /// every minute.
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        Retention {
            completed: Keep::For(DAY),
            cancelled: Keep::For(7 * DAY),
            discarded: Keep::For(7 * DAY),
            interval: Duration::from_secs(60),
        }
    }
}

/// The longest retention taken as a duration; past it, say `Keep::Forever`.
const MAX_KEEP: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// Rows deleted per statement at most: few enough that each transaction is
/// short (60 to 90 ms with 10 million finished jobs in the table) and writes
/// little WAL (0.5 MB; up to about 12 MB when the pages it touches need
/// full-page images after a checkpoint). A pass goes on until a batch comes
/// back short.
const MAX_BATCH: i64 = 10_000;

/// Rows deleted per statement at least: when a statement this small is
/// still cancelled by `statement_timeout`, the pass fails like one through
/// an outage, and the next pass tries again.
const MIN_BATCH: i64 = 10;

/// How many rows the pruner deletes per statement: [`MAX_BATCH`] unless a
/// statement ran out of time (`statement_timeout`, SQLSTATE 57014, set for
/// the role or database), which halves it, down to [`MIN_BATCH`]. Each
/// full batch that succeeds grows it back by an eighth, so after a time-out it
/// takes many quick batches to reach the size that timed out again. Kept
/// across passes.
#[derive(Debug)]
struct BatchSize(i64);

impl BatchSize {
    /// After a statement was cancelled: whether a smaller batch is left to
    /// try.
    fn shrink(&mut self) -> bool {
        if self.0 <= MIN_BATCH {
            return false;
        }
        self.0 = (self.0 / 2).max(MIN_BATCH);
        true
    }

    /// After a batch went through.
    fn grow(&mut self) {
        self.0 = (self.0 + (self.0 / 8).max(1)).min(MAX_BATCH);
    }
}

/// Whether `e` is PostgreSQL's `query_canceled` (57014): `statement_timeout`
/// (or a cancel request) stopped the statement.
fn is_canceled(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "57014")
}

impl Retention {
    /// Keeps every finished job: no pruning at all.
    pub fn keep_all() -> Self {
        Retention {
            completed: Keep::Forever,
            cancelled: Keep::Forever,
            discarded: Keep::Forever,
            ..Retention::default()
        }
    }

    /// Checks that the pruner can run with these settings.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::Config(
                "the retention interval (how often finished jobs are pruned) must be longer \
                 than zero"
                    .into(),
            ));
        }
        for (state, keep) in self.states() {
            if let Keep::For(d) = keep
                && d > MAX_KEEP
            {
                return Err(Error::Config(format!(
                    "the retention of {state} jobs ({d:?}) is longer than 100 years; \
                     use `Keep::Forever` to keep them"
                )));
            }
        }
        Ok(())
    }

    /// Whether any state is pruned at all.
    pub(crate) fn prunes(&self) -> bool {
        self.states().iter().any(|(_, k)| *k != Keep::Forever)
    }

    fn states(&self) -> [(JobState, Keep); 3] {
        [
            (JobState::Completed, self.completed),
            (JobState::Cancelled, self.cancelled),
            (JobState::Discarded, self.discarded),
        ]
    }
}

/// Jobs deleted by one pass, per state, in the order of [`Retention::states`].
#[derive(Debug, Default)]
struct Pruned([u64; 3]);

/// One pruning pass per tick, the first when the worker starts.
pub(crate) struct Pruner {
    pool: PgPool,
    retention: Retention,
    size: BatchSize,
}

impl Pruner {
    pub(crate) fn new(pool: PgPool, retention: Retention) -> Self {
        Pruner {
            pool,
            retention,
            size: BatchSize(MAX_BATCH),
        }
    }

    /// Every `retention.interval`, the first pass at start.
    pub(crate) fn every(retention: &Retention) -> Every {
        Every::new(retention.interval).at_start()
    }
}

impl Periodic for Pruner {
    const NAME: &'static str = "prune finished jobs";

    async fn tick(&mut self, stop: &CancellationToken) -> sqlx::Result<Tick> {
        let mut pruned = Pruned::default();
        let result = pass(
            &self.pool,
            &self.retention,
            &mut self.size,
            &mut pruned,
            stop,
        )
        .await;
        let [completed, cancelled, discarded] = pruned.0;
        if completed + cancelled + discarded > 0 {
            tracing::info!(
                completed,
                cancelled,
                discarded,
                "pruned finished jobs past their retention"
            );
        }
        result
    }
}

/// Prunes each state in batches until a batch comes back short, with
/// batches of `size` (see [`BatchSize`]). Stops early, without error, on
/// `stop`, or when another process holds the prune lock (then says
/// [`Tick::Skipped`]).
async fn pass(
    pool: &PgPool,
    retention: &Retention,
    size: &mut BatchSize,
    pruned: &mut Pruned,
    stop: &CancellationToken,
) -> sqlx::Result<Tick> {
    for (i, (state, keep)) in retention.states().into_iter().enumerate() {
        let Keep::For(keep) = keep else { continue };
        // Validated: at most 100 years.
        let keep_ms = keep.as_millis() as i64;
        loop {
            let limit = size.0;
            // A batch abandoned mid-way (shutdown, time-out) is rolled back.
            let batch = tokio::select! {
                _ = stop.cancelled() => return Ok(Tick::Done),
                batch = store::prune_finished(pool, state, keep_ms, limit) => batch,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) if is_canceled(&e) && size.shrink() => {
                    tracing::debug!(
                        from = limit,
                        to = size.0,
                        "a prune statement ran out of time; deleting fewer rows per statement"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(n) = batch else {
                return Ok(Tick::Skipped); // another process is pruning
            };
            pruned.0[i] += n;
            if n < limit as u64 {
                break;
            }
            // Only a full batch shows that one this size fits in time.
            size.grow();
        }
    }
    Ok(Tick::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_halves_to_a_floor_and_grows_back_by_an_eighth() {
        let mut size = BatchSize(MAX_BATCH);
        assert!(size.shrink());
        assert_eq!(size.0, 5_000);
        size.grow();
        assert_eq!(size.0, 5_625);
        while size.shrink() {}
        assert_eq!(size.0, MIN_BATCH);
        size.grow();
        assert_eq!(size.0, 11);
        for _ in 0..200 {
            size.grow();
        }
        assert_eq!(size.0, MAX_BATCH);
    }
}
