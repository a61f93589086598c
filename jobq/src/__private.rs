//! Not public API: what `#[job]`'s generated code names, and the few items
//! jobq's own tests and benchmark reach. May change in any release.
//!
//! Generated code names only `::jobq::__private::...` (and `::core::...`),
//! so everything it uses is here: the registration record and its parts,
//! the runner's context and errors, argument decoding, injection, and the
//! reading of a handler's result.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::job::{Control, Job, JobContext, JobDef, JobId, Outcome, State, States};
use crate::{BoxFuture, Db, WaitError};

pub use inventory;
pub use serde;
pub use serde_json;
pub use sqlx;
pub use std::vec::Vec;

mod items;

/// Writes the items of a `#[job]` module; see
/// `items.rs`.
pub use crate::__job_items as job_items;

/// An absent limit partition: a constant of jobq's, so that each job's
/// item is a path, cheaper to check than an `Option::None` typed anew in
/// every job.
pub const NO_STR: Option<&str> = None;

/// The settings' constants of a job whose `#[job]` does not give them:
/// each job's module re-exports those it does not set
/// (bench/README.md, "Compile cost").
pub mod default {
    crate::__job_items!(@const pub QUEUE = jobq_rules::DEFAULT_QUEUE);
    crate::__job_items!(@const pub RETRIES = jobq_rules::DEFAULT_RETRIES);
    crate::__job_items!(@const pub MAX_ATTEMPTS = jobq_rules::DEFAULT_RETRIES as i32 + 1);
    crate::__job_items!(@const pub PRIORITY = jobq_rules::DEFAULT_PRIORITY);
    crate::__job_items!(@const pub CRON = None);
    crate::__job_items!(@const pub TIMEOUT = None);
}

/// What a job's [`JobDef`] holds where `#[job]` says nothing: each job's
/// `DEF` names its own name, location, runner and the settings it gives,
/// and takes the rest from here (`..DEFAULT_DEF`).
pub const DEFAULT_DEF: JobDef = JobDef {
    name: "",
    aliases: &[],
    queue: default::QUEUE,
    max_attempts: default::MAX_ATTEMPTS,
    priority: default::PRIORITY,
    timeout: None,
    cron: None,
    tz: None,
    catch_up: crate::CatchUp::Latest,
    unique_by_args: false,
    unique_for: None,
    limits: crate::JobLimits::NONE,
    location: Location {
        module_path: "",
        file: "",
        line: 0,
    },
    requires: &[],
    run: no_runner,
};

/// The runner of [`DEFAULT_DEF`], which every job's `DEF` replaces with
/// its own.
fn no_runner(_: RunCx) -> Result<JobFuture, RunError> {
    unreachable!("every #[job] gives its JobDef its own runner")
}

/// jobq's claim statement, for its benchmark to time on its own.
pub use crate::store::CLAIM_SQL;

/// The rescue's statements, for the test that reads their plans.
pub use crate::store::{LOST_SQL, RESCUE_SQL};

/// The completion of attempts and the mark of a suspect's start, for the
/// tests that read their plans.
pub use crate::store::{COMPLETE_SQL, MARK_STARTED_SQL};

/// The pruner's batch delete, for the test that reads its plan.
pub use crate::store::DELETE_PRUNABLE;

/// The channel enqueues notify and the first key of the queues' wake
/// locks, for the tests that watch them.
pub use crate::store::{INSERT_CHANNEL, WAKE_LOCK_CLASS};

/// The channel on which the end of a job a caller waits for is announced.
pub use crate::store::FINISHED_CHANNEL;

/// The first key of the limits' advisory locks, for the tests that watch
/// them.
pub use crate::store::LIMIT_LOCK_CLASS;

/// Reads cron job `name`'s latest tick, recording `now` when it has
/// none, and says whether this call recorded it: for the tests that race
/// many workers registering one cron job.
pub async fn cron_last_tick(
    pool: &sqlx::PgPool,
    name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<(chrono::DateTime<chrono::Utc>, bool)> {
    crate::store::cron_last_tick(pool, name, now).await
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
            .map(State::new)
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

/// A type a job's argument can have: arguments are stored as JSON, so it is
/// serde-serializable both ways, and each job's `Args` is `Debug` and
/// `Clone`, so it is those too. `#[job]` asserts it of every argument's
/// type with [`assert_arg`], spanned on the type, and bounds `Args`'s impls
/// on it: a type that falls short gets this one error, not one per trait.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a job argument: it must be `Serialize`, `Deserialize`, `Debug` and `Clone`",
    label = "lacks one or more of these",
    note = "job arguments are stored as JSON, and a job's `Args` is `Debug` and `Clone`: derive what `{Self}` lacks of `#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]`; for another crate's type, enable that crate's `serde` feature or give the parameter `#[serde(with = \"..\")]`"
)]
#[doc(hidden)]
pub trait JobArg: Serialize + DeserializeOwned + fmt::Debug + Clone {}

