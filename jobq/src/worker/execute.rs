//! One attempt of one job: decode, inject, run under a span (`jobq.run`) with
//! its timeout and cancellation token, turn a panic into a failed attempt,
//! count it (see `crate::metrics`), hand the outcome to the completer.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::complete::clean_error;
use super::conn::bounded;
use super::running::Handle;
use super::{Completion, Shared};
use crate::job::{JobContext, JobDef, JobId, Outcome, RunCx, RunError};
use crate::metrics::{AttemptMetrics, AttemptOutcome};
use crate::store::{self, ClaimedJob};

/// Runs one attempt of the claimed `job` and sends its [`Completion`] to
/// the completer; `slot` is given back once it is sent.
pub(crate) async fn run(
    shared: Arc<Shared>,
    queue: String,
    job: ClaimedJob,
    slot: OwnedSemaphorePermit,
) {
    let Some(def) = shared.registry.get(&job.kind) else {
        // Unreachable: the claim names only registered kinds. Hand it back
        // untouched rather than guess.
        tracing::error!(job.id = job.id, job.kind = %job.kind, "claimed a job of an unknown kind");
        let _ = shared.completions.send(Completion::handed_back(&job)).await;
        return;
    };
    let span = tracing::info_span!(
        "jobq.run",
        kind = def.name,
        id = job.id,
        queue = %queue,
        attempt = job.counted_attempt(),
        outcome = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    #[cfg(feature = "opentelemetry")]
    crate::trace::link_to_enqueue(&span, job.trace_context.as_deref());
    // The fence is the claim's own attempt number; lost attempts are given
    // back to the job's budget.
    let (id, attempt, max_attempts) = (
        job.id,
        job.attempt,
        job.max_attempts.saturating_add(job.lost_attempts),
    );
    let metrics = AttemptMetrics::of(def.name, &queue);
    let waited = (chrono::Utc::now() - job.scheduled_at)
        .to_std()
        .unwrap_or_default();
    let started = Instant::now();
    let mut outcome = attempt_once(&shared, def, queue, job)
        .instrument(span.clone())
        .await;
    let ran = started.elapsed();
    // Capped and cleaned before it is logged too: a 10 MB error is no
    // better in a log line than in the table.
    if let Outcome::Failed { error, .. } | Outcome::Discard { error, .. } = &mut outcome {
        *error = clean_error(std::mem::take(error));
    }
    let ended = AttemptOutcome::of(&outcome, attempt, max_attempts);
    metrics.record(waited, ran, ended);
    span.record("outcome", ended.as_str());
    if let Outcome::Failed { error, .. } | Outcome::Discard { error, .. } = &outcome {
        span.record("error", error.as_str());
    }
    span.in_scope(|| match &outcome {
        Outcome::Completed | Outcome::CompletedWith(_) => tracing::debug!("job completed"),
        Outcome::Failed { error, kind, .. } => tracing::warn!(%error, kind, "job attempt failed"),
        Outcome::Discard { error, .. } => tracing::error!(%error, "job discarded"),
        Outcome::Snooze(delay) => tracing::debug!(?delay, "job snoozed"),
        Outcome::Cancelled => tracing::info!("job cancelled"),
        Outcome::Interrupted => tracing::info!("job interrupted by shutdown"),
    });
    let done = Completion {
        id,
        attempt,
        max_attempts,
        outcome: Some(outcome),
    };
    if shared.completions.send(done).await.is_err() {
        tracing::error!(
            job.id = id,
            "the completer stopped; this result is lost and the job will be rescued"
        );
    }
    drop(slot);
}

/// One attempt of `job`: its outcome as the handler left it (its error not
/// yet cleaned).
pub(crate) async fn attempt_once(
    shared: &Shared,
    def: &'static JobDef,
    queue: String,
    job: ClaimedJob,
) -> Outcome {
    let handle = shared
        .running
        .insert(job.id, shared.stop_jobs.child_token());
    if handle.was_cancel_requested() {
        // Cancelled while it waited in the buffer: it never starts.
        shared.running.remove(job.id);
        return Outcome::Cancelled;
    }
    if job.lost_attempts >= store::SUSPECT_LOST_ATTEMPTS {
        // Said before anything of it runs: if the worker dies now, losing
        // this attempt counts against this job (it runs alone).
        let marked = async {
            let mut conn = shared.pool.acquire().await?;
            bounded(store::mark_started(
                &mut conn,
                shared.worker_id,
                job.id,
                job.attempt,
            ))
            .await
        };
        if let Err(e) = marked.await {
            tracing::warn!(job.id = job.id, error = %e, "could not record that a suspect job starts");
        }
    }
    let ctx = JobContext::new(
        JobId(job.id),
        def,
        queue,
        job.counted_attempt(),
        job.max_attempts,
        job.scheduled_at,
        handle.token.clone(),
        shared.pool.clone(),
    );
    let cx = RunCx {
        def,
        args: job.args,
        ctx,
        states: shared.states.clone(),
    };
    // Decoding runs user code too (`deserialize_with`, a `Deserialize`
    // impl): a panic there is a failed attempt like a panic in the handler.
    let prepared = std::panic::catch_unwind(AssertUnwindSafe(|| (def.run)(cx)));
    let outcome = match prepared {
        Err(panic) => Outcome::failed(
            format!(
                "panicked while decoding the arguments: {}",
                panic_message(&*panic)
            ),
            "panic",
        ),
        Ok(Err(RunError::Decode(error))) => Outcome::Discard {
            error,
            kind: "decode",
        },
        Ok(Err(e @ RunError::MissingState(_))) => Outcome::failed(e.to_string(), "error"),
        Ok(Ok(fut)) => {
            let timeout = def.timeout.or(shared.config.default_timeout);
            supervise(fut, timeout, &handle, shared.config.cancel_grace).await
        }
    };
    shared.running.remove(job.id);
    outcome
}

/// The longest an attempt interrupted by a lost lease is let run after its
/// token fires, whatever [`Worker::cancel_grace`](crate::Worker::cancel_grace)
/// says.
const LEASE_LOST_GRACE: Duration = Duration::from_secs(1);

/// Runs the handler to its end, its timeout, or its cancellation. A timed-out
/// or cancelled handler sees its token fire and gets `grace` to return before
/// its future is dropped. A handler that completes within that grace after a
/// cancellation or shutdown has completed; otherwise a cancelled job ends
/// `cancelled` and an interrupted one goes back to `available`.
async fn supervise(
    fut: impl Future<Output = Outcome> + Send,
    timeout: Option<Duration>,
    handle: &Handle,
    grace: Duration,
) -> Outcome {
    let cancel = &handle.token;
    let mut fut = std::pin::pin!(AssertUnwindSafe(fut).catch_unwind());
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = &mut fut => from_result(result),
        _ = deadline => {
            cancel.cancel();
            // The handler may watch its token. If it still completes within
            // the grace, its work is done: running it again would repeat it.
            match tokio::time::timeout(grace, &mut fut).await.map(from_result) {
                Ok(done) if done.is_completed() => done,
                _ => Outcome::failed(
                    format!("timed out after {:?}", timeout.unwrap_or_default()),
                    "timeout",
                ),
            }
        }
        _ = cancel.cancelled() => {
            // The worker lost its lease: its jobs were given to other
            // workers, so the attempt runs beside another one for as long
            // as it is let run. However long the grace, at most a second.
            let grace = if handle.lease_was_lost() {
                grace.min(LEASE_LOST_GRACE)
            } else {
                grace
            };
            let finished = tokio::time::timeout(grace, &mut fut).await;
            match finished.map(from_result) {
                Ok(done) if done.is_completed() => done,
                _ if handle.was_cancel_requested() => Outcome::Cancelled,
                _ => Outcome::Interrupted,
            }
        }
    }
}

fn from_result(result: Result<Outcome, Box<dyn Any + Send>>) -> Outcome {
    match result {
        Ok(outcome) => outcome,
        Err(panic) => Outcome::failed(format!("panicked: {}", panic_message(&*panic)), "panic"),
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
