//! Recording attempts' results, fenced by attempt and worker.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};

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
    /// For a completion: what the job returned, as JSON; `None` when it
    /// returned nothing to keep (`()`), so nothing is written.
    pub result: Option<String>,
}

/// Records many attempts' results in one statement. A result is written only
/// while its job is still `running` the same attempt for this worker, so a
/// worker whose job was rescued cannot overwrite the newer attempt. A job
/// whose cancellation was requested while it ran ends `cancelled` unless it
/// completed. Returns how many were written.
///
/// Jobs somebody follows (`on_finish` set: a caller waits for them) are
/// skipped by the statements that write the others, so that those stay as
/// light as before; when a statement wrote fewer rows than it was given,
/// [`finish_followed`] writes the rest, each with what its end sets off, in
/// one statement. (The fence's refusals, rare, send their results there too,
/// to be refused again.)
pub(crate) async fn finish_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[Finish],
) -> sqlx::Result<u64> {
    // Most results are plain completions: they take a lighter statement,
    // lighter still without a result to keep.
    let mut plain = Vec::new();
    let mut returned = Vec::new();
    let mut others = Vec::new();
    for f in batch {
        match (f.state, &f.result) {
            (JobState::Completed, None) => plain.push(f),
            (JobState::Completed, Some(_)) => returned.push(f),
            _ => others.push(f),
        }
    }
    let mut written = 0;
    // The groups whose statement left rows unwritten: only those go on to
    // `finish_followed` (rows already written fail its fence anyway).
    let mut rest: Vec<&Finish> = Vec::new();
    if !plain.is_empty() {
        let n = complete_many(&mut *conn, worker_id, &plain).await?;
        written += n;
        if n < plain.len() as u64 {
            rest.extend(&plain);
        }
    }
    if !returned.is_empty() {
        let n = complete_with_results(&mut *conn, worker_id, &returned).await?;
        written += n;
        if n < returned.len() as u64 {
            rest.extend(&returned);
        }
    }
    if !others.is_empty() {
        let n = settle_many(&mut *conn, worker_id, &others).await?;
        written += n;
        if n < others.len() as u64 {
            rest.extend(&others);
        }
    }
    if !rest.is_empty() {
        written += finish_followed(conn, worker_id, &rest).await?;
    }
    Ok(written)
}

/// The fence of every result: the row is still `running` the same attempt for
/// this worker (`$1`). `c` is the batch, joined by `id`.
///
/// `state` is compared as text so that the planner cannot read `j` through
/// the partial index `jobq_jobs_running` (by `attempted_by`), as it did for
/// the rescue (see `RESCUE_SQL`): with statistics taken while few jobs ran,
/// it estimated one running job for the worker and read every job the
/// worker runs to write each batch, 1,000 of them (424 buffers) to complete
/// one, instead of looking the batch up by id (4 buffers a job).
macro_rules! fenced {
    () => {
        "WHERE j.id = c.id AND j.attempt = c.attempt AND j.state::text = 'running'
          AND j.attempted_by = $1"
    };
}

/// The fence of the statements for jobs nobody follows: [`fenced`], and
/// `on_finish` is null (see [`finish_many`]).
macro_rules! fenced_unfollowed {
    () => {
        concat!(fenced!(), " AND j.on_finish IS NULL")
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

/// Marks the attempts `$2` (ids) and `$3` (attempts) of worker `$1`
/// completed, fenced (see [`fenced!`]), for jobs nobody follows.
///
/// Reachable from `__private` so that the tests read this very statement.
pub const COMPLETE_SQL: &str = concat!(
    "UPDATE jobq_jobs AS j SET state = 'completed', finalized_at = now()
        FROM (SELECT * FROM unnest($2::bigint[], $3::int[]) AS u(id, attempt) ORDER BY id) AS c
        ",
    fenced_unfollowed!()
);

/// Marks attempts completed, with the same fencing as [`finish_many`].
async fn complete_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let (ids, attempts) = id_arrays(batch);
    let done = sqlx::query(COMPLETE_SQL)
        .bind(worker_id)
        .bind(ids)
        .bind(attempts)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Marks attempts completed and keeps what each returned (JSON text in
/// `$4`), with the same fencing as [`complete_many`].
async fn complete_with_results(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let (ids, attempts) = id_arrays(batch);
    let results: Vec<Option<&str>> = batch.iter().map(|f| f.result.as_deref()).collect();
    let done = sqlx::query(concat!(
        "UPDATE jobq_jobs AS j SET state = 'completed', finalized_at = now(),
            result = c.result::jsonb
        FROM (SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[]) AS u(id, attempt, result)
              ORDER BY id) AS c
        ",
        fenced_unfollowed!()
    ))
    .bind(worker_id)
    .bind(ids)
    .bind(attempts)
    .bind(results)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The `SET` list of [`settle_many`] and [`finish_followed`]; `c` is the
/// batch of [`settle_batch`].
macro_rules! settle_set_from {
    () => {
        concat!(
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
                    'attempt', j.attempt, 'at', now(), 'kind', c.kind, 'error', c.error,
                    'worker', j.attempted_by, 'started_at', j.attempted_at))
                END"
        )
    };
}

/// The `FROM` of [`settle_many`] and [`finish_followed`]: the batch's arrays
/// `$2` to `$8` (see [`bind_settled`]) as rows `c`, plus one more array and
/// its column when given. The ordered subquery keeps a generic plan from
/// re-running the unnest once per running row (a nested loop): it joins by
/// id instead.
macro_rules! settle_batch {
    ($($array:literal, $column:literal)?) => {
        concat!(
            "
        FROM (SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::bigint[],
                                   $6::text[], $7::text[], $8::bool[]",
            $(", ", $array,)?
            ")
                  AS u(id, attempt, state, delay_ms, error, kind, requeue",
            $(", ", $column,)?
            ")
              ORDER BY id) AS c
        "
        )
    };
}

/// Binds `$1` (the worker) and `$2` to `$8`, the arrays of [`settle_batch`],
/// from `batch`.
///
/// States and error kinds go as text arrays, as they did before they were
/// typed: the statements, and so their plans and cost, stay as they were,
/// and no connection has to look up the `jobq_state[]` type before its
/// first result.
fn bind_settled<'q>(
    query: Query<'q, Postgres, PgArguments>,
    worker_id: i64,
    batch: &[&'q Finish],
) -> Query<'q, Postgres, PgArguments> {
    let (ids, attempts) = id_arrays(batch);
    let states: Vec<&str> = batch.iter().map(|f| f.state.as_str()).collect();
    let delays: Vec<i64> = batch.iter().map(|f| f.delay_ms).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|f| f.error.as_deref()).collect();
    let kinds: Vec<Option<ErrorKind>> = batch.iter().map(|f| f.error_kind).collect();
    let requeue: Vec<bool> = batch.iter().map(|f| f.requeue).collect();
    query
        .bind(worker_id)
        .bind(ids)
        .bind(attempts)
        .bind(states)
        .bind(delays)
        .bind(errors)
        .bind(kinds)
        .bind(requeue)
}

