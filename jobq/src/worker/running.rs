//! The attempts running in this worker, by job id, so that a cancellation
//! request (NOTIFY on `jobq_control`) can reach the right one. A request for
//! a job this worker has claimed but not started yet (it waits in the
//! prefetch buffer) is kept until the job starts, which it then never does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a cancellation request for a job that is not running here is
/// kept, in case the job is in this worker's prefetch buffer. The buffer
/// holds about 50 ms of work, and no job stays in it longer than 2 s (it is
/// handed back then); every worker hears every request, so the requests for
/// other workers' jobs must not pile up.
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(60);

use tokio_util::sync::CancellationToken;

/// One running attempt's cancellation handles.
#[derive(Clone)]
pub(crate) struct Handle {
    /// Fires when the attempt should stop (timeout, cancel, shutdown).
    pub token: CancellationToken,
    /// Set when the stop is a cancellation request rather than shutdown.
    pub cancel_requested: Arc<AtomicBool>,
    /// Set when the stop is the worker's lost lease (see
    /// [`RunningJobs::interrupt_all`]).
    lease_lost: Arc<AtomicBool>,
}

impl Handle {
    pub(crate) fn was_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::SeqCst)
    }

    /// Whether the attempt was stopped because the worker lost its lease:
    /// its job may already run elsewhere.
    pub(crate) fn lease_was_lost(&self) -> bool {
        self.lease_lost.load(Ordering::SeqCst)
    }
}

/// The running attempts, shared by the executor and the listener.
#[derive(Clone, Default)]
pub(crate) struct RunningJobs(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    running: HashMap<i64, Handle>,
    /// Cancellation requests for jobs not running here (yet), and when.
    early: HashMap<i64, Instant>,
}

impl RunningJobs {
    /// Records a starting attempt. Its handle says whether a cancellation
    /// was requested before it started.
    pub(crate) fn insert(&self, id: i64, token: CancellationToken) -> Handle {
        let handle = Handle {
            token,
            cancel_requested: Arc::new(AtomicBool::new(false)),
            lease_lost: Arc::new(AtomicBool::new(false)),
        };
        let mut inner = self.0.lock().expect("running jobs");
        if inner.early.remove(&id).is_some() {
            handle.cancel_requested.store(true, Ordering::SeqCst);
            handle.token.cancel();
        }
        inner.running.insert(id, handle.clone());
        handle
    }

    pub(crate) fn remove(&self, id: i64) {
        self.0.lock().expect("running jobs").running.remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().expect("running jobs").running.len()
    }

    /// Asks every running attempt to stop, as at shutdown: the worker lost
    /// its lease, and the rescuer gave their jobs to other workers.
    pub(crate) fn interrupt_all(&self) {
        for h in self.0.lock().expect("running jobs").running.values() {
            h.lease_lost.store(true, Ordering::SeqCst);
            h.token.cancel();
        }
    }

    /// Asks the attempt of job `id` to stop if it runs here, and returns
    /// true; otherwise remembers the request for a while, in case the job
    /// waits in this worker's buffer, and returns false.
    pub(crate) fn request_cancel(&self, id: i64) -> bool {
        let mut inner = self.0.lock().expect("running jobs");
        match inner.running.get(&id) {
            Some(h) => {
                h.cancel_requested.store(true, Ordering::SeqCst);
                h.token.cancel();
                true
            }
            None => {
                let now = Instant::now();
                inner
                    .early
                    .retain(|_, at| now.duration_since(*at) < EARLY_CANCEL_TTL);
                inner.early.insert(id, now);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_that_arrives_before_the_job_starts_is_kept_for_it() {
        let running = RunningJobs::default();
        assert!(!running.request_cancel(7), "not running yet");
        let started = running.insert(7, CancellationToken::new());
        assert!(started.was_cancel_requested());
        assert!(started.token.is_cancelled());
        // Kept once: a later attempt of the same job starts normally.
        running.remove(7);
        let again = running.insert(7, CancellationToken::new());
        assert!(!again.was_cancel_requested());
        // And a request for a running attempt reaches it directly.
        assert!(running.request_cancel(7));
        assert!(again.token.is_cancelled());
    }
}