// `do_not_recommend`: an error names `JobArg` (and its message), not the
// serde trait behind it.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + fmt::Debug + Clone> JobArg for T {}

/// Compiles only when `T` is a [`JobArg`].
#[doc(hidden)]
pub fn assert_arg<T: JobArg>() {}

/// Boxes an attempt: awaits the handler's future, splits its result with
/// `split` (`#[job]` passes `IntoOutcome::into_outcome`, spanned on the
/// job's return type) and keeps what it returned with `keep` ([`keep`]). One generic function, so that each job
/// adds no `async` block of its own to compile.
#[doc(hidden)]
pub fn run<F, T>(
    handler: F,
    split: fn(F::Output) -> Result<T, Outcome>,
    keep: fn(T) -> Outcome,
) -> JobFuture
where
    F: Future + Send + 'static,
    T: 'static,
{
    Box::pin(async move {
        match split(handler.await) {
            Ok(value) => keep(value),
            Err(outcome) => outcome,
        }
    })
}

/// What job `J`'s `Ok` value becomes: nothing to write for `()` (not even
/// serialized) or a value serde writes as `null`, else its JSON, kept with
/// the job. A value that does not serialize (a map with non-string keys)
/// discards the job, with serde's message: trying the work again would
/// return the same. Generic over the job, not its output: the bound comes
/// with `J: Job`, so a job whose output is not serde gets one error, on
/// its `type Output`.
#[doc(hidden)]
pub fn keep<J: Job>(value: J::Output) -> Outcome {
    if TypeId::of::<J::Output>() == TypeId::of::<()>() {
        return Outcome::Completed;
    }
    match serde_json::to_string(&value) {
        Ok(json) if json == "null" => Outcome::Completed,
        Ok(json) => Outcome::CompletedWith(json),
        Err(e) => Outcome::Discard {
            error: format!("the job's result could not be stored: {e}"),
            kind: "discard",
        },
    }
}

/// Splits a handler's return value into what it returned or the
/// [`Outcome`] of a failure.
#[diagnostic::on_unimplemented(
    message = "a job must return `Result<T, E>` where `E` implements `Display`",
    note = "for example `Result<(), MyError>`, `anyhow::Result<()>` or `anyhow::Result<Page>`"
)]
#[doc(hidden)]
pub trait IntoOutcome {
    /// What the job returns when it succeeds: the `T` of `Result<T, E>`.
    type Ok;
    /// Reads the handler's result.
    fn into_outcome(self) -> Result<Self::Ok, Outcome>;
}

impl<T, E: fmt::Display + 'static> IntoOutcome for Result<T, E> {
    type Ok = T;

    fn into_outcome(self) -> Result<T, Outcome> {
        let e = match self {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        Err(match Control::find(&e) {
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
        })
    }
}

/// The registration record that `#[job]` submits to `inventory`: the
/// function that gives the job's [`JobDef`] ([`def`]). A function rather
/// than the reference itself, so that `cargo check` of a crate of jobs does
/// not evaluate each job's `DEF` to build its record (bench/README.md,
/// "Compile cost").
#[doc(hidden)]
pub struct Registration(pub fn() -> &'static JobDef);

inventory::collect!(Registration);

/// Job `J`'s registration: its [`JobDef`].
#[doc(hidden)]
pub fn def<J: Job>() -> &'static JobDef {
    &J::DEF
}

// What `#[job]`'s `enqueue`, `enqueue_many`, `result` and `wait` return:
// jobq's own generic futures, boxed here. A job's fn then returns a named
// type, which costs `cargo check` far less per job than an `impl Future`
// (bench/README.md, "Compile cost"); the box costs one allocation per call
// of a function that goes to the database.

/// [`crate::enqueue`], boxed.
#[doc(hidden)]
pub fn enqueue<'c, J: Job, A: Db<'c>>(db: A, args: J::Args) -> BoxFuture<'c, crate::Result<JobId>> {
    Box::pin(crate::enqueue::<J, A>(db, args))
}

/// [`crate::enqueue_many`], boxed.
#[doc(hidden)]
pub fn enqueue_many<'c, J: Job, A: Db<'c>, I: IntoIterator<Item = J::Args>>(
    db: A,
    args: I,
) -> BoxFuture<'c, crate::Result<Vec<JobId>>> {
    Box::pin(crate::enqueue_many::<J, A, I>(db, args))
}

/// [`crate::result`], boxed.
#[doc(hidden)]
pub fn result<'c, J: Job, A: Db<'c>>(
    db: A,
    id: JobId,
) -> BoxFuture<'c, crate::Result<Option<J::Output>>> {
    Box::pin(crate::result::<J, A>(db, id))
}

/// [`crate::wait`], boxed.
#[doc(hidden)]
pub fn wait<J: Job>(
    pool: &sqlx::PgPool,
    id: JobId,
    timeout: Duration,
) -> BoxFuture<'_, Result<J::Output, WaitError>> {
    Box::pin(crate::wait::<J>(pool, id, timeout))
}
