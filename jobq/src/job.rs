//! What a job is: the [`Job`] trait and its registration record [`JobDef`], the
//! values a job can be handed ([`JobContext`], [`State`]), and how its result is
//! read ([`Outcome`]).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The id of a stored job (`jobq_jobs.id`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The states of a stored job (`jobq_jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobState {
    /// May run now.
    Available,
    /// Waits for its `scheduled_at`.
    Scheduled,
    /// Claimed by a worker.
    Running,
    /// Failed; waits for its backoff to run again.
    Retryable,
    /// Finished successfully.
    Completed,
    /// Out of attempts, or can never run.
    Discarded,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Available,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The states of a job that has not finished: the default scope of a
    /// unique job's key.
    pub const UNFINISHED: [JobState; 4] = [
        JobState::Available,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retryable,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state stored as `name`.
    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// This state's bit in a `unique_states` mask (`jobq_state_bit` in SQL).
    pub(crate) fn bit(self) -> i32 {
        1 << (self as i32)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cron job does about the ticks it missed while no worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Skip them: run only ticks from now on.
    None,
    /// Run the most recent missed tick once, then go on.
    #[default]
    Latest,
    /// Run every missed tick (at most 1,000, the most recent).
    All,
}

/// A job type. `#[job]` implements it for the marker `my_job::Job`; write it by
/// hand only to name jobs in generic code.
pub trait Job: Send + Sync + 'static {
    /// The serialized arguments.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// Everything the worker needs to know to run the job.
    const DEF: JobDef;
}

/// The registration record of one job type: its stored name, defaults, and a
/// type-erased runner. `#[job]` builds it; the worker reads it.
#[derive(Debug)]
pub struct JobDef {
    /// The stable stored name (`jobq_jobs.kind`).
    pub name: &'static str,
    /// Older names still run by this job, kept after a rename.
    pub aliases: &'static [&'static str],
    /// The default queue.
    pub queue: &'static str,
    /// Attempts in all (retries + 1).
    pub max_attempts: i32,
    /// The default priority; lower runs first.
    pub priority: i16,
    /// How long one attempt may run, if limited.
    pub timeout: Option<Duration>,
    /// The cron expression, for a cron job.
    pub cron: Option<&'static str>,
    /// The time zone the cron expression is read in (UTC when `None`).
    pub tz: Option<&'static str>,
    /// What a cron job does about ticks missed while no worker ran.
    pub catch_up: CatchUp,
    /// At most one unfinished job per distinct arguments.
    pub unique_by_args: bool,
    /// With `unique_by_args`: the key holds within windows of this length.
    pub unique_for: Option<Duration>,
    /// Where the job is defined, for error messages.
    #[doc(hidden)]
    pub location: Location,
    /// The state types the job takes.
    #[doc(hidden)]
    pub requires: &'static [fn() -> Option<StateRequirement>],
    /// Decodes the arguments, injects the rest, and returns the handler's future.
    #[doc(hidden)]
    pub run: fn(RunCx) -> Result<JobFuture, RunError>,
}

impl JobDef {
    /// Every name this job answers to: its name, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// Where the job is defined: `module::path (file.rs:line)`.
    pub fn defined_at(&self) -> String {
        self.location.to_string()
    }
}

/// Where a job is defined.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct Location {
    /// `module_path!()` at the job.
    pub module_path: &'static str,
    /// `file!()` at the job.
    pub file: &'static str,
    /// `line!()` at the job.
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.module_path, self.file, self.line)
    }
}

/// A state type a job needs from the worker.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct StateRequirement {
    /// `TypeId::of::<T>()`.
    pub type_id: TypeId,
    /// `type_name::<T>()`.
    pub type_name: &'static str,
}

/// The future of one attempt.
#[doc(hidden)]
pub type JobFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// A value the worker was given with [`Worker::state`](crate::Worker::state),
/// handed to every job that takes a `State<T>` parameter. Derefs to `T`;
/// cloning it is cheap (it is an `Arc`).
pub struct State<T: ?Sized>(Arc<T>);

impl<T: ?Sized> State<T> {
    /// Wraps a shared value.
    pub fn new(value: Arc<T>) -> Self {
        State(value)
    }

    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T: ?Sized> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&&*self.0).finish()
    }
}

/// The values a worker was given, by type.
#[derive(Default, Clone)]
pub(crate) struct States(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl States {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.0.contains_key(&id)
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
    }
}

/// What a running job knows about itself, and its cancellation signal. Take it
/// as a parameter of type `jobq::JobContext`.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    id: JobId,
    name: &'static str,
    queue: String,
    attempt: i32,
    max_attempts: i32,
    scheduled_at: DateTime<Utc>,
    cron: bool,
    cancel: CancellationToken,
    pool: PgPool,
}

