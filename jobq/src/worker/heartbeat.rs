//! The worker's lease: its `jobq_workers` row, renewed on an interval. A
//! worker that was taken for dead (its row removed by a rescuer) registers
//! again under the same id; the results of the jobs it lost are refused.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::outage::Outage;
use crate::store;

/// What the worker's row says about it.
pub(super) struct Identity {
    pub worker_id: i64,
    pub host: String,
    pub pid: i32,
    pub queues: Vec<String>,
}

pub(super) async fn run(pool: PgPool, me: Identity, every: Duration, stop: CancellationToken) {
    let mut outage = Outage::new("heartbeat");
    let mut wait = every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let beat = store::heartbeat(&pool, me.worker_id, &me.host, me.pid, &me.queues).await;
        wait = match beat {
            Ok(existed) => {
                outage.recovered();
                if !existed {
                    tracing::warn!(
                        worker_id = me.worker_id,
                        "this worker missed its lease and was taken for dead; its running jobs \
                         were rescued and their results will be refused. Registered again."
                    );
                }
                every
            }
            Err(e) => outage.failed(&e).min(every),
        };
    }
}
