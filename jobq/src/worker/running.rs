//! The attempts running in this worker, by job id, so that a cancellation
//! request (NOTIFY on `jobq_control`) can reach the right one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// One running attempt's cancellation handles.
#[derive(Clone)]
pub(crate) struct Handle {
    /// Fires when the attempt should stop (timeout, cancel, shutdown).
    pub token: CancellationToken,
    /// Set when the stop is a cancellation request rather than shutdown.
    pub cancel_requested: Arc<AtomicBool>,
}

impl Handle {
    pub(crate) fn was_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::SeqCst)
    }
}

/// The running attempts, shared by the executor and the listener.
#[derive(Clone, Default)]
pub(crate) struct RunningJobs(Arc<Mutex<HashMap<i64, Handle>>>);

impl RunningJobs {
    pub(crate) fn insert(&self, id: i64, token: CancellationToken) -> Handle {
        let handle = Handle {
            token,
            cancel_requested: Arc::new(AtomicBool::new(false)),
        };
        self.0
            .lock()
            .expect("running jobs")
            .insert(id, handle.clone());
        handle
    }

    pub(crate) fn remove(&self, id: i64) {
        self.0.lock().expect("running jobs").remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().expect("running jobs").len()
    }

    /// Asks the attempt of job `id`, if it runs here, to stop.
    pub(crate) fn request_cancel(&self, id: i64) -> bool {
        match self.0.lock().expect("running jobs").get(&id) {
            Some(h) => {
                h.cancel_requested.store(true, Ordering::SeqCst);
                h.token.cancel();
                true
            }
            None => false,
        }
    }
}
