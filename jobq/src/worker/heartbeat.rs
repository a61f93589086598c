//! The worker's lease: its `jobq_workers` row, renewed on an interval over a
//! connection of its own, on a thread and runtime of its own: jobs holding
//! every pooled connection, or blocking every thread of the worker's runtime
//! (sync I/O or heavy CPU work in an `async fn`), cannot make the worker miss
//! its lease.
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
use crate::error::{Error, Result};
use crate::service::{self, Every, Periodic, Tick};
use crate::store;

/// What the worker's row says about it.
#[derive(Clone)]
pub(super) struct Identity {
    pub host: String,
    pub pid: i32,
    pub queues: Vec<String>,
    /// How many jobs of each of `queues` it runs at once.
    pub concurrency: Vec<i32>,
    pub lease_ms: i64,
    /// The kinds it publishes, as JSON (see [`store::PublishedKind`]).
    pub kinds: Arc<str>,
    /// Its pruner's retention, as JSON (see [`store::PublishedRetention`]);
    /// `None` when it prunes nothing.
    pub retention: Option<Arc<str>>,
}

impl Identity {
    pub(super) fn row(&self) -> store::WorkerRow<'_> {
        store::WorkerRow {
            host: &self.host,
            pid: self.pid,
            queues: &self.queues,
            concurrency: &self.concurrency,
            lease_ms: self.lease_ms,
            kinds: &self.kinds,
            retention: self.retention.as_deref(),
        }
    }
}

/// The heartbeat's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeartbeatConfig {
    /// How often the worker renews its lease (default 5 s).
    pub interval: Duration,
    /// How long the worker may miss its heartbeat before it is taken for
    /// dead (default 30 s).
    pub lease: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(5),
            lease: Duration::from_secs(30),
        }
    }
}

impl HeartbeatConfig {
    /// Checks that the heartbeat can keep the lease: it beats, and at least
    /// twice per lease.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::Config(
                "the heartbeat interval must be longer than zero".into(),
            ));
        }
        if self.interval * 2 > self.lease {
            return Err(Error::Config(format!(
                "the heartbeat interval ({:?}) must be at most half the lease timeout ({:?}), \
                 or live workers would be taken for dead",
                self.interval, self.lease
            )));
        }
        Ok(())
    }

    /// The lease in milliseconds, as the worker's row records it.
    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Starts the heartbeat on a thread of its own, with a runtime of its own;
/// the returned future completes when it has stopped. Without a thread (the
/// system refused one), it runs on the caller's runtime instead.
pub(super) fn spawn(
    shared: Arc<Shared>,
    me: Identity,
    config: HeartbeatConfig,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let beat = move || {
        let (shared, me) = (shared.clone(), me.clone());
        service::run(
            move || Heartbeat::new(shared.clone(), me.clone()),
            Every::new(config.interval),
            stop.clone(),
        )
    };
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    let on_thread = beat.clone();
    let spawned = std::thread::Builder::new()
        .name("jobq-heartbeat".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(on_thread()),
                Err(e) => {
                    tracing::error!(error = %e, "jobq could not start the heartbeat's runtime")
                }
            }
            let _ = done.send(());
        });
    async move {
        match spawned {
            Ok(_) => {
                let _ = stopped.await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "no thread for the jobq heartbeat; it shares the worker's runtime");
                beat().await;
            }
        }
    }
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

/// One beat per tick, on a connection of its own; a lost lease wakes it at
/// once.
struct Heartbeat {
    shared: Arc<Shared>,
    me: Identity,
    conn: HeldConn,
}

impl Heartbeat {
    fn new(shared: Arc<Shared>, me: Identity) -> Self {
        let conn = HeldConn::new(shared.pool.clone());
        Heartbeat { shared, me, conn }
    }
}

impl Periodic for Heartbeat {
    const NAME: &'static str = "heartbeat";

    async fn tick(&mut self, _: &CancellationToken) -> sqlx::Result<Tick> {
        let shared = &self.shared;
        let c = self.conn.get().await?;
        if bounded(store::heartbeat(c, shared.worker_id)).await? {
            return Ok(Tick::Done);
        }
        // Taken for dead: what this worker holds of its jobs is stale.
        shared.lease.lost();
        shared.running.interrupt_all();
        bounded(store::reregister_worker(
            c,
            shared.worker_id,
            &self.me.row(),
        ))
        .await?;
        tracing::warn!(
            worker_id = shared.worker_id,
            "this worker missed its lease and was taken for dead; its running jobs were \
             rescued, so they were interrupted and its buffered jobs will not start. \
             Registered again."
        );
        Ok(Tick::Done)
    }

    fn failed(&mut self) {
        self.conn.discard();
    }

    fn woken(&self) -> impl std::future::Future<Output = ()> + Send {
        self.shared.lease.lost.notified()
    }
}
