//! The attempts running in this worker, by job id, so that a cancellation
//! request (NOTIFY on `jobq_control`) can reach the right one. A request for
//! a job this worker has claimed but not started yet (it waits in the
//! prefetch buffer) is kept until the job starts, which it then never does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
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
    /// Why the token fired, when others than the attempt itself fired it:
    /// [`CANCEL_REQUESTED`], [`LEASE_LOST`] or both. Neither: its timeout
    /// or a shutdown.
    why: Arc<AtomicU8>,
}

/// A cancellation request for the job (`jobq::cancel`).
const CANCEL_REQUESTED: u8 = 1;
/// The worker lost its lease (see [`RunningJobs::interrupt_all`]).
const LEASE_LOST: u8 = 2;

impl Handle {
    /// Fires the token, saying why.
    fn stop(&self, why: u8) {
        self.why.fetch_or(why, Ordering::SeqCst);
        self.token.cancel();
    }

    pub(crate) fn was_cancel_requested(&self) -> bool {
        self.why.load(Ordering::SeqCst) & CANCEL_REQUESTED != 0
    }

    /// Whether the attempt was stopped because the worker lost its lease:
    /// its job may already run elsewhere.
    pub(crate) fn lease_was_lost(&self) -> bool {
        self.why.load(Ordering::SeqCst) & LEASE_LOST != 0
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
            why: Arc::default(),
        };
        let mut inner = self.0.lock().expect("running jobs");
        if inner.early.remove(&id).is_some() {
            handle.stop(CANCEL_REQUESTED);
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
            h.stop(LEASE_LOST);
        }
    }

    /// Asks the attempt of job `id` to stop if it runs here, and returns
    /// true; otherwise remembers the request for a while, in case the job
    /// waits in this worker's buffer, and returns false.
    pub(crate) fn request_cancel(&self, id: i64) -> bool {
        let mut inner = self.0.lock().expect("running jobs");
        match inner.running.get(&id) {
            Some(h) => {
                h.stop(CANCEL_REQUESTED);
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
