//! Every SQL statement jobq runs, each named for what it does. Nothing outside
//! this module speaks SQL, so a second backend would implement this seam.
//!
//! One file per concern: `insert`, `claim`, `limits` (the limited claim),
//! `finish`, `cancel`, `workers` (leases and rescues), `wake` (the wake
//! locks), `cron`, `queues`, `prune`, `results` (results and following a job
//! to its end), `migrate`, `session` (server sessions), `sample` (the metrics sampler's
//! counts), `admin` (what people
//! and tools read and do: lists, counts, bulk actions), `dashboard` (what
//! only the dashboard asks: time series, an enqueue by kind name), `testing`
//! (what `jobq::testing` reads and drains), `types` (how jobq's types cross
//! the seam). Names that SQL text spells (channels, lock keys) are defined
//! once, below, as macros the statements are built from and constants the
//! code uses.

/// The channel an insert notifies: spelled once, for [`INSERT_CHANNEL`] and
/// the SQL built with it.
macro_rules! insert_channel {
    () => {
        "jobq_insert"
    };
}

/// The channel of requests to running workers: spelled once, for
/// [`CONTROL_CHANNEL`] and the SQL built with it.
macro_rules! control_channel {
    () => {
        "jobq_control"
    };
}

/// The first key of the per-queue wake locks: spelled once, for
/// [`WAKE_LOCK_CLASS`] and the SQL built with it.
macro_rules! wake_lock_class {
    () => {
        27249
    };
}

/// The SQL expression by which an enqueue notifies the queue named by `$q`
/// (an SQL expression) only if a producer sleeps on it: it tries the queue's
/// wake lock shared, for the rest of the transaction, and notifies when it
/// cannot get it (see [`take_wake_lock`]).
macro_rules! notify_if_asleep {
    ($q:literal) => {
        concat!(
            "CASE WHEN NOT pg_try_advisory_xact_lock_shared(",
            wake_lock_class!(),
            ", hashtext(",
            $q,
            ")) THEN pg_notify('",
            insert_channel!(),
            "', ",
            $q,
            ")::text END"
        )
    };
}

/// The SQL expression for how long, in milliseconds (float8), until the next
/// future job of the queue `$1` is due; null when there is none.
///
/// The first entry of `jobq_jobs_due` past now, in its order, rather than
/// `min(scheduled_at)`: with statistics taken while the queue had no future
/// job, PostgreSQL costed the aggregate over every future job as cheap as
/// reading the first, and may take it; no plan of `ORDER BY .. LIMIT 1`
/// costs less than the index's order (see migration 18).
macro_rules! next_due_sql {
    () => {
        "SELECT (extract(epoch FROM scheduled_at - now()) * 1000)::float8
         FROM jobq_jobs
         WHERE queue = $1 AND state IN ('scheduled', 'retryable') AND scheduled_at > now()
         ORDER BY scheduled_at
         LIMIT 1"
    };
}

/// The SQL expression for a job's `limit_key` (see migration 8): `NULL`
/// when `$name` (the job's name if it has limits) is null, else the name, a
/// space, and the partition read from the arguments `$args` (jsonb) by the
/// field `$field` ('' when null or missing).
macro_rules! limit_key_sql {
    ($args:literal, $name:literal, $field:literal) => {
        concat!(
            "CASE WHEN ",
            $name,
            "::text IS NULL THEN NULL ELSE ",
            $name,
            " || ' ' || coalesce((",
            $args,
            ")::jsonb ->> ",
            $field,
            "::text, '') END"
        )
    };
}

/// The columns every insert of one job fills, in the order of
/// `job_values!`.
macro_rules! job_columns {
    () => {
        "kind, queue, args, priority, max_attempts, scheduled_at, state, limit_key"
    };
}

/// The values of `job_columns!`, bound by `bind_job!`: `$1` kind, `$2`
/// queue, `$3` arguments (JSON text), `$4` priority, `$5` max attempts, `$6`
/// when it runs (null: now), `$7` and `$8` the limit's name and
/// partitioning field (see `limit_key_sql!`). A job due later is
/// `scheduled`.
macro_rules! job_values {
    () => {
        concat!(
            "$1, $2, $3::jsonb, $4, $5, coalesce($6, now()),
             CASE WHEN $6 > now() THEN 'scheduled' ELSE 'available' END::jobq_state, ",
            limit_key_sql!("$3", "$7", "$8")
        )
    };
}

