//! Recording attempts' results, fenced by attempt and worker.

use sqlx::PgConnection;

use super::ErrorKind;
use crate::job::JobState;

/// The state one attempt leaves its job in.
#[derive(Debug, Clone)]
pub(crate) struct Finish {
    pub id: i64,
    pub attempt: i32,
    /// `Completed`, `Retryable`, `Discarded`, `Cancelled`, `Scheduled`
    /// (snoozed) or `Available` (interrupted).
    pub state: JobState,
    /// For `retryable` and `scheduled`: how long until the next attempt.
    pub delay_ms: i64,
    /// For a failure: its message, appended to the job's `errors`.
    pub error: Option<String>,
    /// For a failure: its kind in the error history.
    pub error_kind: Option<ErrorKind>,
    /// The attempt does not count (interrupted or snoozed).
    pub requeue: bool,
}

/// Records many attempts' results in one statement. A result is written only
/// while its job is still `running` the same attempt for this worker, so a
/// worker whose job was rescued cannot overwrite the newer attempt. A job
/// whose cancellation was requested while it ran ends `cancelled` unless it
/// completed. Returns how many were written.
pub(crate) async fn finish_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[Finish],
) -> sqlx::Result<u64> {
    // Most results are plain completions: they take a lighter statement.
    let (completed, others): (Vec<&Finish>, Vec<&Finish>) =
        batch.iter().partition(|f| f.state == JobState::Completed);
    let mut written = 0;
    if !completed.is_empty() {
        written += complete_many(&mut *conn, worker_id, &completed).await?;
    }
    if !others.is_empty() {
        written += settle_many(conn, worker_id, &others).await?;
    }
    Ok(written)
}

/// The fence of every result: the row is still `running` the same attempt for
/// this worker (`$1`). `c` is the batch, joined by `id`.
macro_rules! fenced {
    () => {
        "WHERE j.id = c.id AND j.attempt = c.attempt AND j.state = 'running'
          AND j.attempted_by = $1"
    };
}

/// The state a result leaves its job in: the one the worker sent (`c.state`),
/// except that a job whose cancellation was requested while it ran ends
/// `cancelled` unless it completed. Text: compared with literals below, cast
/// once where it is stored.
macro_rules! final_state {
    () => {
        "(CASE WHEN c.state <> 'completed' AND j.cancel_requested_at IS NOT NULL
               THEN 'cancelled' ELSE c.state END)"
    };
}

/// The ids and attempts of `batch`: `$2` and `$3` of both statements.
fn id_arrays(batch: &[&Finish]) -> (Vec<i64>, Vec<i32>) {
    batch.iter().map(|f| (f.id, f.attempt)).unzip()
}

/// Marks attempts completed, with the same fencing as [`finish_many`].
async fn complete_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let (ids, attempts) = id_arrays(batch);
    let done = sqlx::query(concat!(
        "UPDATE jobq_jobs AS j SET state = 'completed', finalized_at = now()
        FROM (SELECT * FROM unnest($2::bigint[], $3::int[]) AS u(id, attempt) ORDER BY id) AS c
        ",
        fenced!()
    ))
    .bind(worker_id)
    .bind(ids)
    .bind(attempts)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Records failures, snoozes, cancellations and returned jobs.
