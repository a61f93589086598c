//! Typed background jobs for Rust on PostgreSQL.
//!
//! Put `#[job]` on an `async fn`, enqueue it inside your own sqlx transaction,
//! and run one worker binary that finds every job linked into it. PostgreSQL
//! is the only infrastructure: jobs are rows, workers claim them with
//! `FOR UPDATE SKIP LOCKED`, and LISTEN/NOTIFY wakes them on commit.
//!
//! # A job
//!
//! ```
//! use jobq::job;
//!
//! # #[derive(Debug)] pub struct MailError;
//! # impl std::fmt::Display for MailError {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("mail") }
//! # }
//! pub struct Mailer { /* an SMTP client, say */ }
//!
//! /// Sends one message.
//! #[job(queue = "email", retries = 5, timeout = "30s")]
//! pub async fn send_email(
//!     mailer: jobq::State<Mailer>, // injected by the worker, not stored
//!     to: String,                  // every other parameter is a field of `send_email::Args`
//!     subject: String,
//!     #[serde(default)] cc: Vec<String>,
//! ) -> Result<(), MailError> {
//!     let _ = (&*mailer, to, subject, cc);
//!     Ok(())
//! }
//!
//! # fn main() {
//! // The function is unchanged; next to it `#[job]` generated a module:
//! let args = send_email::Args { to: "ada@example.com".into(), subject: "hi".into(), cc: vec![] };
//! assert_eq!(send_email::NAME, "send_email");
//! assert_eq!(send_email::QUEUE, "email");
//! assert_eq!(send_email::MAX_ATTEMPTS, 6);
//! # let _ = args;
//! # }
//! ```
//!
//! [`job`] lists every key it takes and what it generates.
//!
//! # Enqueueing, in your transaction
//!
//! `enqueue` takes a `&PgPool`, a `&mut PgConnection` or a
//! `&mut Transaction`. In a transaction, the job exists only if the transaction
//! commits, and workers are notified only then: rolled back, it never existed.
//!
//! ```no_run
//! # #[jobq::job(queue = "email")]
//! # async fn send_email(to: String, subject: String) -> Result<(), std::io::Error> { Ok(()) }
//! # fn main() {}
//! # async fn signup(pool: sqlx::PgPool) -> Result<(), jobq::Error> {
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO users (email) VALUES ($1)")
//!     .bind("ada@example.com")
//!     .execute(&mut *tx)
//!     .await?;
//! send_email::enqueue(&mut tx, send_email::Args {
//!     to: "ada@example.com".into(),
//!     subject: "Welcome".into(),
//! })
//! .await?;
//! tx.commit().await?;
//!
//! // Many at once: one statement, whatever their number.
//! let ids = send_email::enqueue_many(&pool, (0..1000).map(|i| send_email::Args {
//!     to: format!("user{i}@example.com"),
//!     subject: "News".into(),
//! }))
//! .await?;
//! assert_eq!(ids.len(), 1000);
//! # Ok(()) }
//! ```
//!
//! Per-job options (delay, run time, priority, queue, attempts) go through
//! `my_job::builder(args)`; see [`Enqueue`].
//!
//! # The worker
//!
//! One worker binary runs every job linked into it. Apply the schema once
//! with [`migrate`] (it keeps its own history table, apart from sqlx's), give
//! the worker the values jobs take as [`State`], and name the queues:
//!
//! ```no_run
//! # struct Mailer;
//! # impl Mailer { fn from_env() -> Self { Mailer } }
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let pool = sqlx::PgPool::connect(&std::env::var("DATABASE_URL")?).await?;
//!     jobq::migrate(&pool).await?;
//!     jobq::Worker::new(pool)
//!         .state(Mailer::from_env())
//!         .queue("email", 20)
//!         .run() // Ok(()) after SIGTERM or ctrl-c, once running jobs are done
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! The worker refuses to start, naming what is wrong, when no job is
//! registered, two jobs share a name, or a job takes a `State<T>` the worker
//! was not given.
//!
//! **The linker pitfall.** Jobs register themselves through `inventory`. A
//! crate of jobs that the worker binary never names is not linked, so its jobs
//! are missing. Name it once in the worker's `main.rs`:
//!
//! ```ignore
//! use my_jobs as _;
//! ```
//!
//! Where that cannot serve, give the worker an explicit [`Registry`].
//!
//! # Injected values
//!
//! A parameter of type [`State<T>`](State) receives the value given to
//! [`Worker::state`]; it derefs to `T`. A parameter of type [`JobContext`]
//! receives the job's id, attempt, queue, a cancellation token, and the pool.
//! Every other parameter is an argument, stored as JSON.
//!
//! `#[job]` goes on a function at module level (not inside another function's
//! body): the generated module refers to it through `super::`.
//!
//! # Failures
//!
//! An `Err`, a panic, or a timeout fails the attempt: the error is appended to
//! the job's `errors` history and the job is retried after an exponential
//! backoff with jitter ([`Backoff`]), until it has used `retries + 1`
//! attempts; then it is `discarded`. The history keeps the first error and
//! the last 20, each cut to 8 KiB. Arguments that
//! no longer decode (a field was renamed without `#[serde(alias)]`) discard the
//! job at once with serde's message. A job whose kind no running worker knows
//! waits, untouched, for a worker that does.
//!
//! # Retention
//!
//! Finished jobs stay in the table for a while, then the worker's pruner
//! deletes them: completed jobs after 24 hours, cancelled and discarded ones
//! after 7 days, or as [`Retention`] says. A job that has not finished is never
//! deleted, nor a finished job whose unique key still holds in its state; a
//! key with a window (`unique_for`) stops holding when its window ends.
//!
//! # Delivery guarantee: at least once
//!
//! A committed job runs until one attempt completes. It runs *more* than once
//! only when its worker dies, or loses the database, after the handler
//! finished and before the result was written; the job is then run again.
//! Make handlers idempotent where a second run would hurt (check-then-act in
//! the same transaction, or an idempotency key at the other end).
//!
//! # Scheduling
//!
//! - **Cron.** `#[job(cron = "0 * * * *")]` runs once per tick across *all*
//!   workers together: every worker that runs the job's queue enqueues each
//!   tick under a unique key (job name + tick time), so the second insert of
//!   a tick is a no-op. `tz = "Europe/Paris"` reads the expression in that
//!   zone (a daily job runs once on both DST days); `catch_up` decides about
//!   ticks missed while no worker ran. A cron job takes no arguments;
//!   [`JobContext::cron_tick`] tells which tick it runs for. Workers log each
//!   cron job's next fire time at start.
//! - **Delayed jobs.** `builder(args).delay(d)` or `.run_at(t)` stores the job
//!   `scheduled`; it becomes claimable when due. An idle worker sleeps until
//!   the next due time (or a notification), so it neither polls busily nor
//!   starts a job late by more than a poll interval.
//! - **Priorities.** Lower runs first within a queue, then by due time and id;
//!   a job enqueued with a lower number overtakes a flood already waiting.
//! - **Unique jobs.** `#[job(unique = "args")]` or
//!   `builder(args).unique_key(k)`: while a job with the same key is
//!   unfinished (or in the states given to `unique_states`), enqueueing
//!   returns that job's id instead; `builder(..).insert(db)` also says it was a
//!   duplicate. Done with `ON CONFLICT DO NOTHING`, so a duplicate never aborts
//!   the caller's transaction.
//! - **Queues.** [`pause_queue`] stops every worker claiming from a queue (each
//!   claim checks), [`resume_queue`] restarts it; enqueues go on meanwhile.
//!   [`stats`] counts jobs per queue and state, with the age of the oldest
//!   waiting job.
//!
//! # Shutdown
//!
//! On SIGTERM or ctrl-c the worker stops claiming, lets running jobs finish
//! within a grace period ([`Worker::shutdown_grace`]), then cancels the rest
//! and puts them back to `available` (their attempt does not count), writes
//! every result, and `run()` returns `Ok(())`.
//!
//! # Metrics and traces
//!
//! jobq counts enqueues and attempts (by queue, kind and outcome), times
//! runs and waits, and samples the backlog, lag and live workers, through
//! the `metrics` facade: into the recorder the program installed, at next
//! to no cost when it installed none. Every enqueue runs in a `tracing` span
//! `jobq.enqueue`, every attempt in a span `jobq.run`. The README's
//! "Operating jobq" lists every metric and field, with a Prometheus scrape
//! configuration.
//!
//! # sqlx
//!
//! jobq speaks to PostgreSQL through sqlx 0.9, and takes your pool,
//! connection or transaction ([`Db`]) as they are. They must come from that
//! same sqlx: use the one jobq re-exports, [`jobq::sqlx`](sqlx), or depend
//! on `sqlx = "0.9"` yourself. A transaction of another sqlx version is a
//! different type, and `enqueue` refuses it.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `anyhow` | yes | [`Control`] found inside an `anyhow::Error`, so a job returning `anyhow::Result` can snooze, retry at a time, or discard |
//! | `testing` | no | `jobq::testing`: assertions on enqueued jobs, `drain`, `perform`, a fresh database per test; for dev-dependencies |
//! | `prometheus` | no | `Worker::prometheus(addr)`: the worker serves its metrics at `/metrics` (`metrics-exporter-prometheus`) |
//! | `opentelemetry` | no | an enqueue stores its span's W3C trace context with the job, and each run's `jobq.run` span links to it (`tracing-opentelemetry`) |
//!
//! On docs.rs, an item that needs a feature is marked with it.

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
// Functions generic over `sqlx::Acquire` return `impl Future + Send` by hand:
// written as `async fn` their futures would not be `Send`.
#![allow(clippy::manual_async_fn)]

