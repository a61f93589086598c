//! What jobq reports through the `metrics` facade: to the recorder the
//! program installed (`metrics::set_global_recorder`, or an exporter's
//! `install`), to none when it installed none.
//!
//! The facade builds a metric's key (its labels, an allocation or two)
//! before it asks the recorder, even when the recorder is the no-op one. So
//! the counts of every enqueue and attempt go through handles kept per
//! thread, per job kind and queue, built once per recorder: after the first
//! enqueue of a kind on a thread, neither path builds labels again, whether
//! a recorder is installed or not. Without a recorder an enqueue's count
//! then costs about 50 ns, against 120-200 ns through the macro (busy
//! machine, indicative), and the handle does nothing. The rescuer and the
//! sampler, which run seldom, use the macros directly.
//!
//! Names and labels (README, "Operating jobq"): labels are `queue`, `kind`
//! (the job's stored name), `outcome` and `state` only, each a bounded set;
//! never a job's id or arguments.

#[cfg(feature = "prometheus")]
pub(crate) mod prometheus;
pub(crate) mod sampler;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Counter, Histogram, Unit};

use crate::job::{JobState, Outcome};

/// Jobs inserted (counter; `queue`, `kind`). Counted when the insert
/// statement succeeds, so also for a transaction the caller rolls back later;
/// a unique job's duplicate is not counted.
pub(crate) const JOBS_ENQUEUED: &str = "jobq_jobs_enqueued_total";
/// Attempts that ended (counter; `queue`, `kind`, `outcome`).
pub(crate) const ATTEMPTS: &str = "jobq_attempts_total";
/// Jobs taken back from workers that stopped heartbeating (counter; `queue`,
/// `kind`).
pub(crate) const JOBS_RESCUED: &str = "jobq_jobs_rescued_total";
/// How long attempts ran, handler start to end (histogram, seconds; `queue`,
/// `kind`).
pub(crate) const ATTEMPT_DURATION: &str = "jobq_attempt_duration_seconds";
/// How long jobs waited to start, from when they were due (histogram,
/// seconds; `queue`, `kind`).
pub(crate) const QUEUE_WAIT: &str = "jobq_queue_wait_seconds";
/// Unfinished jobs per queue and state (gauge; `queue`, `state`).
pub(crate) const JOBS: &str = "jobq_jobs";
/// Age of the oldest due job not yet started, per queue (gauge, seconds;
/// `queue`).
pub(crate) const QUEUE_LAG: &str = "jobq_queue_lag_seconds";
/// Workers with a live lease (gauge).
pub(crate) const WORKERS: &str = "jobq_workers";

/// How an attempt ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    /// The handler returned `Ok`.
    Completed,
    /// It failed (error or panic) and the job will be retried.
    Failed,
    /// It timed out and the job will be retried.
    TimedOut,
    /// The job is discarded: asked by the handler, arguments that do not
    /// decode, or a failure or time-out of its last attempt.
    Discarded,
    /// The job was cancelled on request.
    Cancelled,
    /// The handler asked to run again later (`Control::snooze`).
    Snoozed,
    /// The worker shut down: the job goes back to `available`, the attempt
    /// not counted.
    Interrupted,
    /// Its worker stopped heartbeating; the rescuer took the job back.
    Lost,
}

impl AttemptOutcome {
    /// Every outcome, in the order of [`AttemptMetrics::attempts`].
    pub(crate) const ALL: [AttemptOutcome; 8] = [
        AttemptOutcome::Completed,
        AttemptOutcome::Failed,
        AttemptOutcome::TimedOut,
        AttemptOutcome::Discarded,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Snoozed,
        AttemptOutcome::Interrupted,
        AttemptOutcome::Lost,
    ];

