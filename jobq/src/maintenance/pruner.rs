//! The pruner: deletes finished jobs once they are older than their state's
//! retention, so the jobs table holds recent history, not all of it.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store;
use crate::worker::outage::Outage;

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

/// Rows deleted per statement: few enough that each transaction is short (60
/// to 90 ms with 10 million finished jobs in the table) and writes little WAL
/// (0.5 MB; up to about 12 MB when the pages it touches need full-page images
/// after a checkpoint). A pass goes on until a batch comes back short.
const BATCH: i64 = 10_000;

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

    fn states(&self) -> [(&'static str, Keep); 3] {
        [
            ("completed", self.completed),
            ("cancelled", self.cancelled),
            ("discarded", self.discarded),
        ]
    }
}

/// Jobs deleted by one pass, per state, in the order of [`Retention::states`].
#[derive(Debug, Default)]
struct Pruned([u64; 3]);

/// Runs a pass when started, then every `retention.interval`, until `stop`.
pub(crate) async fn run(pool: PgPool, retention: Retention, stop: CancellationToken) {
    let mut outage = Outage::new("prune finished jobs");
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let mut pruned = Pruned::default();
        let result = pass(&pool, &retention, &mut pruned, &stop).await;
        let [completed, cancelled, discarded] = pruned.0;
        if completed + cancelled + discarded > 0 {
            tracing::info!(
                completed,
                cancelled,
                discarded,
                "pruned finished jobs past their retention"
            );
        }
        wait = match result {
            Ok(()) => {
                outage.recovered();
                retention.interval
            }
            Err(e) => outage.failed(&e).min(retention.interval),
        };
    }
}

/// Prunes each state in batches until a batch comes back short. Stops early,
/// without error, on `stop` or when another process holds the prune lock.
async fn pass(
    pool: &PgPool,
    retention: &Retention,
    pruned: &mut Pruned,
    stop: &CancellationToken,
) -> sqlx::Result<()> {
    for (i, (state, keep)) in retention.states().into_iter().enumerate() {
        let Keep::For(keep) = keep else { continue };
        // Validated: at most 100 years.
        let keep_ms = keep.as_millis() as i64;
        loop {
            // A batch abandoned mid-way (shutdown) is rolled back.
            let batch = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                batch = store::prune_finished(pool, state, keep_ms, BATCH) => batch?,
            };
            let Some(n) = batch else {
                return Ok(()); // another process is pruning
            };
            pruned.0[i] += n;
            if n < BATCH as u64 {
                break;
            }
        }
    }
    Ok(())
}
