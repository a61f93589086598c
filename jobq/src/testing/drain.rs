//! [`drain`]: running a test database's due jobs to the end, through the
//! worker's own code, without starting a worker.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::job::{JobId, JobState, Outcome, States};
use crate::registry::Registry;
use crate::store;
use crate::worker::{Shared, check_job_states, execute, fetch, hostname, listen};

/// Attempts a drain runs at most unless told otherwise by [`Drain::limit`].
pub const DEFAULT_DRAIN_LIMIT: usize = 1_000;

/// How long the drain's worker row says it may miss its heartbeat: it sends
/// none, and a worker running beside it must not take it for dead.
const DRAIN_LEASE_MS: i64 = 24 * 3600 * 1000;

/// Runs the jobs due in `pool`'s database, one after another, with their real
/// handlers, and records each attempt's result as a worker would: the same
/// code claims the jobs, runs the attempt (timeout, panic, decoding) and
/// turns its outcome into the job's next state. Resolves, once awaited, to
/// counts by outcome and the errors ([`Drained`]).
///
/// By default it drains every queue holding a job of a kind linked into the
/// test binary, runs the jobs that are due when it starts, once each, and at
/// most [`DEFAULT_DRAIN_LIMIT`] of them. Jobs those jobs enqueue, and failed
/// attempts' retries, wait unless [`recursive`](Drain::recursive) is set;
/// jobs due later wait unless [`with_scheduled`](Drain::with_scheduled) is.
///
/// ```no_run
/// # pub struct Mailer;
/// # #[jobq::job(queue = "email")]
/// # async fn send_email(m: jobq::State<Mailer>, to: String) -> Result<(), std::io::Error> { Ok(()) }
/// # async fn demo(pool: sqlx::PgPool) {
/// let drained = jobq::testing::drain(&pool)
///     .queue("email")
///     .state(Mailer)
///     .recursive(true)
///     .await;
/// assert_eq!(drained.completed, 1, "{drained}");
/// # }
/// # fn main() {}
/// ```
///
/// # Panics
///
/// When a job takes a `State<T>` the drain was not given, no job is linked
/// in, or the database fails: it is a test helper, and the panic is the
/// test's failure. A job's own failure is no panic: it is counted.
#[track_caller]
pub fn drain(pool: &PgPool) -> Drain {
    Drain {
        pool: pool.clone(),
        queues: Vec::new(),
        due: Due::Now,
        recursive: false,
        limit: DEFAULT_DRAIN_LIMIT,
        states: States::default(),
        registry: None,
        caller: Location::caller(),
    }
}

/// A drain about to run: see [`drain`]. Nothing runs until it is awaited.
#[must_use = "nothing runs until the drain is `.await`ed"]
pub struct Drain {
    pool: PgPool,
    queues: Vec<String>,
    due: Due,
    recursive: bool,
    limit: usize,
    states: States,
    registry: Option<Registry>,
    caller: &'static Location<'static>,
}

/// Which jobs waiting for a time a drain runs early.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// None: only those due now.
    Now,
    /// Those due within this long.
    Within(Duration),
    /// All of them.
    All,
}

impl Drain {
    /// Drains `queue`; call it again for more. Without it, every queue that
    /// holds a job the drain can run.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    /// Runs jobs due later (delayed jobs, snoozed jobs, and failed jobs
    /// waiting for their retry) now too. With [`recursive`](Self::recursive),
    /// a job that keeps failing then runs until it is out of attempts.
    ///
    /// jobq reads the time from PostgreSQL, so no clock of the test's can be
    /// moved forward: this, [`scheduled_within`](Self::scheduled_within) and
    /// `perform(..).scheduled_at(..)` stand in for one.
    pub fn with_scheduled(mut self, yes: bool) -> Self {
        self.due = if yes { Due::All } else { Due::Now };
        self
    }

    /// Runs the jobs due within `horizon` from now too, as if that much time
    /// had passed: a job delayed by an hour runs under
    /// `scheduled_within(2 hours)`, not under `scheduled_within(30 minutes)`.
    pub fn scheduled_within(mut self, horizon: Duration) -> Self {
        self.due = Due::Within(horizon);
        self
    }

    /// Keeps draining until nothing is due: jobs enqueued by the drained jobs
    /// run too, and so do retries that have become due (all retries, with
    /// [`with_scheduled`](Self::with_scheduled)).
    pub fn recursive(mut self, yes: bool) -> Self {
        self.recursive = yes;
        self
    }

    /// Runs at most `attempts` attempts in all (default
    /// [`DEFAULT_DRAIN_LIMIT`]); [`Drained::limit_reached`] says when the
    /// drain stopped there. A guard against a job that re-enqueues itself or
    /// snoozes forever under `recursive(true)`.
    pub fn limit(mut self, attempts: usize) -> Self {
        self.limit = attempts;
        self
    }

