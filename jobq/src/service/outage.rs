//! How a background service lives through a database outage: say so once,
//! back off (capped), say when it is over.

use std::time::{Duration, Instant};

/// The state of one service's connection to the database.
pub(crate) struct Outage {
    what: &'static str,
    since: Option<Instant>,
    failures: u32,
}

impl Outage {
    /// `what` names the service in logs ("claim jobs", "record results").
    pub(crate) fn new(what: &'static str) -> Self {
        Outage {
            what,
            since: None,
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before trying again.
    pub(crate) fn failed(&mut self, error: &sqlx::Error) -> Duration {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(service = self.what, %error, "jobq cannot reach the database; retrying");
        } else {
            tracing::debug!(service = self.what, %error, "jobq still cannot reach the database");
        }
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.min(6);
        let wait = Duration::from_millis(50 << exp).min(Duration::from_secs(3));
        wait.mul_f64(0.75 + fastrand::f64() * 0.5)
    }

    /// Records a success, logging the end of an outage.
    pub(crate) fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                service = self.what,
                after = ?since.elapsed(),
                "jobq reached the database again"
            );
        }
        self.failures = 0;
    }
}