impl JobContext {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: JobId,
        def: &'static JobDef,
        queue: String,
        attempt: i32,
        max_attempts: i32,
        scheduled_at: DateTime<Utc>,
        cancel: CancellationToken,
        pool: PgPool,
    ) -> Self {
        JobContext {
            inner: Arc::new(ContextInner {
                id,
                name: def.name,
                cron: def.cron.is_some(),
                queue,
                attempt,
                max_attempts,
                scheduled_at,
                cancel,
                pool,
            }),
        }
    }

    /// This job's id.
    pub fn id(&self) -> JobId {
        self.inner.id
    }

    /// The job's stored name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The queue the job was claimed from.
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// This attempt's number: 1 for the first run.
    pub fn attempt(&self) -> i32 {
        self.inner.attempt
    }

    /// Attempts the job gets in all.
    pub fn max_attempts(&self) -> i32 {
        self.inner.max_attempts
    }

    /// Whether a failure now discards the job instead of retrying it.
    pub fn is_last_attempt(&self) -> bool {
        self.inner.attempt >= self.inner.max_attempts
    }

    /// When this attempt was due to start.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        self.inner.scheduled_at
    }

    /// For a cron job, the tick this run is for (in UTC); `None` otherwise.
    pub fn cron_tick(&self) -> Option<DateTime<Utc>> {
        self.inner.cron.then_some(self.inner.scheduled_at)
    }

    /// Fires when the worker wants this attempt to stop: the worker is
    /// shutting down past its grace period, or the job timed out or was
    /// cancelled. A handler that can stop early should watch it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Whether [`cancellation`](Self::cancellation) has fired.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// The worker's pool, to enqueue follow-up jobs or read data.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("queue", &self.inner.queue)
            .field("attempt", &self.inner.attempt)
            .field("max_attempts", &self.inner.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Everything one attempt's runner needs.
#[doc(hidden)]
pub struct RunCx {
    pub(crate) def: &'static JobDef,
    pub(crate) args: String,
    pub(crate) ctx: JobContext,
    pub(crate) states: Arc<States>,
}

/// Why an attempt could not even start.
#[derive(Debug)]
#[doc(hidden)]
pub enum RunError {
    /// The stored arguments do not decode into `Args`: the job can never run.
    Decode(String),
    /// A `State<T>` the worker does not have (checked at start, so unexpected).
    MissingState(&'static str),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Decode(m) => f.write_str(m),
            RunError::MissingState(t) => write!(f, "the worker has no state of type `{t}`"),
        }
    }
}

/// Decodes the stored arguments of job `J`, with an error that names the job.
/// Generic over the job, not its `Args`: the bound comes with `J: Job`, so a
/// job whose `Args` is not serde adds no error here.
#[doc(hidden)]
pub fn decode<J: Job>(cx: &RunCx) -> Result<J::Args, RunError> {
    serde_json::from_str(&cx.args).map_err(|e| {
        RunError::Decode(format!(
            "cannot decode the arguments of job `{}`: {e}",
            cx.def.name
        ))
    })
}

/// A parameter type the worker provides instead of the stored arguments.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be injected into a job",
    note = "a job parameter named `State<..>` or `JobContext` must be `jobq::State<T>` or `jobq::JobContext`"
)]
#[doc(hidden)]
pub trait Inject: Sized {
    /// Takes the value for one attempt.
    fn inject(cx: &RunCx) -> Result<Self, RunError>;
    /// The state type this needs from the worker, if any.
    fn requirement() -> Option<StateRequirement>;
}

impl<T: Send + Sync + 'static> Inject for State<T> {
    fn inject(cx: &RunCx) -> Result<Self, RunError> {
        cx.states
            .get::<T>()
            .map(State)
            .ok_or(RunError::MissingState(std::any::type_name::<T>()))
    }

    fn requirement() -> Option<StateRequirement> {
        Some(StateRequirement {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        })
    }
}

impl Inject for JobContext {
    fn inject(cx: &RunCx) -> Result<Self, RunError> {
        Ok(cx.ctx.clone())
    }

    fn requirement() -> Option<StateRequirement> {
        None
    }
}

/// What a job asks of the worker instead of plain failure: return it as the
/// error of the job's `Result`.
///
/// It is recognized when the job's error type is `jobq::Control` itself,
/// `anyhow::Error` (with the default `anyhow` feature) or
/// `Box<dyn Error + Send + Sync>` holding it:
///
/// ```
/// use std::time::Duration;
///
/// #[jobq::job]
/// async fn sync_account(account_id: i64) -> anyhow::Result<()> {
///     let rate_limited = account_id < 0;
///     if rate_limited {
///         // Not a failure: try again in a minute, without using an attempt.
///         return Err(jobq::Control::snooze(Duration::from_secs(60)).into());
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Control {
    /// Run again after this long; the attempt does not count.
    #[error("snoozed for {0:?}")]
    Snooze(Duration),
    /// A failed attempt, retried at this time instead of after the backoff
    /// (discarded instead when it was the last attempt).
    #[error("retry requested at {at}: {reason}")]
    RetryAt {
        /// When to run again.
        at: DateTime<Utc>,
        /// Why, kept in the job's error history.
        reason: String,
    },
    /// Fail for good: no more attempts.
    #[error("discarded: {0}")]
    Discard(String),
}

