//! Stopping a started worker: gracefully, on a signal or when asked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Shared, complete};
use crate::error::{Error, Result};
use crate::store;

/// A started worker, waiting to be shut down.
pub(super) struct Running {
    pub(super) shared: Arc<Shared>,
    pub(super) stop_fetching: CancellationToken,
    pub(super) stop_jobs: CancellationToken,
    pub(super) stop_services: CancellationToken,
    pub(super) producers: TaskTracker,
    pub(super) services: TaskTracker,
    pub(super) completer: complete::Completer,
}

impl Running {
    /// Stops claiming, lets running jobs finish within the grace period,
    /// interrupts the rest (they go back to `available`), writes every result,
    /// and removes the worker's row.
    pub(super) async fn shutdown(self) -> Result<()> {
        let Running {
            shared,
            stop_fetching,
            stop_jobs,
            stop_services,
            producers,
            services,
            completer,
        } = self;
        let grace = shared.config.shutdown_grace;
        let running = shared.running.len();
        tracing::info!(running, ?grace, "jobq worker shutting down");
        stop_fetching.cancel();
        producers.wait().await;
        shared.jobs.close();
        if tokio::time::timeout(grace, shared.jobs.wait())
            .await
            .is_err()
        {
            let left = shared.running.len();
            tracing::warn!(
                left,
                "jobs still running after the shutdown grace period; interrupting them"
            );
            stop_jobs.cancel();
            shared.jobs.wait().await;
        }
        let worker_id = shared.worker_id;
        let pool = shared.pool.clone();
        drop(shared);
        // No job runs and no producer claims: every result has been sent.
        // They are retried through an outage, but not forever: past the
        // grace period the jobs stay `running` and are rescued after the lease.
        if !completer.finish(grace.max(Duration::from_secs(5))).await {
            tracing::error!(
                "could not record every result before exiting; those jobs will run again after \
                 their lease expires"
            );
        }
        stop_services.cancel();
        services.wait().await;
        if let Err(e) = store::deregister_worker(&pool, worker_id).await {
            tracing::warn!(error = %e, "could not remove the worker's row; its lease will expire");
        }
        tracing::info!("jobq worker stopped");
        Ok(())
    }
}

/// Installs SIGTERM and ctrl-c handlers; the future completes on either.
pub(super) fn shutdown_signal() -> Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::Config(format!("cannot listen for signals: {e}")))
        };
        let mut term = listen(SignalKind::terminate())?;
        let mut int = listen(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("ctrl-c received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("ctrl-c received");
        })
    }
}
