//! jobq's benchmark: how fast jobq enqueues, processes and picks up jobs on
//! this machine, next to what plain SQL does on the same PostgreSQL.
//!
//! The `jobq-bench` binary (run through `scripts/bench`) runs every figure on a
//! database of its own (`jobq_bench_<figure>`, created from `DATABASE_URL`,
//! migrated with [`jobq::migrate`], dropped afterwards) and prints one
//! machine-readable line per figure:
//!
//! ```text
//! BENCH enqueue_single_per_s 1234 jobs/s
//! ```
//!
//! then a table of each figure, its raw-SQL baseline and their ratio. See
//! `bench/README.md` for what each figure measures.
//!
//! - [`jobs`]: the no-op job and the latency probe;
//! - [`db`]: throwaway databases, the machine line, waiting for a queue to drain;
//! - [`sql`]: the raw-SQL baseline's statements (no jobq code);
//! - [`figures`]: the measurements;
//! - [`report`]: the `BENCH` lines and the closing table.

pub mod db;
pub mod figures;
pub mod jobs;
pub mod report;
pub mod sql;

use std::time::Instant;

use sqlx::postgres::PgConnectOptions;

/// What every figure needs: where the server is, the options of the run, and
/// the report it adds to.
pub struct Ctx {
    /// `DATABASE_URL`'s connection options; figures swap in their database.
    pub base: PgConnectOptions,
    /// `DATABASE_URL` itself, handed to worker processes.
    pub url: String,
    /// A small pool on `DATABASE_URL`'s database, for `CREATE/DROP DATABASE`.
    pub admin: sqlx::PgPool,
    /// The options of this run.
    pub opts: Opts,
    /// The figures measured so far.
    pub report: report::Report,
    /// When the run began (for the time budget).
    pub started: Instant,
}

/// The knobs of a run (all have defaults matching the project's issue).
#[derive(Debug, Clone)]
pub struct Opts {
    /// Jobs per process figure (100,000).
    pub jobs: u64,
    /// `enqueue` calls for the single-enqueue figures (5,000).
    pub single: u64,
    /// Interleaved rounds of the single-enqueue figures; each records its
    /// median (7).
    pub rounds: u64,
    /// Interleaved rounds of the batch-enqueue and process figures; each
    /// records its median (5).
    pub bulk_rounds: u64,
    /// Jobs for the batch-enqueue figure (100,000).
    pub batch_jobs: u64,
    /// Batch size for the batch-enqueue figure (1,000).
    pub batch_size: u64,
    /// Jobs for the latency figure (2,000).
    pub latency_jobs: u64,
    /// Enqueues per second for the latency figure.
    pub latency_rate: u64,
    /// Finished jobs wanted in the table for the scale figure (10,000,000).
    pub history: u64,
    /// The whole run should stay under this many seconds; the scale figure
    /// inserts less history when the full amount would not fit.
    pub budget_s: u64,
    /// Keep the figures' databases instead of dropping them.
    pub keep: bool,
    /// Print per-statement counts from `pg_stat_statements` after each figure
    /// (the server must preload it; `scripts/bench --pgss` does).
    pub pgss: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            jobs: 100_000,
            single: 5_000,
            rounds: 7,
            bulk_rounds: 5,
            batch_jobs: 100_000,
            batch_size: 1_000,
            latency_jobs: 2_000,
            latency_rate: 200,
            history: 10_000_000,
            budget_s: 570,
            keep: false,
            pgss: false,
        }
    }
}

/// Prints a progress line on stderr, stamped with the run's elapsed time.
pub fn progress(ctx: &Ctx, msg: impl std::fmt::Display) {
    eprintln!("[{:>6.1}s] {msg}", ctx.started.elapsed().as_secs_f64());
}