    /// Gives jobs a value they take as `jobq::State<T>`, as
    /// [`Worker::state`](crate::Worker::state) does.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Gives jobs a value they take as `jobq::State<T>` that the test keeps a
    /// handle on, to look at afterwards (what a fake mailer "sent"):
    /// `.state_arc(mailer.clone())` with `mailer: Arc<Mailer>`.
    pub fn state_arc<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.states.insert_arc(value);
        self
    }

    /// Runs only the jobs of `registry`, instead of every job linked in.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    async fn run(self) -> Drained {
        let Drain {
            pool,
            queues: given,
            due,
            recursive,
            limit,
            states,
            registry,
            caller,
        } = self;
        let fail = |message: String| -> Drained { panic!("drain at {caller}: {message}") };
        let registry = match registry.map_or_else(crate::registry::registry, Ok) {
            Ok(r) if r.is_empty() => {
                return fail("no job is registered: no `#[job]` is linked into this test".into());
            }
            Ok(r) => r,
            Err(e) => return fail(e.to_string()),
        };
        let kinds = registry.kinds();
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot reach the database: {e}")),
        };
        // A worker row for the claim's fence; it publishes no kinds, being
        // no worker the CLI or the dashboard should count on.
        let me = store::WorkerRow {
            host: &format!("{} (jobq::testing::drain)", hostname()),
            pid: std::process::id() as i32,
            queues: &given,
            concurrency: &vec![1; given.len()],
            lease_ms: DRAIN_LEASE_MS,
            kinds: "[]",
            retention: None,
        };
        let worker_id = match store::register_worker(&pool, &me).await {
            Ok(id) => id,
            Err(e) => return fail(format!("cannot register the drain: {e}")),
        };
        let (shared, mut results) = Shared::detached(pool.clone(), worker_id, registry, states);
        // Cancellation asked of a job while it runs (`jobq::cancel`, by the
        // job itself or by code it calls) reaches it as in a worker: the
        // worker's own listener, for as long as the drain runs (a panic
        // included, through the guard).
        let stop = tokio_util::sync::CancellationToken::new();
        let _stop_listening = stop.clone().drop_guard();
        tokio::spawn(listen::run(
            pool.clone(),
            worker_id,
            std::collections::HashMap::new(),
            shared.running.clone(),
            stop,
        ));
        let slot = Arc::new(Semaphore::new(1));
        let mut drained = Drained::default();
        'passes: loop {
            let queues = if given.is_empty() {
                match store::waiting_queues(&mut conn, &kinds).await {
                    Ok(q) => q,
                    Err(e) => return fail(format!("cannot list the queues: {e}")),
                }
            } else {
                given.clone()
            };
            let mut ran = 0;
            for queue in &queues {
                let until = match due {
                    Due::Now => Some(Utc::now()),
                    Due::Within(h) => Some(
                        chrono::Duration::from_std(h)
                            .ok()
                            .and_then(|h| Utc::now().checked_add_signed(h))
                            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC),
                    ),
                    Due::All => None,
                };
                if let Err(e) = store::make_due(&mut conn, queue, until).await {
                    return fail(format!("cannot make queue `{queue}`'s jobs due: {e}"));
                }
                // The states of the jobs about to run, checked before any
                // runs: those of jobs in other queues are not needed.
                let waiting = match store::available_kinds(&mut conn, queue, &kinds).await {
                    Ok(k) => k,
                    Err(e) => return fail(format!("cannot read queue `{queue}`: {e}")),
                };
                for kind in &waiting {
                    let def = shared.registry.get(kind).expect("a registered kind");
                    if let Err(crate::Error::MissingState { job, type_name }) =
                        check_job_states(def, &shared.states)
                    {
                        return fail(format!(
                            "job `{job}`, waiting in queue `{queue}`, takes `State<{type_name}>`, \
                             which the drain was not given; add `.state(value)` with a \
                             `{type_name}` to the drain"
                        ));
                    }
                }
                let room = limit - drained.ran();
                if room == 0 {
                    drained.limit_reached = true;
                    break 'passes;
                }
                // The worker's own claim: the plain one, and the limited
                // one for kinds (or a queue) with limits.
                let ask = fetch::ClaimAsk {
                    queue,
                    kinds: &shared.kinds,
                    room,
                    idle: room,
                    queue_limited: false,
                    backlog: false,
                    worker_id,
                    claim_at: Utc::now(),
                };
                let claim = fetch::claim_all(&mut conn, ask).await.map(|(c, _)| c);
                let claim = match claim {
                    Ok(c) if !c.alive => {
                        return fail(
                            "the drain's worker row is gone: did a test remove the rows of \
                             `jobq_workers`?"
                                .into(),
                        );
                    }
                    Ok(c) => c,
                    Err(e) => return fail(format!("cannot claim from queue `{queue}`: {e}")),
                };
                for job in claim.jobs {
                    let (kind, attempt) = (job.kind.clone(), job.counted_attempt());
                    let permit = slot.clone().acquire_owned().await.expect("never closed");
                    execute::run(shared.clone(), queue.clone(), job, permit).await;
                    let result = results.recv().await.expect("the drain holds a sender");
                    let error = match &result.outcome {
                        Some(Outcome::Failed { error, .. } | Outcome::Discard { error, .. }) => {
                            Some(error.clone())
                        }
                        _ => None,
                    };
                    let id = result.id;
                    let finish = result.into_finish(&shared.config);
                    if let Err(e) = store::finish_many(&mut conn, worker_id, &[finish]).await {
                        return fail(format!("cannot record the result of job {id}: {e}"));
                    }
                    let state = match store::job_state(&mut conn, id).await {
                        Ok(s) => s,
                        Err(e) => return fail(format!("cannot read job {id}'s state: {e}")),
                    };
                    drained.count(state);
                    if let (Some(error), Some(state)) = (error, state) {
                        drained.errors.push(JobError {
                            id: JobId(id),
                            kind,
                            attempt,
                            state,
                            error,
                        });
                    }
                    ran += 1;
                }
            }
            if !recursive || ran == 0 {
                break;
            }
        }
        drop(conn);
        if let Err(e) = store::deregister_worker(&pool, worker_id).await {
            return fail(format!("cannot remove the drain's worker row: {e}"));
        }
        drained
    }
}

