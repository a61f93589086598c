//! [`perform`]: one job's handler run on the spot, as a worker runs it.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::job::{Job, Outcome, States};
use crate::registry::Registry;
use crate::store::ClaimedJob;
use crate::worker::{Shared, check_job_states, execute};

/// Runs the handler of job `J` once with `args` and resolves, once awaited,
/// to how the attempt ended, without a worker and without storing the job.
///
/// It runs as a worker's attempt does, through the same code: the arguments
/// go through their JSON form (so `#[serde(...)]` attributes apply), the
/// handler gets the [`State`](crate::State)s given with
/// [`state`](Perform::state) and a real [`JobContext`](crate::JobContext),
/// the job's `timeout` holds, and a panic is a failed attempt. The outcome
/// is what the worker would record: [`Outcome::Completed`], a failure with
/// its error text, a snooze, a discard.
///
/// ```no_run
/// # use std::sync::Mutex;
/// # #[derive(Default)] pub struct Mailer { sent: Mutex<Vec<String>> }
/// # #[jobq::job(queue = "email")]
/// # async fn send_email(m: jobq::State<Mailer>, to: String) -> Result<(), std::io::Error> {
/// #     m.sent.lock().unwrap().push(to); Ok(())
/// # }
/// # async fn demo() {
/// use jobq::Outcome;
/// use jobq::testing::perform;
///
/// let outcome = perform::<send_email::Job>(send_email::Args { to: "ada@example.com".into() })
///     .state(Mailer::default())
///     .await;
/// assert_eq!(outcome, Outcome::Completed);
/// # }
/// # fn main() {}
/// ```
///
/// For a job that returns a value, [`output`](Perform::output) gives it
/// typed.
///
/// The context's job id is 0 and its queue the job's default. Its pool is
/// the one given with [`pool`](Perform::pool); without one, a closed pool:
/// a handler that uses it fails with sqlx's `PoolClosed` error.
///
/// # Panics
///
/// When the job takes a `State<T>` it was not given, or its arguments do not
/// serialize.
#[track_caller]
pub fn perform<J: Job>(args: J::Args) -> Perform<J> {
    Perform {
        args,
        states: States::default(),
        pool: None,
        attempt: 1,
        scheduled_at: None,
        caller: Location::caller(),
        _job: PhantomData,
    }
}

/// One run of a job's handler, about to happen: see [`perform`].
#[must_use = "the handler does not run until it is `.await`ed"]
pub struct Perform<J: Job> {
    args: J::Args,
    states: States,
    pool: Option<PgPool>,
    attempt: i32,
    scheduled_at: Option<DateTime<Utc>>,
    caller: &'static Location<'static>,
    _job: PhantomData<fn() -> J>,
}

impl<J: Job> Perform<J> {
    /// Gives the job a value it takes as `jobq::State<T>`, as
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

    /// The pool the job's context hands out
    /// ([`JobContext::pool`](crate::JobContext::pool)), for a job that reads
    /// data or enqueues follow-up jobs.
    pub fn pool(mut self, pool: &PgPool) -> Self {
        self.pool = Some(pool.clone());
        self
    }

    /// Runs as attempt `attempt` (1 for the first; the default), to test
    /// what a job does on a retry or its last attempt
    /// ([`JobContext::is_last_attempt`](crate::JobContext::is_last_attempt)).
    pub fn attempt(mut self, attempt: i32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Runs as if due at `at` (default: now): what
    /// [`JobContext::scheduled_at`](crate::JobContext::scheduled_at) says,
    /// and for a cron job the tick it runs for
    /// ([`JobContext::cron_tick`](crate::JobContext::cron_tick)).
    pub fn scheduled_at(mut self, at: DateTime<Utc>) -> Self {
        self.scheduled_at = Some(at);
        self
    }

    /// Runs the handler and returns what it returned, typed (the `T` of its
    /// `Result<T, E>`), through the JSON the worker would store.
    ///
    /// # Panics
    ///
    /// When the attempt did not complete: the panic shows its outcome, the
    /// error included.
    pub async fn output(self) -> J::Output {
        let caller = self.caller;
        let outcome = self.run().await;
        let json = match &outcome {
            Outcome::Completed => "null",
            Outcome::CompletedWith(json) => json.as_str(),
            _ => panic!(
                "perform::<{}> at {caller}: the job did not complete: {outcome:?}",
                J::DEF.name
            ),
        };
        serde_json::from_str(json).unwrap_or_else(|e| {
            panic!(
                "perform::<{}> at {caller}: its result does not decode: {e}",
                J::DEF.name
            )
        })
    }

    async fn run(self) -> Outcome {
        let Perform {
            args,
            states,
            pool,
            attempt,
            scheduled_at,
            caller,
            ..
        } = self;
        let def = &J::DEF;
        let fail = |message: String| -> Outcome {
            panic!("perform::<{}> at {caller}: {message}", def.name)
        };
        if let Err(crate::Error::MissingState { type_name, .. }) = check_job_states(def, &states) {
            return fail(format!(
                "the job takes `State<{type_name}>`, which it was not given; add \
                 `.state(value)` with a `{type_name}`"
            ));
        }
        let args = match serde_json::to_string(&args) {
            Ok(a) => a,
            Err(e) => return fail(format!("cannot serialize the arguments: {e}")),
        };
        let pool = match pool {
            Some(p) => p,
            None => closed_pool().await,
        };
        let (shared, _results) = Shared::detached(pool, 0, Registry::new(), states);
        let job = ClaimedJob {
            // Not stored: no id of a row.
            id: 0,
            kind: def.name.to_owned(),
            args,
            attempt,
            lost_attempts: 0,
            max_attempts: def.max_attempts,
            priority: def.priority,
            scheduled_at: scheduled_at.unwrap_or_else(Utc::now),
            #[cfg(feature = "opentelemetry")]
            trace_context: None,
        };
        execute::attempt_once(&shared, def, def.queue.to_owned(), job).await
    }
}

impl<J: Job> IntoFuture for Perform<J> {
    type Output = Outcome;
    type IntoFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// A pool that never connects: closed before use, so a job that uses it
/// fails at once, not after a connection timeout.
async fn closed_pool() -> PgPool {
    let pool = PgPoolOptions::new().connect_lazy_with(PgConnectOptions::new());
    pool.close().await;
    pool
}
