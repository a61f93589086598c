//! How an attempt ends: the [`Outcome`] the worker reads from a handler's
//! result, and the [`Control`] a job returns to ask for more than failure.

use std::any::Any;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What a job asks of the worker instead of plain failure: return it as the
/// error of the job's `Result`.
///
/// It is recognized when the job's error type is `jobq::Control` itself,
/// `anyhow::Error` (with the default `anyhow` feature) or
/// `Box<dyn Error + Send + Sync>` holding it:
///
/// ```
/// use std::time::Duration;
///
/// #[jobq::job]
/// async fn sync_account(account_id: i64) -> anyhow::Result<()> {
///     let rate_limited = account_id < 0;
///     if rate_limited {
///         // Not a failure: try again in a minute, without using an attempt.
///         return Err(jobq::Control::snooze(Duration::from_secs(60)).into());
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Control {
    /// Run again after this long; the attempt does not count.
    #[error("snoozed for {0:?}")]
    Snooze(Duration),
    /// A failed attempt, retried at this time instead of after the backoff
    /// (discarded instead when it was the last attempt).
    #[error("retry requested at {at}: {reason}")]
    RetryAt {
        /// When to run again.
        at: DateTime<Utc>,
        /// Why, kept in the job's error history.
        reason: String,
    },
    /// Fail for good: no more attempts.
    #[error("discarded: {0}")]
    Discard(String),
}

impl Control {
    /// Run again after `delay`, without using an attempt. A delay longer
    /// than 100 years is cut to 100 years.
    pub fn snooze(delay: Duration) -> Self {
        Control::Snooze(delay)
    }

    /// Fail this attempt and run the next one at `at` (at once if `at` is
    /// past, in 100 years if it is later than that).
    pub fn retry_at(at: DateTime<Utc>, reason: impl Into<String>) -> Self {
        Control::RetryAt {
            at,
            reason: reason.into(),
        }
    }

    /// Fail for good, with `reason` kept in the job's error history.
    pub fn discard(reason: impl Into<String>) -> Self {
        Control::Discard(reason.into())
    }

    /// Finds a `Control` in a job's error value, wherever it can be.
    pub(crate) fn find<E: 'static>(error: &E) -> Option<&Control> {
        let any = error as &dyn Any;
        if let Some(c) = any.downcast_ref::<Control>() {
            return Some(c);
        }
        #[cfg(feature = "anyhow")]
        if let Some(e) = any.downcast_ref::<anyhow::Error>() {
            return e.downcast_ref::<Control>();
        }
        if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
            return e.downcast_ref::<Control>();
        }
        None
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned `Ok` with nothing to keep (`()`, or a value serde
    /// writes as `null`).
    Completed,
    /// The handler returned `Ok` with a value, kept with the job as this
    /// JSON text (read back with `my_job::result` or `my_job::wait`).
    CompletedWith(String),
    /// The handler returned `Err`, panicked or timed out: retry after backoff
    /// (or at `retry_at`), or discard when out of attempts.
    Failed {
        /// What went wrong.
        error: String,
        /// `"error"`, `"panic"` or `"timeout"`.
        kind: &'static str,
        /// When to retry, instead of the backoff.
        retry_at: Option<DateTime<Utc>>,
    },
    /// The job can never succeed: discard now.
    Discard {
        /// Why.
        error: String,
        /// `"decode"` (arguments do not decode) or `"discard"` (asked by the job).
        kind: &'static str,
    },
    /// Run again after this long; the attempt does not count.
    Snooze(Duration),
    /// The job's cancellation was requested and it stopped.
    Cancelled,
    /// The worker stopped the attempt while shutting down: the job goes back to
    /// `available` and the attempt does not count.
    Interrupted,
}

impl Outcome {
    /// Whether the handler returned `Ok`: [`Completed`](Self::Completed) or
    /// [`CompletedWith`](Self::CompletedWith).
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed | Outcome::CompletedWith(_))
    }

    /// A plain failure of `kind`.
    pub(crate) fn failed(error: impl Into<String>, kind: &'static str) -> Self {
        Outcome::Failed {
            error: error.into(),
            kind,
            retry_at: None,
        }
    }
}
