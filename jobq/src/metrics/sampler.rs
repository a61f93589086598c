//! The sampler: sets the gauges that count jobs in the table (unfinished
//! jobs per queue and state, each queue's lag, live workers). Every worker
//! runs it; an advisory lock makes one process at a time read
//! ([`Lock::Sample`](crate::store::Lock::Sample)), so that many workers
//! never scan together. A worker that finds the lock held keeps its
//! previous values until its next tick.

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
    /// The queues the last sample set gauges for, so that a queue that has
    /// drained since is set to zero.
    seen: Vec<String>,
}

impl Sampler {
    pub(crate) fn new(pool: PgPool) -> Self {
        Sampler {
            pool,
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

    async fn tick(&mut self, _: &CancellationToken) -> sqlx::Result<Tick> {
        let mut c = self.pool.acquire().await?;
        let Some(sample) = store::sample(&mut c).await? else {
            return Ok(Tick::Skipped);
        };
        super::sampled(&sample, &mut self.seen);
        Ok(Tick::Done)
    }
}
