//! SQL for the pruner: deleting finished jobs past their retention, a bounded
//! batch at a time.

use sqlx::{PgConnection, PgPool};

use crate::job::JobState;

use super::{CRON_TICK_MIN_KEEP_MS, Lock};

/// Which rows a batch may delete: `$1` state, `$2` its retention in ms, `$3`
/// the least a cron tick is kept. The inner select needs it to walk
/// `jobq_jobs_prunable` (migration 3), whose predicate it repeats word for
/// word; the delete checks it again (`prunable!(as_text)`, see
/// [`delete_batch!`]) so that a row changed meanwhile is checked again.
macro_rules! prunable {
    () => {
        prunable!("state", "$1::jobq_state")
    };
    (as_text) => {
        prunable!("state::text", "$1")
    };
    ($state:literal, $wanted:literal) => {
        concat!(
            $state,
            " = ",
            $wanted,
            "
              AND finalized_at < now() - $2 * interval '1 millisecond'
              AND ",
            prunable_rows!($state),
            " AND (unique_key IS NULL OR (unique_states & 128) = 0
                   OR finalized_at < now() - $3 * interval '1 millisecond')"
        )
    };
}

/// Which rows of a held key whose window has ended a batch may delete: `$1`
/// state, `$2` its retention in ms, `$3` how long after its window ended a
/// key is kept. The inner select walks `jobq_jobs_window_ended` (migration
/// 4), whose predicate it repeats, by `finalized_at` like the other batch,
/// so a pass steps over no row within its retention; these are the rows
/// `prunable!` leaves out because their key holds. `as_text` as for
/// [`prunable!`].
macro_rules! window_ended {
    () => {
        window_ended!("state", "$1::jobq_state")
    };
    (as_text) => {
        window_ended!("state::text", "$1")
    };
    ($state:literal, $wanted:literal) => {
        concat!(
            $state,
            " = ",
            $wanted,
            "
          AND finalized_at < now() - $2 * interval '1 millisecond'
          AND unique_until IS NOT NULL
          AND ",
            $state,
            " IN ('completed', 'discarded', 'cancelled')
          AND (unique_states & jobq_state_bit(state)) <> 0
          AND unique_until < now() - $3 * interval '1 millisecond'"
        )
    };
}

/// A batch delete of the rows `$pred!()` picks (a predicate on `$1` to `$3`),
/// the `$4` that finished first: the inner select walks the predicate's
/// index; the delete checks each picked row again with `$pred!(as_text)`,
/// the same predicate with `state` as text, so a row changed meanwhile is
/// checked again.
///
/// The picked rows are deleted by id through an array (`= ANY (ARRAY
/// (...))`), a primary key lookup each, as the claim updates its rows. As
/// `id IN (...)`, the generic plan (which cannot see `$4`, and which the
/// pool's connections take after five runs when it looks cheaper, as it
/// did with fresh statistics) read every row past its retention through
/// `jobq_jobs_prunable` to find the batch's: hashed, 500,000 rows (270 ms)
/// per batch of 10,000 (17 ms by id); under statistics taken while few
/// jobs had finished, once per row of a backlog of 100,000, re-reading
/// the batch for each (400,000 buffers, 1 s, for 10 rows). A pass then
/// cost the square of its backlog, and the smaller batches that follow a
/// time-out cost as much. `state` as text in the check keeps the delete
/// off the partial indexes as well: with the predicate as written, a
/// custom plan under stale statistics read that index whole and tested
/// each entry against the array (17 s).
macro_rules! delete_batch {
    ($pred:ident) => {
        concat!(
            "DELETE FROM jobq_jobs WHERE id = ANY (ARRAY (SELECT id FROM jobq_jobs WHERE ",
            $pred!(),
            " ORDER BY finalized_at LIMIT $4)) AND ",
            $pred!(as_text)
        )
    };
}

/// The batch of [`prunable!`] rows.
///
/// Reachable from `__private` so that the tests read this very statement.
pub const DELETE_PRUNABLE: &str = delete_batch!(prunable);

/// The batch of [`window_ended!`] rows.
const DELETE_WINDOW_ENDED: &str = delete_batch!(window_ended);

/// Runs one of the batch deletes above: `$1` state, `$2` its retention,
/// `$3` the predicate's least keep, `$4` the batch's size.
async fn delete_batch(
    tx: &mut PgConnection,
    sql: &'static str,
    state: JobState,
    keep_ms: i64,
    min_keep_ms: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query(sql)
        .bind(state.as_str())
        .bind(keep_ms)
        .bind(min_keep_ms)
        .bind(limit)
        .execute(tx)
        .await?;
    Ok(done.rows_affected())
}

/// How long a unique key with a window (`unique_for`) is kept at least after
/// its window ended. The window is read off the enqueuing process's clock and
/// the end compared with the database's, so this covers a clock that runs
/// behind: an enqueue still in the window by its own clock finds the key.
const WINDOW_MIN_KEEP_MS: i64 = 3_600_000;

