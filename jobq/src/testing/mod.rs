//! Helpers for testing your jobs (feature `testing`): that a request
//! handler enqueued the right job, and that a job does the right thing.
//!
//! Turn the feature on for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! jobq = { version = "0.1", features = ["testing"] }
//! ```
//!
//! | helper | what it does |
//! |---|---|
//! | [`TestDatabase`] | a fresh, migrated database per test on the server of `DATABASE_URL`, dropped afterwards |
//! | [`assert_enqueued`], [`refute_enqueued`], [`enqueued`] | typed checks of what is enqueued, through a pool, a connection or the open transaction, filtered by queue, state, priority and due time |
//! | [`drain`] | runs due jobs with their real handlers and real state changes, returns counts by outcome and the errors |
//! | [`perform`] | runs one job's handler with the states you give it and a real [`JobContext`](crate::JobContext), no worker |
//!
//! Every helper panics rather than return an error, with a message that
//! says what was expected and what was found: the panic is the test's
//! failure report. They run jobq's own code: [`drain`] claims, runs and
//! records as a worker does, [`perform`] runs an attempt as a worker does.
//!
//! # A test
//!
//! ```no_run
//! use jobq::testing::{TestDatabase, assert_enqueued, drain, refute_enqueued};
//!
//! # #[derive(Default)] pub struct Mailer;
//! # impl Mailer { fn send(&self, _: &str) {} }
//! #[jobq::job(queue = "email")]
//! async fn send_welcome(mailer: jobq::State<Mailer>, to: String) -> Result<(), std::io::Error> {
//!     mailer.send(&to);
//!     Ok(())
//! }
//!
//! #[tokio::test]
//! async fn signup_sends_a_welcome() {
//!     let db = TestDatabase::new().await;
//!     let mut tx = db.pool().begin().await.unwrap();
//!     send_welcome::enqueue(&mut *tx, send_welcome::Args { to: "ada@example.com".into() })
//!         .await
//!         .unwrap();
//!     // Seen inside the transaction, not outside it yet.
//!     assert_enqueued::<send_welcome::Job>(&mut *tx, |a| a.to == "ada@example.com").await;
//!     refute_enqueued::<send_welcome::Job>(db.pool(), |_| true).await;
//!     tx.commit().await.unwrap();
//!
//!     let drained = drain(db.pool()).queue("email").state(Mailer::default()).await;
//!     assert_eq!(drained.completed, 1, "{drained}");
//! }
//! # fn main() {}
//! ```
//!
//! A failed assertion reads:
//!
//! ```text
//! assert_enqueued::<app::send_welcome::Job> at tests/signup.rs:18:5: no job matched
//! expected: a `send_welcome` job (available or scheduled or running or retryable; queue
//! `email`) whose args match
//! jobs stored (2, by id):
//!   #1 send_welcome {"to": "bob@example.com"} (queue `email`, available, priority 0, due
//!      2026-11-30 09:35:07.039 UTC): no match, its args do not match
//!   #2 charge_card {"card": "4242424242424242", "cents": 1999} (queue `billing`, scheduled,
//!      priority 0, due 2026-11-30 10:35:07.047 UTC)
//! ```
//!
//! # With `#[sqlx::test]`
//!
//! [`TestDatabase`] needs nothing but `DATABASE_URL`. With sqlx's own test
//! attribute instead (sqlx's `macros` and `migrate` features), apply jobq's
//! migrations at the top of the test: jobq keeps its schema history in a
//! table of its own (`jobq_migrations`), apart from the `_sqlx_migrations`
//! that `#[sqlx::test]` fills from your `migrations/`, so the two do not
//! mix, and your own migrations may run first:
//!
//! ```no_run
//! // #[sqlx::test] // or #[sqlx::test(migrations = false)] without migrations of yours
//! async fn signup_sends_a_welcome(pool: sqlx::PgPool) {
//!     jobq::migrate(&pool).await.unwrap();
//!     // ... the same test, with `&pool` for `db.pool()`
//! }
//! # fn main() {}
//! ```
//!
//! (The attribute is commented out here only because jobq's own build does
//! not turn on sqlx's `macros` feature.)
//!
//! # Time
//!
//! There is no controllable clock: every time jobq compares (is a job due,
//! when does a retry run, which cron tick is next, which unique window) is
//! PostgreSQL's `now()`, read in the statement that needs it, so that all
//! workers agree whatever their hosts' clocks say. A clock of the test's
//! would disagree with the database; one the database follows would have to
//! be passed to every statement, the claim included, and that is a cost on
//! every user's hot path. Instead, move the jobs rather than the clock:
//!
//! - [`Drain::with_scheduled`] runs delayed, snoozed and retrying jobs now;
//!   [`Drain::scheduled_within`] runs those due within a horizon, as if that
//!   much time had passed;
//! - [`Enqueued::scheduled_in`] and [`Enqueued::scheduled_at`] check when a
//!   job is due, within a tolerance;
//! - [`Perform::scheduled_at`] runs a cron job for a given tick
//!   ([`JobContext::cron_tick`](crate::JobContext::cron_tick)), and
//!   [`Perform::attempt`] as a given attempt.

mod database;
mod drain;
mod enqueued;
mod perform;

pub use database::TestDatabase;
pub use drain::{DEFAULT_DRAIN_LIMIT, Drain, Drained, JobError, drain};
pub use enqueued::{Enqueued, assert_enqueued, enqueued, refute_enqueued};
pub use perform::{Perform, perform};