pub mod admin;
mod cancel;
mod db;
mod enqueue;
mod error;
mod job;
mod limit;
mod maintenance;
mod metrics;
mod queue;
mod registry;
mod result;
mod schedule;
mod service;
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "opentelemetry")]
mod trace;
mod worker;
mod workflow;

pub use cancel::{Cancellation, cancel};
pub use db::Db;
pub use enqueue::{Enqueue, Inserted, enqueue, enqueue_many};
pub use error::{Error, Result};
pub use job::{
    CatchUp, Control, Job, JobContext, JobDef, JobId, JobOutput, JobState, Outcome, State,
    UnknownJobState,
};
pub use limit::{JobLimits, Limit, Rate, clear_queue_limit, set_queue_limit};
pub use maintenance::pruner::{Keep, Retention};
pub use queue::{QueueStats, Stats, pause_queue, resume_queue, stats};
pub use registry::{Registry, registry};
pub use result::{WaitError, result, wait};
pub use store::{
    MAX_LOST_ATTEMPTS, Migration, MigrationStatus, migrate, migration_script, migration_status,
    migrations,
};
pub use tokio_util::sync::CancellationToken;
pub use worker::{Backoff, DEFAULT_CONCURRENCY, Worker};
pub use workflow::{Dependency, InsertedWorkflow, Step, Workflow, WorkflowId};

