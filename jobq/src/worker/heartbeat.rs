//! The worker's lease: its `jobq_workers` row, renewed on an interval over a
//! connection of its own, so jobs holding every pooled connection cannot
//! make the worker miss its lease.
//!
//! A worker that finds its row gone was taken for dead by a rescuer, which
//! took its running and buffered jobs back. Before it claims again the
//! worker drops what it holds of them (see [`Lease`]); then it registers
//! again under the same id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::conn::{HeldConn, bounded};
use super::outage::Outage;
use crate::store;

/// What the worker's row says about it.
pub(super) struct Identity {
    pub host: String,
    pub pid: i32,
    pub queues: Vec<String>,
}

/// How the worker's services learn that its lease was lost.
///
/// The epoch counts losses. A producer tags each job it claims with the
/// epoch read before the claim; a job whose tag is older than the epoch when
/// it would start is not started but handed back (the rescuer may have
/// given it to another worker already, and then the hand-back is refused).
#[derive(Default)]
pub(crate) struct Lease {
    epoch: AtomicU64,
    lost: Notify,
}

impl Lease {
    /// The current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Records that the worker's row was found gone, and has the heartbeat
    /// register the worker again at once.
    pub(crate) fn lost(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.lost.notify_one();
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    me: Identity,
    every: Duration,
    stop: CancellationToken,
) {
    let mut outage = Outage::new("heartbeat");
    let mut conn = HeldConn::new(shared.pool.clone());
    let mut wait = every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = shared.lease.lost.notified() => {}
        }
        let beat = async {
            let c = conn.get().await?;
            if bounded(store::heartbeat(c, shared.worker_id)).await? {
                return Ok(true);
            }
            // Taken for dead: what this worker holds of its jobs is stale.
            shared.lease.lost();
            shared.running.interrupt_all();
            bounded(store::reregister_worker(
                c,
                shared.worker_id,
                &me.host,
                me.pid,
                &me.queues,
            ))
            .await?;
            Ok::<_, sqlx::Error>(false)
        };
        wait = match beat.await {
            Ok(existed) => {
                outage.recovered();
                if !existed {
                    tracing::warn!(
                        worker_id = shared.worker_id,
                        "this worker missed its lease and was taken for dead; its running jobs \
                         were rescued, so they were interrupted and its buffered jobs will not \
                         start. Registered again."
                    );
                }
                every
            }
            Err(e) => {
                conn.discard();
                outage.failed(&e).min(every)
            }
        };
    }
}
