//! The lease rescuer: takes back the `running` jobs of workers that stopped
//! heartbeating (crashed, killed, cut off), so a `kill -9` delays a job by
//! about one lease and loses nothing.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;
use crate::worker::outage::Outage;

/// Runs a rescue pass every `every` until `stop`.
pub(crate) async fn run(pool: PgPool, lease: Duration, every: Duration, stop: CancellationToken) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut outage = Outage::new("rescue lost jobs");
    let mut wait = every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match store::rescue_expired(&pool, lease_ms).await {
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
            Err(e) => outage.failed(&e).min(every),
        };
    }
}
