//! Reading jobs' results: at once ([`result`]), or once the job has
//! finished ([`wait`]).

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::job::{Job, JobId, JobState};
use crate::store::{self, JobEnd};

mod hub;

use hub::Hub;

/// Why [`wait`] returned no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The job ended `discarded`: out of attempts, or it could never run.
    #[error("job {id} was discarded: {}", last_error.as_deref().unwrap_or("no error recorded"))]
    Discarded {
        /// The job.
        id: JobId,
        /// The message of the last entry of its error history.
        last_error: Option<String>,
    },
    /// The job ended `cancelled`: on request, or because a job it depended
    /// on did not complete.
    #[error("job {id} was cancelled: {}", last_error.as_deref().unwrap_or("on request"))]
    Cancelled {
        /// The job.
        id: JobId,
        /// The message of the last entry of its error history, which says
        /// why when jobq cancelled it.
        last_error: Option<String>,
    },
    /// The job had not finished when the wait's time ran out. It goes on;
    /// wait again, or read it later with [`result`].
    #[error("job {id} did not finish within {timeout:?}")]
    TimedOut {
        /// The job.
        id: JobId,
        /// How long the wait lasted.
        timeout: Duration,
    },
    /// There is no job with this id: never enqueued (or enqueued in a
    /// transaction that has not committed), or finished and pruned (see
    /// [`Retention`](crate::Retention)).
    #[error("there is no job {id}: never enqueued, or finished and pruned")]
    NotFound {
        /// The id asked for.
        id: JobId,
    },
    /// The database failed, the job is of another kind, or its result does
    /// not decode.
    #[error(transparent)]
    Error(#[from] Error),
}

impl From<sqlx::Error> for WaitError {
    fn from(e: sqlx::Error) -> Self {
        WaitError::Error(e.into())
    }
}

/// What job `id` of type `J` returned, read through `db` (pool, connection
/// or transaction): `Some` once it has completed, `None` while it has not
/// (or when it ended otherwise, or there is no such job: [`wait`] tells
/// those apart). A job whose fn returns `()` has `Some(())` once completed.
///
/// `#[job]` generates `my_job::result(db, id)`, which calls this.
pub fn result<'c, J: Job, A: Db<'c>>(
    db: A,
    id: JobId,
) -> impl Future<Output = Result<Option<J::Output>>> + Send + 'c {
    async move {
        let mut conn = db.acquire().await?;
        match store::job_end(&mut conn, id.0).await? {
            Some(end) if end.state == JobState::Completed => decode::<J>(id, end).map(Some),
            Some(end) => check_kind::<J>(id, &end).map(|()| None),
            None => Ok(None),
        }
    }
}

/// Waits until job `id` of type `J` finishes, at most `timeout`, and
/// returns what it returned. A job that ends discarded or cancelled gives
/// that, with its last error; one still unfinished when `timeout` runs out
/// gives [`WaitError::TimedOut`] (the job goes on).
///
/// The wait is woken by the job's end, not by polling: it marks the job so
/// that its end is announced, and registers with the one listener its pool
/// has in this process (a connection that LISTENs for as long as any wait
/// on the pool runs: a thousand concurrent waits hold one connection), then
/// reads the job, so an end that came before is found by that read. The
/// announcement costs that job one NOTIFY; jobs nobody waits for pay
/// nothing. After the listener's connection is lost it connects again, and
/// every wait reads its job again.
///
/// `#[job]` generates `my_job::wait(pool, id, timeout)`, which calls this.
pub fn wait<J: Job>(
    pool: &PgPool,
    id: JobId,
    timeout: Duration,
) -> impl Future<Output = Result<J::Output, WaitError>> + Send + '_ {
    async move {
        match tokio::time::timeout(timeout, wait_for_end::<J>(pool, id)).await {
            Ok(ended) => ended,
            Err(_) => Err(WaitError::TimedOut { id, timeout }),
        }
    }
}

async fn wait_for_end<J: Job>(pool: &PgPool, id: JobId) -> Result<J::Output, WaitError> {
    // Marked first, on a connection of the pool (which fails at once when
    // the database cannot be reached), so that its end is announced.
    store::follow(&mut *pool.acquire().await?, id.0).await?;
    let hub = Hub::of(pool);
    let announced = hub.register(id.0);
    let mut listening = hub.listening();
    // Read only once the hub listens: an end that came before is then
    // found by the read, one after it by the announcement.
    // (The channel cannot close: `announced` holds the hub, its sender.)
    let _ = listening.wait_for(|n| *n > 0).await;
    loop {
        listening.borrow_and_update();
        let end = store::job_end(&mut *pool.acquire().await?, id.0)
            .await?
            .ok_or(WaitError::NotFound { id })?;
        if let Some(ended) = ended::<J>(id, end)? {
            return ended;
        }
        tokio::select! {
            _ = announced.announced() => {}
            // Listening again after a lost connection: read again.
            _ = listening.changed() => {}
        }
    }
}

/// What a wait returns for `end`, once the job has finished; `None` while
/// it has not.
fn ended<J: Job>(id: JobId, end: JobEnd) -> Result<Option<Result<J::Output, WaitError>>> {
    check_kind::<J>(id, &end)?;
    Ok(match end.state {
        JobState::Completed => Some(Ok(decode::<J>(id, end)?)),
        JobState::Discarded => Some(Err(WaitError::Discarded {
            id,
            last_error: end.last_error,
        })),
        JobState::Cancelled => Some(Err(WaitError::Cancelled {
            id,
            last_error: end.last_error,
        })),
        _ => None,
    })
}

fn check_kind<J: Job>(id: JobId, end: &JobEnd) -> Result<()> {
    if J::DEF.names().any(|name| name == end.kind) {
        Ok(())
    } else {
        Err(Error::WrongKind {
            id: id.0,
            expected: J::DEF.name,
            found: end.kind.clone(),
        })
    }
}

/// The result of a completed job: its JSON, or `null` when none was stored.
fn decode<J: Job>(id: JobId, end: JobEnd) -> Result<J::Output> {
    check_kind::<J>(id, &end)?;
    serde_json::from_str(end.result.as_deref().unwrap_or("null")).map_err(|source| {
        Error::DecodeResult {
            id: id.0,
            job: J::DEF.name,
            source,
        }
    })
}