/// Records failures, snoozes, cancellations and returned jobs.
async fn settle_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let query = sqlx::query(concat!(
        settle_set_from!(),
        settle_batch!(),
        fenced_unfollowed!()
    ));
    let done = bind_settled(query, worker_id, batch).execute(conn).await?;
    Ok(done.rows_affected())
}

/// Records the results of followed jobs (`on_finish` set), whatever they
/// are, and in the same statement, so the same transaction, sets off what
/// their end must (see `jobq_finished`): each waiting caller is told. Fenced
/// like [`finish_many`]; rows already written, or nobody follows, are left
/// alone. Returns how many were written.
async fn finish_followed(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let results: Vec<Option<&str>> = batch.iter().map(|f| f.result.as_deref()).collect();
    let query = sqlx::query(concat!(
        "WITH done AS (",
        settle_set_from!(),
        ",
            result = CASE WHEN ",
        final_state!(),
        " = 'completed' THEN c.result::jsonb ELSE j.result END",
        settle_batch!("$9::text[]", "result"),
        fenced!(),
        " AND j.on_finish IS NOT NULL
        RETURNING j.id, j.state, j.on_finish
        )
        SELECT count(*) + ",
        after_finish!("done"),
        " FROM done"
    ));
    let written: i64 = bind_settled(query, worker_id, batch)
        .bind(results)
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok(written as u64)
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
    let written: i64 = sqlx::query_scalar(concat!(
        "WITH done AS (
            UPDATE jobq_jobs SET state = 'discarded', finalized_at = now(),
                errors = jobq_push_error(errors, jsonb_build_object(
                    'attempt', attempt, 'at', now(), 'kind', 'unrecordable', 'error', $4::text,
                    'worker', attempted_by, 'started_at', attempted_at))
            WHERE id = $1 AND attempt = $2 AND state::text = 'running' AND attempted_by = $3
            RETURNING id, state, on_finish
        )
        SELECT count(*) + ",
        after_finish!("done"),
        " FROM done"
    ))
    .bind(id)
    .bind(attempt)
    .bind(worker_id)
    .bind(reason)
    .fetch_one(conn)
    .await?;
    Ok(written as u64)
}

/// The last resort for a result PostgreSQL refused even as
/// [`discard_unrecordable`]: the job is discarded with a fixed error entry,
/// and nothing else the worker or the database could object to is written
/// (but what the end of a followed job sets off, which writes only values
/// jobq makes).
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
    let written: i64 = sqlx::query_scalar(concat!(
        "WITH done AS (
            UPDATE jobq_jobs SET state = 'discarded', finalized_at = now(),
                unique_key = CASE WHEN $4 THEN NULL ELSE unique_key END,
                errors = jobq_push_error(errors, jsonb_build_object(
                    'attempt', attempt, 'at', now(), 'kind', 'unrecordable',
                    'error', 'could not record this attempt''s result',
                    'worker', attempted_by, 'started_at', attempted_at))
            WHERE id = $1 AND attempt = $2 AND state::text = 'running' AND attempted_by = $3
            RETURNING id, state, on_finish
        )
        SELECT count(*) + ",
        after_finish!("done"),
        " FROM done"
    ))
    .bind(id)
    .bind(attempt)
    .bind(worker_id)
    .bind(release_key)
    .fetch_one(conn)
    .await?;
    Ok(written as u64)
}