/// Binds a [`NewJob`] as `$1` to `$8` of `job_values!`.
macro_rules! bind_job {
    ($query:expr, $job:expr) => {
        $query
            .bind($job.kind)
            .bind(&$job.queue)
            .bind(&$job.args)
            .bind($job.priority)
            .bind($job.max_attempts)
            .bind($job.run_at)
            .bind($job.limits.is_limited().then_some($job.kind))
            .bind($job.limits.partition)
    };
}

/// The columns of a batch insert: jobs that share everything but their
/// arguments (and unique keys), due now.
macro_rules! batch_columns {
    () => {
        "kind, queue, args, priority, max_attempts, limit_key"
    };
}

/// With the `opentelemetry` feature, the column of a job's trace context,
/// after the other columns of an insert (`, trace_context`); without it,
/// nothing: the statements are those of a build without the feature.
#[cfg(feature = "opentelemetry")]
macro_rules! trace_column {
    () => {
        ", trace_context"
    };
}
#[cfg(not(feature = "opentelemetry"))]
macro_rules! trace_column {
    () => {
        ""
    };
}

/// The value of `trace_column!`, the parameter `$p` (`", $7::jsonb"`), bound
/// by `bind_trace!`; nothing without the feature.
#[cfg(feature = "opentelemetry")]
macro_rules! trace_value {
    ($p:literal) => {
        concat!(", ", $p, "::jsonb")
    };
}
#[cfg(not(feature = "opentelemetry"))]
macro_rules! trace_value {
    ($p:literal) => {
        ""
    };
}

/// Binds the trace context `$trace` (JSON text or `None`) for
/// `trace_value!`; without the feature, binds nothing (and `$trace` is not
/// compiled).
#[cfg(feature = "opentelemetry")]
macro_rules! bind_trace {
    ($query:expr, $trace:expr) => {
        $query.bind($trace)
    };
}
#[cfg(not(feature = "opentelemetry"))]
macro_rules! bind_trace {
    ($query:expr, $trace:expr) => {
        $query
    };
}

/// What a claim returns of a job's trace context (`, j.trace_context::text
/// AS trace_context`); nothing without the feature, so a claim without it
/// reads what it read before the column existed.
#[cfg(feature = "opentelemetry")]
macro_rules! trace_returning {
    () => {
        ", j.trace_context::text AS trace_context"
    };
}
#[cfg(not(feature = "opentelemetry"))]
macro_rules! trace_returning {
    () => {
        ""
    };
}

/// A row's unique key holds: it has one, and its state is among the key's
/// states. The predicate of the unique index `jobq_jobs_unique_key`.
macro_rules! key_holds {
    () => {
        "unique_key IS NOT NULL AND (unique_states & jobq_state_bit(state)) <> 0"
    };
}

/// A finished row the pruner may delete once old enough: the predicate of
/// `jobq_jobs_prunable` (migration 3), word for word so that the planner
/// matches it. Every finished row but those [`finished_held!`] picks. With
/// `"state::text"`, the same rows in words no partial index's predicate
/// follows from (see `delete_batch!` in `prune.rs`).
macro_rules! prunable_rows {
    () => {
        prunable_rows!("state")
    };
    ($state:literal) => {
        concat!(
            $state,
            " IN ('completed', 'discarded', 'cancelled')
          AND (unique_key IS NULL
               OR (unique_states & jobq_state_bit(state)) = 0
               OR (unique_states & 128) <> 0)"
        )
    };
}

/// A finished row whose unique key still holds, other than a cron tick's:
/// the predicate of `jobq_jobs_finished_held` (migration 10), word for
/// word. With [`prunable_rows!`], every finished row.
macro_rules! finished_held {
    () => {
        "state IN ('completed', 'discarded', 'cancelled')
          AND unique_key IS NOT NULL
          AND (unique_states & jobq_state_bit(state)) <> 0
          AND (unique_states & 128) = 0"
    };
}

/// A worker row within its lease (`w`): the worker is live. A row past it
/// belongs to a worker that is probably dead, until a rescuer removes it.
macro_rules! live_worker {
    () => {
        "w.heartbeat_at > now() - coalesce(w.lease_ms, 30000) * interval '1 millisecond'"
    };
}