    /// How the attempt of attempt number `attempt` (claims so far) of a job
    /// with `max_attempts` (lost attempts given back) ended: a failure of
    /// the last attempt discards the job, as the completer writes it.
    pub(crate) fn of(outcome: &Outcome, attempt: i32, max_attempts: i32) -> Self {
        match outcome {
            Outcome::Completed | Outcome::CompletedWith(_) => AttemptOutcome::Completed,
            Outcome::Failed { .. } if attempt >= max_attempts => AttemptOutcome::Discarded,
            Outcome::Failed {
                kind: "timeout", ..
            } => AttemptOutcome::TimedOut,
            Outcome::Failed { .. } => AttemptOutcome::Failed,
            Outcome::Discard { .. } => AttemptOutcome::Discarded,
            Outcome::Snooze(_) => AttemptOutcome::Snoozed,
            Outcome::Cancelled => AttemptOutcome::Cancelled,
            Outcome::Interrupted => AttemptOutcome::Interrupted,
        }
    }

    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Discarded => "discarded",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Snoozed => "snoozed",
            AttemptOutcome::Interrupted => "interrupted",
            AttemptOutcome::Lost => "lost",
        }
    }
}

/// Says once per process what each metric means and its unit, for exporters
/// that print it (`# HELP`, `# TYPE`). Called when a worker starts.
pub(crate) fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        ::metrics::describe_counter!(
            JOBS_ENQUEUED,
            Unit::Count,
            "Jobs inserted, by queue and kind."
        );
        ::metrics::describe_counter!(
            ATTEMPTS,
            Unit::Count,
            "Attempts that ended, by queue, kind and outcome."
        );
        ::metrics::describe_counter!(
            JOBS_RESCUED,
            Unit::Count,
            "Jobs taken back from workers that stopped heartbeating."
        );
        ::metrics::describe_histogram!(
            ATTEMPT_DURATION,
            Unit::Seconds,
            "How long attempts ran, by queue and kind."
        );
        ::metrics::describe_histogram!(
            QUEUE_WAIT,
            Unit::Seconds,
            "How long jobs waited to start after they were due, by queue and kind."
        );
        ::metrics::describe_gauge!(
            JOBS,
            Unit::Count,
            "Unfinished jobs (pending ones included), by queue and state."
        );
        ::metrics::describe_gauge!(
            QUEUE_LAG,
            Unit::Seconds,
            "Age of the oldest due job not yet started, by queue."
        );
        ::metrics::describe_gauge!(WORKERS, Unit::Count, "Workers with a live lease.");
    });
}

/// The current recorder, told apart from others by its address: the global
/// recorder is set once for the life of the process, a local one lives at
/// one place while it is set.
fn recorder_id() -> usize {
    ::metrics::with_recorder(|r| (r as *const dyn ::metrics::Recorder).cast::<()>() as usize)
}

/// Handles per job kind and queue, built under one recorder: a short list
/// scanned in order, since a program has few kinds and queues, and the scan
/// (two string comparisons per entry) costs less than hashing the two names.
struct Handles<T> {
    recorder: usize,
    list: Vec<(&'static str, Box<str>, T)>,
}

/// Handles kept per thread at most; past it, the handles of further kinds
/// and queues are built at each use (as the `metrics` macros do).
const MAX_HANDLES: usize = 256;

impl<T> Handles<T> {
    const fn new() -> Self {
        Handles {
            recorder: 0,
            list: Vec::new(),
        }
    }

