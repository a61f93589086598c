//! The completer: writes attempts' results in batches, one statement per
//! flush, retrying through database outages until they are written.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};

use super::Config;
use super::conn::HeldConn;
use super::outage::Outage;
use crate::job::Outcome;
use crate::store::{self, Finish};

/// Results written by one statement, at most.
const MAX_BATCH: usize = 1000;

/// The result of one attempt, on its way to the database.
pub(crate) struct Completion {
    pub id: i64,
    pub attempt: i32,
    pub max_attempts: i32,
    /// How the attempt ended; `None` for a job claimed but never started
    /// (the worker shut down first): it goes back untouched.
    pub outcome: Option<Outcome>,
}

impl Completion {
    fn into_finish(self, config: &Config) -> Finish {
        let mut finish = Finish {
            id: self.id,
            attempt: self.attempt,
            state: "completed",
            delay_ms: 0,
            error: None,
            error_kind: None,
            requeue: false,
        };
        let Some(outcome) = self.outcome else {
            finish.state = "available";
            finish.requeue = true;
            return finish;
        };
        match outcome {
            Outcome::Completed => {}
            Outcome::Failed {
                error,
                kind,
                retry_at,
            } => {
                finish.error = Some(error);
                finish.error_kind = Some(kind);
                if self.attempt >= self.max_attempts {
                    finish.state = "discarded";
                } else {
                    finish.state = "retryable";
                    finish.delay_ms = match retry_at {
                        Some(at) => (at - chrono::Utc::now()).num_milliseconds().max(0),
                        None => millis(config.backoff.delay(self.attempt)),
                    };
                }
            }
            Outcome::Discard { error, kind } => {
                finish.state = "discarded";
                finish.error = Some(error);
                finish.error_kind = Some(kind);
            }
            Outcome::Snooze(delay) => {
                finish.state = "scheduled";
                finish.requeue = true;
                finish.delay_ms = millis(delay);
            }
            Outcome::Cancelled => {
                finish.state = "cancelled";
                finish.error = Some("cancelled on request".to_owned());
                finish.error_kind = Some("cancelled");
            }
            Outcome::Interrupted => {
                finish.state = "available";
                finish.requeue = true;
                finish.error = Some("interrupted: the worker shut down".to_owned());
                finish.error_kind = Some("shutdown");
            }
        }
        finish
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs until every sender is gone and every result is written. After
/// writing a retry or a snooze, it has every producer of this worker claim
/// again: the claim tells when that job is due, so it starts on time rather
/// than up to a poll interval late.
pub(super) async fn run(
    pool: PgPool,
    worker_id: i64,
    config: Config,
    mut rx: mpsc::Receiver<Completion>,
    rescans: Vec<Arc<Notify>>,
) {
    let mut outage = Outage::new("record results");
    let mut conn = HeldConn::new(pool);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first.into_finish(&config));
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c.into_finish(&config)),
                Err(_) => break,
            }
        }
        loop {
            let written = match conn.get().await {
                Ok(c) => store::finish_many(c, worker_id, &batch).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(written) => {
                    outage.recovered();
                    if batch
                        .iter()
                        .any(|f| matches!(f.state, "retryable" | "scheduled"))
                    {
                        rescans.iter().for_each(|r| r.notify_one());
                    }
                    let refused = batch.len() as u64 - written;
                    if refused > 0 {
                        tracing::warn!(
                            refused,
                            "results refused: those jobs were rescued from this worker and belong to a newer attempt"
                        );
                    }
                    break;
                }
                Err(e) => {
                    conn.discard();
                    tokio::time::sleep(outage.failed(&e)).await;
                }
            }
        }
        batch.clear();
    }
}
