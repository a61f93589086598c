//! The worker's lease: its `jobq_workers` row, renewed on an interval.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::outage::Outage;
use crate::store;

pub(super) async fn run(pool: PgPool, worker_id: i64, every: Duration, stop: CancellationToken) {
    let mut outage = Outage::new("heartbeat");
    let mut wait = every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match store::heartbeat(&pool, worker_id).await {
            Ok(alive) => {
                outage.recovered();
                if !alive {
                    tracing::warn!(
                        worker_id,
                        "this worker's row is gone; its jobs may be rescued by others"
                    );
                }
                every
            }
            Err(e) => outage.failed(&e).min(every),
        };
    }
}
