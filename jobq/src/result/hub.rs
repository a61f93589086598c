//! One LISTEN connection per pool for every [`wait`](super::wait) of the
//! process. A wait registers the job it waits for with its pool's hub, and
//! the hub's task, listening on [`FINISHED_CHANNEL`], wakes the waits of each
//! job whose end is announced. A thousand concurrent waits hold one
//! connection, not a thousand; the hub and its connection go when the last
//! wait does.
//!
//! After its connection is lost the hub connects and LISTENs again, then
//! bumps its generation: every wait reads its job again, so an end announced
//! while nobody listened is found.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::service::{self, Outage};
use crate::store::FINISHED_CHANNEL;

/// The hubs of the process's pools, each known by its pool's connect
/// options (shared by every clone of a pool, and kept alive by the hub).
static HUBS: Mutex<Vec<Weak<Hub>>> = Mutex::new(Vec::new());

/// The listener of one pool.
pub(super) struct Hub {
    options: Arc<PgConnectOptions>,
    /// The waits, by job id.
    waits: Mutex<HashMap<i64, Vec<Arc<Notify>>>>,
    /// How many times the listener has (re)started listening: 0 until the
    /// first. A wait reads its job again whenever it moves.
    listening: watch::Sender<u64>,
    /// Stops the listener's task when the last wait drops the hub.
    stop: CancellationToken,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Hub {
    /// The hub of `pool`, started if it has none.
    pub(super) fn of(pool: &PgPool) -> Arc<Hub> {
        let options = pool.connect_options();
        let mut hubs = HUBS.lock().unwrap_or_else(|e| e.into_inner());
        hubs.retain(|h| h.strong_count() > 0);
        if let Some(hub) = hubs
            .iter()
            .filter_map(Weak::upgrade)
            .find(|h| Arc::ptr_eq(&h.options, &options))
        {
            return hub;
        }
        let hub = Arc::new(Hub {
            options,
            waits: Mutex::new(HashMap::new()),
            listening: watch::Sender::new(0),
            stop: CancellationToken::new(),
        });
        hubs.push(Arc::downgrade(&hub));
        tokio::spawn(listen(pool.clone(), Arc::downgrade(&hub), hub.stop.clone()));
        hub
    }

    /// Registers a wait for job `id`: woken (a stored permit if it is not
    /// waiting yet) when the job's end is announced, until dropped.
    pub(super) fn register(self: &Arc<Self>, id: i64) -> Registration {
        let woken = Arc::new(Notify::new());
        self.lock_waits().entry(id).or_default().push(woken.clone());
        Registration {
            hub: self.clone(),
            id,
            woken,
        }
    }

    /// Follows the listener's (re)connections.
    pub(super) fn listening(&self) -> watch::Receiver<u64> {
        self.listening.subscribe()
    }

    fn lock_waits(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Arc<Notify>>>> {
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, id: i64) {
        if let Some(waits) = self.lock_waits().get(&id) {
            waits.iter().for_each(|w| w.notify_one());
        }
    }
}

/// A wait's registration with its hub; dropping it unregisters.
pub(super) struct Registration {
    hub: Arc<Hub>,
    id: i64,
    woken: Arc<Notify>,
}

impl Registration {
    /// Resolves when the job's end was announced since the last call.
    pub(super) async fn announced(&self) {
        self.woken.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waits = self.hub.lock_waits();
        if let Some(list) = waits.get_mut(&self.id) {
            list.retain(|w| !Arc::ptr_eq(w, &self.woken));
            if list.is_empty() {
                waits.remove(&self.id);
            }
        }
    }
}

/// The hub's task: LISTEN, wake the waits of each announced job; after a
/// lost connection, connect again and tell every wait to read its job.
async fn listen(pool: PgPool, hub: Weak<Hub>, stop: CancellationToken) {
    let mut outage = Outage::new("listen for the ends of awaited jobs");
    loop {
        let Some(mut listener) =
            service::listen(&pool, &[FINISHED_CHANNEL], &mut outage, &stop).await
        else {
            return;
        };
        outage.recovered();
        match hub.upgrade() {
            Some(hub) => hub.listening.send_modify(|n| *n += 1),
            None => return,
        }
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => {
                    let Some(hub) = hub.upgrade() else { return };
                    if let Ok(id) = n.payload().parse::<i64>() {
                        hub.wake(id);
                    }
                }
                // Lost: a fresh listener, then every wait reads again.
                Ok(None) => break,
                Err(e) => {
                    outage.failed(&e);
                    break;
                }
            }
        }
    }
}