impl Control {
    /// Run again after `delay`, without using an attempt. A delay longer
    /// than 100 years is cut to 100 years.
    pub fn snooze(delay: Duration) -> Self {
        Control::Snooze(delay)
    }

    /// Fail this attempt and run the next one at `at` (at once if `at` is
    /// past, in 100 years if it is later than that).
    pub fn retry_at(at: DateTime<Utc>, reason: impl Into<String>) -> Self {
        Control::RetryAt {
            at,
            reason: reason.into(),
        }
    }

    /// Fail for good, with `reason` kept in the job's error history.
    pub fn discard(reason: impl Into<String>) -> Self {
        Control::Discard(reason.into())
    }

    /// Finds a `Control` in a job's error value, wherever it can be.
    fn find<E: 'static>(error: &E) -> Option<&Control> {
        let any = error as &dyn Any;
        if let Some(c) = any.downcast_ref::<Control>() {
            return Some(c);
        }
        #[cfg(feature = "anyhow")]
        if let Some(e) = any.downcast_ref::<anyhow::Error>() {
            return e.downcast_ref::<Control>();
        }
        if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
            return e.downcast_ref::<Control>();
        }
        None
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned `Ok`.
    Completed,
    /// The handler returned `Err`, panicked or timed out: retry after backoff
    /// (or at `retry_at`), or discard when out of attempts.
    Failed {
        /// What went wrong.
        error: String,
        /// `"error"`, `"panic"` or `"timeout"`.
        kind: &'static str,
        /// When to retry, instead of the backoff.
        retry_at: Option<DateTime<Utc>>,
    },
    /// The job can never succeed: discard now.
    Discard {
        /// Why.
        error: String,
        /// `"decode"` (arguments do not decode) or `"discard"` (asked by the job).
        kind: &'static str,
    },
    /// Run again after this long; the attempt does not count.
    Snooze(Duration),
    /// The job's cancellation was requested and it stopped.
    Cancelled,
    /// The worker stopped the attempt while shutting down: the job goes back to
    /// `available` and the attempt does not count.
    Interrupted,
}

impl Outcome {
    /// A plain failure of `kind`.
    pub(crate) fn failed(error: impl Into<String>, kind: &'static str) -> Self {
        Outcome::Failed {
            error: error.into(),
            kind,
            retry_at: None,
        }
    }
}

/// A type a job's argument can have: arguments are stored as JSON, so it is
/// serde-serializable both ways. `#[job]` asserts it of every argument's
/// type with [`assert_arg`], spanned on the type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a job argument: derive `serde::Serialize` and `serde::Deserialize` for it",
    label = "not `Serialize` and `Deserialize`",
    note = "job arguments are stored as JSON: add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`; for another crate's type, enable that crate's `serde` feature or give the parameter `#[serde(with = \"..\")]`"
)]
#[doc(hidden)]
pub trait JobArg: Serialize + DeserializeOwned {}

// `do_not_recommend`: an error names `JobArg` (and its message), not the
// serde trait behind it.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> JobArg for T {}

/// Compiles only when `T` is a [`JobArg`].
#[doc(hidden)]
pub fn assert_arg<T: JobArg>() {}

/// Boxes an attempt: awaits the handler's future and reads its result with
/// `outcome` (`#[job]` passes `IntoOutcome::into_outcome`, spanned on the
/// job's return type). One generic function, so that each job adds no
/// `async` block of its own to compile.
#[doc(hidden)]
pub fn run<F>(handler: F, outcome: fn(F::Output) -> Outcome) -> JobFuture
where
    F: Future + Send + 'static,
{
    Box::pin(async move { outcome(handler.await) })
}

/// Turns a handler's return value into an [`Outcome`].
#[diagnostic::on_unimplemented(
    message = "a job must return `Result<T, E>` where `E` implements `Display`",
    note = "for example `Result<(), MyError>` or `anyhow::Result<()>`"
)]
#[doc(hidden)]
pub trait IntoOutcome {
    /// Reads the handler's result.
    fn into_outcome(self) -> Outcome;
}

impl<T, E: fmt::Display + 'static> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> Outcome {
        let e = match self {
            Ok(_) => return Outcome::Completed,
            Err(e) => e,
        };
        match Control::find(&e) {
            Some(Control::Snooze(d)) => Outcome::Snooze(*d),
            Some(Control::RetryAt { at, reason }) => Outcome::Failed {
                error: reason.clone(),
                kind: "error",
                retry_at: Some(*at),
            },
            Some(Control::Discard(reason)) => Outcome::Discard {
                error: reason.clone(),
                kind: "discard",
            },
            // `{:#}` shows the whole chain of an `anyhow::Error`.
            None => Outcome::failed(format!("{e:#}"), "error"),
        }
    }
}

/// The registration record that `#[job]` submits to `inventory`.
#[doc(hidden)]
pub struct Registration(pub &'static JobDef);

inventory::collect!(Registration);
