//! The lease rescuer: takes back the `running` jobs of workers that stopped
//! heartbeating (crashed, killed, cut off), so a `kill -9` delays a job by
//! about one lease and loses nothing.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;
use crate::worker::conn::{HeldConn, bounded};
use crate::worker::outage::Outage;

/// Runs a rescue pass every `every` until `stop`, on a connection of its own.
pub(crate) async fn run(pool: PgPool, lease: Duration, every: Duration, stop: CancellationToken) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut outage = Outage::new("rescue lost jobs");
    let mut conn = HeldConn::new(pool);
    let mut wait = every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let rescued = match conn.get().await {
            Ok(c) => bounded(store::rescue_expired(c, lease_ms)).await,
            Err(e) => Err(e),
        };
        wait = match rescued {
            Ok(Some(done)) => {
                outage.recovered();
                if done.workers > 0 || done.jobs > 0 {
                    tracing::warn!(
                        workers = done.workers,
                        jobs = done.jobs,
                        ?lease,
                        "rescued the jobs of workers that stopped heartbeating"
                    );
                }
                every
            }
            Ok(None) => every, // another process is rescuing
            Err(e) => {
                conn.discard();
                outage.failed(&e).min(every)
            }
        };
    }
}
