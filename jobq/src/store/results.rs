//! Jobs' results, and following a job to its end.

use sqlx::PgConnection;

use crate::job::JobState;

/// The channel on which the end of a job a caller follows is announced,
/// with the job's id as payload (see `jobq_finished`): spelled once, for
/// [`FINISHED_CHANNEL`] and the SQL.
pub const FINISHED_CHANNEL: &str = "jobq_finished";

/// A job as a caller waiting for its result reads it.
#[derive(Debug)]
pub(crate) struct JobEnd {
    /// The job's stored name.
    pub kind: String,
    pub state: JobState,
    /// What it returned, as JSON text; `None` when it returned `null` or has
    /// not completed.
    pub result: Option<String>,
    /// The message of the last entry of its error history.
    pub last_error: Option<String>,
}

/// Marks job `id` as followed (bit 1 of `on_finish`), so that its end is
/// announced on [`FINISHED_CHANNEL`], if it has not finished. Returns
/// whether it was marked: `false` when it has finished or does not exist.
///
/// Run it after LISTEN, then read the job with [`job_end`] in a statement
/// of its own: an end that comes after this statement was announced, and
/// one that came before it is seen by that read (a snapshot taken with
/// this statement could still show the job running, when its end
/// committed while this waited for the row).
pub(crate) async fn follow(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE jobq_jobs SET on_finish = coalesce(on_finish, 0) | 1
         WHERE id = $1 AND state NOT IN ('completed', 'discarded', 'cancelled')",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Job `id`'s kind, state, result and last error; `None` when there is no
/// such job (never enqueued, or pruned).
pub(crate) async fn job_end(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<JobEnd>> {
    let row: Option<(String, JobState, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT kind, state, result::text, errors -> -1 ->> 'error' FROM jobq_jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(kind, state, result, last_error)| JobEnd {
        kind,
        state,
        result,
        last_error,
    }))
}
