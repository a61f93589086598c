//! The sampler: sets the gauges that count jobs in the table (unfinished
//! jobs per queue and state, each queue's lag, live workers). Every worker
//! runs it, and each sets its gauges on every tick; but the jobs table is
//! read by one of them at a time, at most once per half an interval, and
//! the others take that reading ([`store::sample`]): N workers scan as
//! often as one.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::service::{Every, Periodic, Tick};
use crate::store;

/// How often the gauges are sampled when the worker is not told otherwise.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// Checks a sampling interval.
pub(crate) fn validate(interval: Duration) -> Result<()> {
    if interval.is_zero() {
        return Err(Error::Config(
            "the metrics interval (how often the gauges are sampled) must be longer than zero"
                .into(),
        ));
    }
    Ok(())
}

/// One sample per tick, the first at start, on a connection of the pool
/// (as the pruner's): a worker whose jobs hold every pooled connection
/// samples late, never holds a connection more.
pub(crate) struct Sampler {
    pool: PgPool,
    /// How old a shared reading may be and still be taken: half the
    /// interval, so a reading is never more than half an interval stale.
    fresh: Duration,
    /// The queues the last sample set gauges for, so that a queue that has
    /// drained since is set to zero.
    seen: Vec<String>,
}

impl Sampler {
    pub(crate) fn new(pool: PgPool, interval: Duration) -> Self {
        Sampler {
            pool,
            fresh: interval / 2,
            seen: Vec::new(),
        }
    }

    /// Every `interval`, give or take a tenth, the first at start.
    pub(crate) fn every(interval: Duration) -> Every {
        Every {
            jitter: 0.1,
            ..Every::new(interval).at_start()
        }
    }
}

impl Periodic for Sampler {
    const NAME: &'static str = "sample metrics";

    async fn tick(&mut self, stop: &CancellationToken) -> sqlx::Result<Tick> {
        let mut c = self.pool.acquire().await?;
        // A sample may wait for another worker's reading: not past a stop.
        let sample = tokio::select! {
            sample = store::sample(&mut c, self.fresh) => sample?,
            () = stop.cancelled() => return Ok(Tick::Skipped),
        };
        super::sampled(&sample, &mut self.seen);
        Ok(Tick::Done)
    }
}