///
/// States and error kinds go as text arrays, as they did before they were
/// typed: the statement, and so its plan and cost, stay as they were, and no
/// connection has to look up the `jobq_state[]` type before its first
/// result.
async fn settle_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let (ids, attempts) = id_arrays(batch);
    let states: Vec<&str> = batch.iter().map(|f| f.state.as_str()).collect();
    let delays: Vec<i64> = batch.iter().map(|f| f.delay_ms).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|f| f.error.as_deref()).collect();
    let kinds: Vec<Option<ErrorKind>> = batch.iter().map(|f| f.error_kind).collect();
    let requeue: Vec<bool> = batch.iter().map(|f| f.requeue).collect();
    let done = sqlx::query(concat!(
        "UPDATE jobq_jobs AS j SET
            state = ",
        final_state!(),
        "::jobq_state,
            attempt = CASE WHEN c.requeue AND ",
        final_state!(),
        " <> 'cancelled' THEN j.attempt - 1
                ELSE j.attempt END,
            -- The next claim counts this attempt again: it has not started.
            started_attempt = CASE WHEN c.requeue THEN NULL ELSE j.started_attempt END,
            scheduled_at = CASE
                WHEN ",
        final_state!(),
        " IN ('retryable', 'scheduled')
                    THEN now() + c.delay_ms * interval '1 millisecond'
                ELSE j.scheduled_at END,
            finalized_at = CASE WHEN ",
        final_state!(),
        " IN ('completed', 'discarded', 'cancelled')
                THEN now() END,
            errors = CASE WHEN c.error IS NULL THEN j.errors
                ELSE jobq_push_error(j.errors, jsonb_build_object(
                    'attempt', j.attempt, 'at', now(), 'kind', c.kind, 'error', c.error))
                END
        -- The ordered subquery keeps a generic plan from re-running the
        -- unnest once per running row (a nested loop): it joins by id instead.
        FROM (SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::bigint[],
                                   $6::text[], $7::text[], $8::bool[])
                  AS u(id, attempt, state, delay_ms, error, kind, requeue)
              ORDER BY id) AS c
        ",
        fenced!()
    ))
    .bind(worker_id)
    .bind(ids)
    .bind(attempts)
    .bind(states)
    .bind(delays)
    .bind(errors)
    .bind(kinds)
    .bind(requeue)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Discards the attempt `attempt` of job `id` whose result PostgreSQL refused
/// (see the completer), keeping `reason` in its error history under the kind
/// `unrecordable`. Fenced like [`finish_many`]; returns how many rows were
/// written (0 or 1). Nothing of the refused result is written but `reason`,
/// which the caller makes from the database's message and cleans.
pub(crate) async fn discard_unrecordable(
    conn: &mut PgConnection,
    worker_id: i64,
    id: i64,
    attempt: i32,
    reason: &str,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE jobq_jobs SET state = 'discarded', finalized_at = now(),
            errors = jobq_push_error(errors, jsonb_build_object(
                'attempt', attempt, 'at', now(), 'kind', 'unrecordable', 'error', $4::text))
        WHERE id = $1 AND attempt = $2 AND state = 'running' AND attempted_by = $3",
    )
    .bind(id)
    .bind(attempt)
    .bind(worker_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The last resort for a result PostgreSQL refused even as
/// [`discard_unrecordable`]: the job is discarded with a fixed error entry,
/// and nothing else the worker or the database could object to is written.
///
/// With `release_key`, the job also gives up its unique key. Passed when the
/// refusal was a unique violation: `discarded` is then one of the states the
/// key holds in, and another row holds it already, so this row may not. The
/// key's guarantee (one row holds it) is kept by that other row, and a row
/// without a key is in no unique index, so this write cannot conflict.
/// Otherwise the key is kept: releasing it would let a new job take a key
/// that the user asked to hold in `discarded`.
pub(crate) async fn discard_unrecordable_minimal(
    conn: &mut PgConnection,
    worker_id: i64,
    id: i64,
    attempt: i32,
    release_key: bool,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE jobq_jobs SET state = 'discarded', finalized_at = now(),
            unique_key = CASE WHEN $4 THEN NULL ELSE unique_key END,
            errors = jobq_push_error(errors, jsonb_build_object(
                'attempt', attempt, 'at', now(), 'kind', 'unrecordable',
                'error', 'could not record this attempt''s result'))
        WHERE id = $1 AND attempt = $2 AND state = 'running' AND attempted_by = $3",
    )
    .bind(id)
    .bind(attempt)
    .bind(worker_id)
    .bind(release_key)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