/// What the `enqueue`, `enqueue_many`, `result` and `wait` that `#[job]`
/// generates return: a boxed future, `Send`, so it can be awaited in a
/// spawned task or a web handler. The same type as the `futures` crate's
/// `BoxFuture`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The sqlx jobq is built on (0.9, with its `postgres`, `runtime-tokio`,
/// `chrono` and `json` features).
///
/// Pools, connections and transactions handed to jobq must come from this
/// very sqlx: one from another sqlx version is a different type, and
/// `enqueue` rejects it. Use it as your own with `use jobq::sqlx;` and no
/// `sqlx` dependency of yours, or depend on `sqlx = "0.9"` yourself so
/// that cargo unifies the two (add any features you need there).
pub use sqlx;

/// Turns an `async fn` into a job.
///
/// ```
/// #[jobq::job(queue = "reports", retries = 3, timeout = "5m", priority = 1)]
/// async fn build_report(account_id: i64, month: String) -> anyhow::Result<()> {
///     let _ = (account_id, month);
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// # Keys
///
/// | key | value | default |
/// |---|---|---|
/// | `queue` | queue name: 1–63 of `a-z A-Z 0-9 _ - .` | `"default"` |
/// | `retries` | retries after the first attempt | 20 |
/// | `timeout` | one attempt's limit, `"30s"`, `"5m"`, `"1h 30m"` | none |
/// | `priority` | `-32768..=32767`, lower runs first | 0 |
/// | `name` | the stored name | the fn's name |
/// | `aliases` | older stored names still run by this job: `["old_name"]` | none |
/// | `cron` | a cron expression: 5 fields, 6 with seconds first, or `@hourly` etc. | none |
/// | `tz` | for `cron`: the IANA time zone it is read in, DST handled | `"UTC"` |
/// | `catch_up` | for `cron`: ticks missed while no worker ran, `"none"`, `"latest"` or `"all"` (at most 1,000) | `"latest"` |
/// | `unique` | `"args"`: at most one unfinished job per distinct arguments | none |
/// | `unique_for` | with `unique`: the key holds within windows of this length, `"1h"` | none |
///
/// The stored name is what ties a row to its code: moving the function to
/// another module changes nothing, renaming it changes the name unless
/// `name = "..."` keeps it (or `aliases` lists the old one). A cron job's
/// ticks are told apart by its stored name: rename a cron job's function with
/// `name = "old_name"`, not `aliases`, or old and new workers running side by
/// side during a deploy would each enqueue the same tick.
///
/// # What it generates
///
/// Next to the unchanged function, a module of the same name (and
/// visibility) holding:
/// - `Args`: one field per parameter that is not injected, with the
///   parameter's `#[serde(...)]` attributes; `Serialize`, `Deserialize`,
///   `Debug`, `Clone`;
/// - `enqueue(db, args)`, `enqueue_many(db, iter)` and `builder(args)`;
///   `result(db, id)` and `wait(pool, id, timeout)` read what the job
///   returned. The four async ones return a [`BoxFuture`];
/// - `Job`, a marker type implementing [`Job`](trait@Job);
/// - constants `NAME`, `QUEUE`, `RETRIES`, `MAX_ATTEMPTS`, `PRIORITY`, `CRON`,
///   `TIMEOUT`;
/// - and a registration, so every worker linked with it can run it.
///
/// # Compile errors
///
/// Spanned on the token to change, saying how: an unknown or repeated key, a
/// function that is not `async`, generics or `impl Trait`, `self`, a return
/// type that is not a `Result`, a borrowed parameter, a cron expression that
/// does not parse, a cron job that takes arguments, a duration that does not
/// parse, a bad queue name.
///
/// The return type's error must implement `Display`; `{:#}` is what gets
/// stored, so an `anyhow::Error` keeps its whole chain.
pub use jobq_macros::job;

/// Not public API: what `#[job]`'s generated code names. May change in any
/// release.
#[doc(hidden)]
pub mod __private;
