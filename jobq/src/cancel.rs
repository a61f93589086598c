//! Cancelling a job, waiting or running.

use std::future::Future;

use crate::db::Db;
use crate::error::Result;
use crate::job::{JobId, JobState};
use crate::store;

/// What [`cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancellation {
    /// The job was waiting; it is now `cancelled` and will not run.
    Cancelled,
    /// The job is running: its worker was told to fire the job's cancellation
    /// token ([`JobContext::cancellation`](crate::JobContext::cancellation)).
    /// The handler may still finish (the job ends `completed`); if it stops or
    /// fails, the job ends `cancelled` and is not retried.
    Requested,
    /// The job had already finished, in this state (`completed`,
    /// `discarded` or `cancelled`).
    AlreadyFinished(String),
    /// There is no job with this id (or it finished and was pruned: see
    /// [`Retention`](crate::Retention)).
    NotFound,
}

/// Cancels job `id` through `db` (pool, connection or transaction). In a
/// transaction, the cancellation takes effect, and a running job's worker
/// hears of it, when the transaction commits.
pub fn cancel<'c, A>(db: A, id: JobId) -> impl Future<Output = Result<Cancellation>> + Send + 'c
where
    A: Db<'c>,
{
    async move {
        let mut conn = db.acquire().await?;
        let before = store::cancel(&mut conn, id.0).await?;
        Ok(match before {
            None => Cancellation::NotFound,
            Some(JobState::Running) => Cancellation::Requested,
            Some(
                JobState::Pending | JobState::Available | JobState::Scheduled | JobState::Retryable,
            ) => Cancellation::Cancelled,
            Some(state) => Cancellation::AlreadyFinished(state.to_string()),
        })
    }
}