    /// Calls `f` with the handles of `kind` in `queue`, built by `build` the
    /// first time under the current recorder.
    fn with<R>(
        &mut self,
        kind: &'static str,
        queue: &str,
        build: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let recorder = recorder_id();
        if recorder != self.recorder {
            self.list.clear();
            self.recorder = recorder;
        }
        if let Some((_, _, h)) = self
            .list
            .iter()
            .find(|(k, q, _)| *k == kind && **q == *queue)
        {
            return f(h);
        }
        let h = build();
        let r = f(&h);
        if self.list.len() < MAX_HANDLES {
            self.list.push((kind, queue.into(), h));
        }
        r
    }
}

thread_local! {
    static ENQUEUED: RefCell<Handles<Counter>> = const { RefCell::new(Handles::new()) };
    static ATTEMPTED: RefCell<Handles<Arc<AttemptMetrics>>> =
        const { RefCell::new(Handles::new()) };
}

/// Counts `n` jobs of `kind` inserted into `queue`.
pub(crate) fn enqueued(kind: &'static str, queue: &str, n: u64) {
    if n == 0 {
        return;
    }
    ENQUEUED.with(|h| {
        h.borrow_mut().with(
            kind,
            queue,
            || ::metrics::counter!(JOBS_ENQUEUED, "queue" => queue.to_owned(), "kind" => kind),
            |c| c.increment(n),
        )
    });
}

/// An attempt's handles: one counter per outcome, and its two histograms.
pub(crate) struct AttemptMetrics {
    attempts: [Counter; 8],
    duration: Histogram,
    wait: Histogram,
}

impl AttemptMetrics {
    fn register(kind: &'static str, queue: &str) -> Self {
        let attempts = AttemptOutcome::ALL.map(|outcome| {
            ::metrics::counter!(
                ATTEMPTS,
                "queue" => queue.to_owned(),
                "kind" => kind,
                "outcome" => outcome.as_str()
            )
        });
        AttemptMetrics {
            attempts,
            duration: ::metrics::histogram!(ATTEMPT_DURATION, "queue" => queue.to_owned(), "kind" => kind),
            wait: ::metrics::histogram!(QUEUE_WAIT, "queue" => queue.to_owned(), "kind" => kind),
        }
    }

    /// The handles of attempts of `kind` in `queue`.
    pub(crate) fn of(kind: &'static str, queue: &str) -> Arc<Self> {
        ATTEMPTED.with(|h| {
            h.borrow_mut().with(
                kind,
                queue,
                || Arc::new(Self::register(kind, queue)),
                Arc::clone,
            )
        })
    }

    /// Records an attempt that started `wait` after its job was due, ran
    /// `ran`, and ended with `outcome`.
    pub(crate) fn record(&self, wait: Duration, ran: Duration, outcome: AttemptOutcome) {
        self.wait.record(wait.as_secs_f64());
        self.duration.record(ran.as_secs_f64());
        self.attempts[outcome as usize].increment(1);
    }
}

/// Counts `n` jobs of `kind` in `queue` rescued from dead workers: each an
/// attempt lost.
pub(crate) fn rescued(kind: &str, queue: &str, n: u64) {
    let (kind, queue) = (kind.to_owned(), queue.to_owned());
    ::metrics::counter!(JOBS_RESCUED, "queue" => queue.clone(), "kind" => kind.clone())
        .increment(n);
    ::metrics::counter!(
        ATTEMPTS,
        "queue" => queue,
        "kind" => kind,
        "outcome" => AttemptOutcome::Lost.as_str()
    )
    .increment(n);
}

/// Sets the unfinished-job gauges from one sample. States of a queue the
/// sample did not see are set to zero, so a queue that drained reads 0
/// rather than its last count.
pub(crate) fn sampled(sample: &crate::store::Sample, seen: &mut Vec<String>) {
    for queue in seen.iter() {
        if !sample.queues.iter().any(|q| &q.queue == queue) {
            set_queue(queue, &[], 0.0);
        }
    }
    seen.clear();
    for q in &sample.queues {
        set_queue(&q.queue, &q.counts, q.lag.as_secs_f64());
        seen.push(q.queue.clone());
    }
    ::metrics::gauge!(WORKERS).set(sample.workers as f64);
}

/// The states `jobq_jobs` counts: every unfinished one, `pending` (jobs
/// waiting for others) included.
const GAUGED: [JobState; 5] = [
    JobState::Pending,
    JobState::Available,
    JobState::Scheduled,
    JobState::Running,
    JobState::Retryable,
];

/// Sets one queue's gauges: `counts` per state, the others zero.
fn set_queue(queue: &str, counts: &[(JobState, i64)], lag: f64) {
    for state in GAUGED {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        ::metrics::gauge!(JOBS, "queue" => queue.to_owned(), "state" => state.as_str())
            .set(n as f64);
    }
    ::metrics::gauge!(QUEUE_LAG, "queue" => queue.to_owned()).set(lag);
}