/// Deletes up to `limit` jobs in state `state` (`Completed`, `Discarded` or
/// `Cancelled`) finalized more than `keep_ms` ago, oldest first, in a
/// transaction of its own. Returns how many, or `None` when another process
/// holds the prune lock.
///
/// Never deleted: a job in any other state, and a finished job whose unique
/// key still holds in its state (the user asked for the key to hold; deleting
/// the row would free it). Two exceptions, keys that no enqueue can use again:
/// - a cron tick's key, which jobq owns (bit 128 of `unique_states`): its row
///   goes once it is older than [`CRON_TICK_MIN_KEEP_MS`] too, as
///   `jobq_cron.last_tick` then keeps the tick from being enqueued again;
/// - a key with a window (`unique_for`), once the window ended more than
///   [`WINDOW_MIN_KEEP_MS`] ago: later enqueues use the next window's key.
///   These rows are found through `jobq_jobs_window_ended`, by a second
///   statement in the same transaction, when the first left room in the
///   batch.
///
/// The inner select walks `jobq_jobs_prunable` (migration 3), whose predicate
/// it repeats word for word so that the planner can use it with any state.
/// That index costs every completion one more index entry; without it, each
/// batch (and each pass with nothing to do) would read the whole table: 3 to
/// 7 s with 10 million finished jobs, against 60 to 90 ms for a batch of
/// 10,000 and 0.2 ms for finding nothing.
///
/// The outer conditions are checked again on a row changed meanwhile (READ
/// COMMITTED re-evaluates them on the newest version), so a job put back to
/// work between the select and the delete is not deleted. No row locks are
/// taken first: they would double the WAL records written per deleted row.
pub(crate) async fn prune_finished(
    pool: &PgPool,
    state: JobState,
    keep_ms: i64,
    limit: i64,
) -> sqlx::Result<Option<u64>> {
    let mut tx = pool.begin().await?;
    // JIT is off for the batch: a generic plan does not know the limit, and
    // compiling it costs far more (about 0.3 s) than running it.
    let (_, locked): (String, bool) =
        sqlx::query_as("SELECT set_config('jit', 'off', true), pg_try_advisory_xact_lock($1)")
            .bind(Lock::Prune.key())
            .fetch_one(&mut *tx)
            .await?;
    if !locked {
        return Ok(None);
    }
    let done = delete_batch(
        &mut tx,
        DELETE_PRUNABLE,
        state,
        keep_ms,
        CRON_TICK_MIN_KEEP_MS,
        limit,
    )
    .await?;
    let mut windows = 0;
    if done < limit as u64 {
        let left = limit - done as i64;
        windows = delete_batch(
            &mut tx,
            DELETE_WINDOW_ENDED,
            state,
            keep_ms,
            WINDOW_MIN_KEEP_MS,
            left,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(done + windows))
}

/// How many jobs in state `state` finalized more than `keep_ms` ago
/// [`prune_finished`] would delete now, counted up to `cap + 1`, and when
/// the oldest finished; reads them through the indexes its batches walk,
/// oldest first, deleting nothing.
pub(crate) async fn count_prunable(
    pool: &PgPool,
    state: JobState,
    keep_ms: i64,
    cap: i64,
) -> sqlx::Result<(i64, Option<chrono::DateTime<chrono::Utc>>)> {
    let mut total = 0;
    let mut oldest = None;
    for (sql, min_keep_ms) in [
        (COUNT_PRUNABLE, CRON_TICK_MIN_KEEP_MS),
        (COUNT_WINDOW_ENDED, WINDOW_MIN_KEEP_MS),
    ] {
        let (n, first): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(sql)
            .bind(state.as_str())
            .bind(keep_ms)
            .bind(min_keep_ms)
            .bind(cap.saturating_add(1))
            .fetch_one(pool)
            .await?;
        total += n;
        oldest = match (oldest, first) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
    }
    Ok((total, oldest))
}

/// The planner's estimate of the rows [`DELETE_PRUNABLE`] would delete for
/// `state` and `keep_ms` (reads no row).
pub(crate) async fn estimate_prunable(
    pool: &PgPool,
    state: JobState,
    keep_ms: i64,
) -> sqlx::Result<i64> {
    let plan: serde_json::Value = sqlx::query_scalar(concat!(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM jobq_jobs WHERE ",
        prunable!()
    ))
    .bind(state.as_str())
    .bind(keep_ms)
    .bind(CRON_TICK_MIN_KEEP_MS)
    .fetch_one(pool)
    .await?;
    Ok(plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(|v| v.as_f64())
        .map_or(0, |n| n as i64))
}

/// Counts the rows of [`DELETE_PRUNABLE`]'s predicate, oldest first, up to
/// `$4`.
const COUNT_PRUNABLE: &str = concat!(
    "SELECT count(*), min(finalized_at) FROM (SELECT finalized_at FROM jobq_jobs WHERE ",
    prunable!(),
    " ORDER BY finalized_at LIMIT $4) AS p"
);

/// Counts the rows of [`DELETE_WINDOW_ENDED`]'s predicate, up to `$4`.
const COUNT_WINDOW_ENDED: &str = concat!(
    "SELECT count(*), min(finalized_at) FROM (SELECT finalized_at FROM jobq_jobs WHERE ",
    window_ended!(),
    " ORDER BY finalized_at LIMIT $4) AS p"
);
