//! What a job is: the [`Job`] trait and its registration record [`JobDef`], the
//! values a job can be handed ([`JobContext`], [`State`], in `context`), its
//! states ([`JobState`], in `state`), and how its result is read
//! ([`Outcome`], [`Control`], in `outcome`). What only `#[job]`'s generated
//! code uses lives in `crate::__private`.

mod context;
mod outcome;
mod state;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limit::JobLimits;

pub(crate) use crate::__private::{
    JobFuture, Location, Registration, RunCx, RunError, StateRequirement,
};
pub(crate) use context::States;
pub use context::{JobContext, State};
pub use outcome::{Control, Outcome};
pub use state::{JobState, UnknownJobState};

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

impl From<JobId> for i64 {
    /// The id as stored, `jobq_jobs.id`.
    fn from(id: JobId) -> i64 {
        id.0
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
    /// What the job returns when it succeeds (the `T` of its `Result<T, E>`),
    /// stored with the job and read back by [`result`](crate::result) and
    /// [`wait`](crate::wait); `()` stores nothing.
    type Output: JobOutput;
    /// Everything the worker needs to know to run the job.
    const DEF: JobDef;
}

/// A type a job can return (the `T` of its `Result<T, E>`): what serde
/// serializes both ways, since it is stored with the job as JSON and read
/// back typed. Implemented for every such type; `()` stores nothing.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a job's result: derive `serde::Serialize` and `serde::Deserialize` for it",
    label = "not `Serialize` and `Deserialize`",
    note = "what a job returns is stored with it as JSON, and read back with `my_job::result(..)` or `my_job::wait(..)`: add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or return `()`"
)]
pub trait JobOutput: Serialize + DeserializeOwned + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> JobOutput for T {}

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
    /// Its concurrency and rate limits, across every worker.
    pub limits: JobLimits,
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