/// A job's latest error message, from its error history (`errors`, an
/// array of entries; anything else written by hand reads as none).
macro_rules! last_error {
    () => {
        "CASE WHEN jsonb_typeof(errors) = 'array' THEN errors -> -1 ->> 'error' END"
    };
}

/// An insert of a row whose key another row holds inserts nothing.
macro_rules! on_key_held_do_nothing {
    () => {
        concat!(
            "ON CONFLICT (unique_key) WHERE ",
            key_holds!(),
            " DO NOTHING"
        )
    };
}

/// The SQL expression (an integer, 0) that sets off what the end of the
/// followed jobs among the rows of the CTE `$cte` must: `jobq_finished` with
/// those of its rows (`id`, `state`, `on_finish`) that finished and that
/// somebody follows. Every statement that can finish a job adds it to what
/// it returns, which makes PostgreSQL run it, once, in that statement's
/// transaction.
macro_rules! after_finish {
    ($cte:literal) => {
        concat!(
            "(SELECT jobq_finished(array_agg(id), array_agg(state), array_agg(on_finish)) FROM ",
            $cte,
            " WHERE on_finish IS NOT NULL AND state IN ('completed', 'discarded', 'cancelled'))"
        )
    };
}

mod admin;
mod cancel;
mod claim;
mod cron;
mod dashboard;
mod finish;
mod graph;
mod insert;
mod limits;
mod migrate;
mod prune;
mod queues;
mod results;
mod sample;
mod session;
#[cfg(feature = "testing")]
mod testing;
mod types;
mod wake;
mod workers;

pub(crate) use admin::*;
pub(crate) use cancel::*;
pub(crate) use claim::*;
pub(crate) use cron::*;
pub(crate) use dashboard::*;
pub(crate) use finish::*;
pub(crate) use graph::*;
pub(crate) use insert::*;
pub(crate) use limits::*;
pub use migrate::{
    Migration, MigrationStatus, migrate, migration_script, migration_status, migrations,
};
pub(crate) use prune::*;
pub(crate) use queues::*;
pub(crate) use results::*;
pub(crate) use sample::*;
pub(crate) use session::*;
#[cfg(feature = "testing")]
pub(crate) use testing::*;
pub(crate) use types::*;
pub(crate) use wake::*;
pub(crate) use workers::*;

pub use claim::{CLAIM_SQL, MARK_STARTED_SQL};
pub use finish::COMPLETE_SQL;
pub use limits::LIMIT_LOCK_CLASS;
pub use prune::DELETE_PRUNABLE;
pub use results::FINISHED_CHANNEL;
pub use workers::{LOST_SQL, MAX_LOST_ATTEMPTS, RESCUE_SQL};

/// The channel an insert notifies, with the queue's name as payload. Postgres
/// delivers it on commit, and folds identical notifications of one
/// transaction into one. Enqueues notify only queues a producer sleeps on:
/// see `take_wake_lock`.
pub const INSERT_CHANNEL: &str = insert_channel!();

/// The channel for requests to running workers, as JSON: `{"cancel": id}`.
pub const CONTROL_CHANNEL: &str = control_channel!();

/// First key of the per-queue wake locks; the second is `hashtext(queue)`.
pub const WAKE_LOCK_CLASS: i32 = wake_lock_class!();

/// The advisory locks that make one process at a time do a service's work,
/// each taken in the transaction of that work (see [`crate::service`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Rescuing the jobs of dead workers.
    Rescue,
    /// Pruning finished jobs.
    Prune,
    /// Taking turns to read (or take the shared reading of) the metrics
    /// gauges.
    Sample,
    /// Giving limit keys to jobs enqueued before their job had limits.
    LimitKeys,
}

impl Lock {
    /// The lock's key: 8 ASCII letters, as a big-endian integer.
    pub(crate) const fn key(self) -> i64 {
        match self {
            Lock::Rescue => 0x6a6f_6271_7265_7363,    // "jobqresc"
            Lock::Prune => 0x6a6f_6271_7072_756e,     // "jobqprun"
            Lock::Sample => 0x6a6f_6271_7361_6d70,    // "jobqsamp"
            Lock::LimitKeys => 0x6a6f_6271_6c6b_6579, // "jobqlkey"
        }
    }
}