impl IntoFuture for Drain {
    type Output = Drained;
    type IntoFuture = Pin<Box<dyn Future<Output = Drained> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// What a [`drain`] did: how many attempts ended each way, as the jobs'
/// states say after the results were written, and the error of each failed
/// attempt. Its `Display` lists both, for assertion messages:
/// `assert_eq!(drained.completed, 3, "{drained}")`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Drained {
    /// Attempts that completed their job.
    pub completed: usize,
    /// Failed attempts whose job will be retried (`retryable`).
    pub failed: usize,
    /// Attempts that discarded their job: out of attempts, asked by the job,
    /// or arguments that do not decode.
    pub discarded: usize,
    /// Attempts that snoozed (`scheduled` again, the attempt not counted).
    pub snoozed: usize,
    /// Attempts that ended their job `cancelled`.
    pub cancelled: usize,
    /// The error of every failed or discarded attempt, in the order they ran.
    pub errors: Vec<JobError>,
    /// Whether the drain stopped at its [`limit`](Drain::limit); jobs may
    /// still be due.
    pub limit_reached: bool,
}

impl Drained {
    /// Attempts run in all.
    pub fn ran(&self) -> usize {
        self.completed + self.failed + self.discarded + self.snoozed + self.cancelled
    }

    fn count(&mut self, state: Option<JobState>) {
        match state {
            Some(JobState::Completed) => self.completed += 1,
            Some(JobState::Retryable) => self.failed += 1,
            Some(JobState::Discarded) => self.discarded += 1,
            Some(JobState::Scheduled) => self.snoozed += 1,
            Some(JobState::Cancelled) => self.cancelled += 1,
            // A drain interrupts nothing (a cancellation asked of a running
            // job ends it `cancelled`, above), and nothing else writes a
            // claimed job meanwhile; a job deleted by its own handler is
            // gone; an attempt never leaves its job waiting for others.
            Some(JobState::Pending | JobState::Available | JobState::Running) | None => {}
        }
    }
}

impl fmt::Display for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drained {} attempt(s): {} completed, {} failed, {} discarded, {} snoozed, {} \
             cancelled{}",
            self.ran(),
            self.completed,
            self.failed,
            self.discarded,
            self.snoozed,
            self.cancelled,
            if self.limit_reached {
                " (stopped at the limit)"
            } else {
                ""
            }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// The error of one failed attempt in a [`drain`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobError {
    /// The job.
    pub id: JobId,
    /// The job's stored name.
    pub kind: String,
    /// The attempt's number, 1 for the first.
    pub attempt: i32,
    /// The state the failure left the job in: `retryable` or `discarded`.
    pub state: JobState,
    /// The error, as written to the job's error history.
    pub error: String,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} ({}), attempt {}, now {}: {}",
            self.id, self.kind, self.attempt, self.state, self.error
        )
    }
}
