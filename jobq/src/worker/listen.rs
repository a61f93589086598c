//! LISTEN/NOTIFY: wakes a queue's producer when a job is committed to it, and
//! passes cancellation requests to running jobs.
//! After every (re)connection all producers are woken and cancellation
//! requests for this worker's jobs are read back from the table, so a
//! notification lost while the connection was down delays nothing.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::running::RunningJobs;
use crate::service::{self, Outage};
use crate::store::{self, CONTROL_CHANNEL, INSERT_CHANNEL};

/// Listens until `stop`: wakes the producer of a queue named by an insert
/// notification, and fires the token of a running job whose cancellation
/// is asked (the worker's, and [`crate::testing::drain`]'s).
pub(crate) async fn run(
    pool: PgPool,
    worker_id: i64,
    wakers: HashMap<String, Arc<Notify>>,
    running: RunningJobs,
    stop: CancellationToken,
) {
    let wake_all = || wakers.values().for_each(|w| w.notify_one());
    let mut outage = Outage::new("listen for new jobs");
    // A pool of one of its own, not a connection of the jobs' pool: it is
    // held for as long as the worker runs.
    let own = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(super::conn::service_options(&pool));
    loop {
        let channels = [INSERT_CHANNEL, CONTROL_CHANNEL];
        let Some(mut listener) = service::listen(&own, &channels, &mut outage, &stop).await else {
            return;
        };
        outage.recovered();
        wake_all();
        // Now that requests arrive again, catch up on the ones missed.
        match store::cancel_requested(&pool, worker_id).await {
            Ok(ids) => {
                for id in ids {
                    if running.request_cancel(id) {
                        tracing::info!(
                            job.id = id,
                            "cancellation requested while jobq was not listening; firing the job's token"
                        );
                    }
                }
            }
            // The connection drops again; the next reconnection retries.
            Err(e) => tracing::warn!(error = %e, "could not read back cancellation requests"),
        }
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) if n.channel() == CONTROL_CHANNEL => control(&running, n.payload()),
                Ok(Some(n)) => {
                    if let Some(w) = wakers.get(n.payload()) {
                        w.notify_one();
                    }
                }
                // The connection dropped. Reconnect here rather than inside
                // the listener, so the catch-up above runs once listening.
                Ok(None) => {
                    tracing::warn!("jobq lost its LISTEN connection; reconnecting");
                    break;
                }
                Err(e) => {
                    let wait = outage.failed(&e);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => break,
                    }
                }
            }
        }
    }
}

/// Handles one request on the control channel.
fn control(running: &RunningJobs, payload: &str) {
    let request: serde_json::Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(payload, error = %e, "ignoring a malformed jobq control message");
            return;
        }
    };
    if let Some(id) = request.get("cancel").and_then(|v| v.as_i64())
        && running.request_cancel(id)
    {
        tracing::info!(
            job.id = id,
            "cancellation requested; firing the job's token"
        );
    }
}
