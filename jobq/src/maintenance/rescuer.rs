//! The lease rescuer: takes back the `running` jobs of workers that stopped
//! heartbeating (crashed, killed, cut off), so a `kill -9` delays a job by
//! about one lease and loses nothing. One process at a time rescues
//! ([`Lock::Rescue`](crate::store::Lock::Rescue)).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::service::{Every, Periodic, Tick};
use crate::store;
use crate::worker::conn::{HeldConn, bounded};

/// The rescuer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RescuerConfig {
    /// This worker's lease (default 30 s): the lease of a worker whose row
    /// records none. Every other worker is judged by its own.
    pub lease: Duration,
}

impl RescuerConfig {
    /// Checks that the rescuer can judge workers: a lease longer than zero.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.lease.is_zero() {
            return Err(Error::Config(
                "the lease timeout must be longer than zero".into(),
            ));
        }
        Ok(())
    }

    /// A pass every quarter of the lease, and at most every 100 ms: a dead
    /// worker's jobs wait one lease, give or take a quarter.
    pub(crate) fn every(&self) -> Every {
        Every::new((self.lease / 4).max(Duration::from_millis(100)))
    }
}

/// One rescue pass per tick, on a connection of its own.
pub(crate) struct Rescuer {
    conn: HeldConn,
    lease: Duration,
}

impl Rescuer {
    pub(crate) fn new(pool: PgPool, config: RescuerConfig) -> Self {
        Rescuer {
            conn: HeldConn::new(pool),
            lease: config.lease,
        }
    }
}

impl Periodic for Rescuer {
    const NAME: &'static str = "rescue lost jobs";

    async fn tick(&mut self, _: &CancellationToken) -> sqlx::Result<Tick> {
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let c = self.conn.get().await?;
        let Some(done) = bounded(store::rescue_expired(c, lease_ms)).await? else {
            return Ok(Tick::Skipped);
        };
        for (queue, kind, n) in &done.by_kind {
            crate::metrics::rescued(kind, queue, u64::try_from(*n).unwrap_or(0));
        }
        if done.workers > 0 || done.jobs > 0 {
            tracing::warn!(
                workers = done.workers,
                jobs = done.jobs,
                lease = ?self.lease,
                "rescued the jobs of workers that stopped heartbeating"
            );
        }
        // A full pass may have left lost jobs behind: take them at once.
        Ok(if done.more {
            Tick::After(Duration::ZERO)
        } else {
            Tick::Done
        })
    }

    fn failed(&mut self) {
        self.conn.discard();
    }
}
