//! The completer: writes attempts' results in batches, one statement per
//! flush, retrying through database outages until they are written.
//!
//! One result PostgreSQL refuses costs its own job only. Errors are told
//! apart by what they say about the connection (see [`Fault`]): a lost
//! connection, or a statement PostgreSQL cannot run at all, is an outage and
//! the same results are tried again; a refusal of the data (a value out of
//! range, a unique key another row holds) splits the batch in halves until
//! the refused results stand alone. The others are written; each refused one
//! is discarded with the database's reason, by a write that cannot meet the
//! same refusal (see [`Writer::settle_refused`]).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod fault;
mod result;

use super::Config;
use super::conn::{HeldConn, bounded};
use super::fetch::Rescan;
use crate::job::JobState;
use crate::service::Outage;
use crate::store::{self, Finish};
use fault::{Fault, fault, is_unique_violation};
pub(crate) use result::{Completion, clean_error};

/// Results written by one statement, at most.
const MAX_BATCH: usize = 1000;

/// How many times a piece of a batch is tried again on a serialization
/// failure, deadlock or statement time-out before it is split; a single
/// result is tried again for as long as it takes, as through an outage.
const TRANSIENT_TRIES: u32 = 5;

/// The running completer task.
pub(super) struct Completer {
    task: JoinHandle<()>,
    /// Fired when no more results are to come.
    close: CancellationToken,
}

impl Completer {
    /// Starts writing the results `rx` receives; after each write, the
    /// producers are told through `rescans` (see [`Rescan::after_write`]).
    pub(super) fn spawn(
        tracker: &TaskTracker,
        pool: PgPool,
        worker_id: i64,
        config: Config,
        rx: mpsc::Receiver<Completion>,
        rescans: Vec<Arc<Rescan>>,
    ) -> Self {
        let close = CancellationToken::new();
        let task = tracker.spawn(run(pool, worker_id, config, rx, rescans, close.clone()));
        Completer { task, close }
    }

    /// Writes every result sent so far, then stops; call it once nothing
    /// sends results any more. Senders may still be alive (a service holding
    /// the worker's shared state), so the channel is closed rather than
    /// waited on to close. Past `within` (an outage), the task is aborted
    /// rather than left running detached, and this returns false: the jobs
    /// whose results were not written stay `running` until their lease
    /// expires.
    pub(super) async fn finish(mut self, within: Duration) -> bool {
        self.close.cancel();
        match tokio::time::timeout(within, &mut self.task).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "jobq completer failed");
                false
            }
            Err(_) => {
                self.task.abort();
                false
            }
        }
    }
}

/// Runs until every result is written and either every sender is gone or
/// `close` fired. After writing a retry or a snooze, it has every producer
/// of this worker claim again: the claim tells when that job is due, so it
/// starts on time rather than up to a poll interval late. After any write,
/// it wakes the producers a limit holds back.
async fn run(
    pool: PgPool,
    worker_id: i64,
    config: Config,
    mut rx: mpsc::Receiver<Completion>,
    rescans: Vec<Arc<Rescan>>,
    close: CancellationToken,
) {
    let mut writer = Writer {
        conn: HeldConn::new(pool),
        worker_id,
        outage: Outage::new("record results"),
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closed = false;
    loop {
        let first = tokio::select! {
            biased;
            first = rx.recv() => match first {
                Some(first) => first,
                None => break,
            },
            // Closed, the channel still yields what was sent before.
            _ = close.cancelled(), if !closed => {
                rx.close();
                closed = true;
                continue;
            }
        };
        batch.push(first.into_finish(&config));
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c.into_finish(&config)),
                Err(_) => break,
            }
        }
        let retried = batch
            .iter()
            .any(|f| matches!(f.state, JobState::Retryable | JobState::Scheduled));
        // Plain completions take a lighter statement; each part is written
        // (and split, when refused) on its own, so a part written is never
        // written again when the other is tried again.
        let (completed, others): (Vec<Finish>, Vec<Finish>) = batch
            .drain(..)
            .partition(|f| f.state == JobState::Completed);
        let mut refused = 0;
        for part in [completed, others] {
            refused += writer.write(&part).await;
        }
        rescans.iter().for_each(|r| r.after_write(retried));
        if refused > 0 {
            tracing::warn!(
                refused,
                "results refused: those jobs were rescued from this worker and belong to a newer attempt"
            );
        }
    }
}

/// The completer's connection and outage state.
struct Writer {
    conn: HeldConn,
    worker_id: i64,
    outage: Outage,
}

impl Writer {
    /// Writes `batch` (all completions, or none), through outages. A piece
    /// PostgreSQL refuses is split in halves, down to single results, each
    /// then settled by [`settle_refused`](Self::settle_refused). Returns how
    /// many results the fence refused (their job was rescued from this
    /// worker).
    async fn write(&mut self, batch: &[Finish]) -> u64 {
        let mut refused = 0;
        // The pieces left to write, the next one last.
        let mut pieces: Vec<Range<usize>> = Vec::with_capacity(16);
        pieces.push(0..batch.len());
        let mut transient = 0;
        while let Some(range) = pieces.last().cloned() {
            if range.is_empty() {
                pieces.pop();
                continue;
            }
            let piece = &batch[range.clone()];
            let conn = match self.conn.get().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Whatever it says, no result is to blame.
                    self.conn.discard();
                    tokio::time::sleep(self.outage.failed(&e)).await;
                    continue;
                }
            };
            let e = match bounded(store::finish_many(conn, self.worker_id, piece)).await {
                Ok(written) => {
                    self.outage.recovered();
                    transient = 0;
                    refused += piece.len() as u64 - written;
                    pieces.pop();
                    continue;
                }
                Err(e) => e,
            };
            match fault(&e) {
                Fault::Outage => {
                    self.conn.discard();
                    tokio::time::sleep(self.outage.failed(&e)).await;
                }
                Fault::Transient if transient < TRANSIENT_TRIES => {
                    transient += 1;
                    tracing::debug!(error = %e, "writing results failed for now; trying again");
                    let wait = Duration::from_millis(10 << transient);
                    tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64())).await;
                }
                Fault::Transient if piece.len() == 1 => {
                    // Its row is locked or its statement too slow, for long:
                    // not the result's fault, so it is not discarded.
                    tokio::time::sleep(self.outage.failed(&e)).await;
                }
                Fault::Transient | Fault::Data if piece.len() > 1 => {
                    transient = 0;
                    let mid = range.start + piece.len() / 2;
                    pieces.pop();
                    pieces.push(mid..range.end);
                    pieces.push(range.start..mid);
                }
                Fault::Transient | Fault::Data => {
                    transient = 0;
                    match self.settle_refused(&piece[0], &e).await {
                        Ok(written) => {
                            self.outage.recovered();
                            refused += 1 - written;
                            pieces.pop();
                        }
                        // Tried again from the start, the result first.
                        Err(e) => {
                            self.conn.discard();
                            tokio::time::sleep(self.outage.failed(&e)).await;
                        }
                    }
                }
            }
        }
        refused
    }

    /// Settles a result PostgreSQL refused with `refusal`: its job is
    /// discarded, never left `running` under this live worker (no rescuer
    /// would take it back). First with the reason, `could not record this
    /// attempt's result: <database message>`; when even that is refused, by
    /// a last write of constants only (see
    /// [`store::discard_unrecordable_minimal`]). Returns how many rows were
    /// written (0 when the fence refused it), or the error of a write that
    /// failed for a reason other than its data, to be tried again.
    async fn settle_refused(
        &mut self,
        finish: &Finish,
        refusal: &sqlx::Error,
    ) -> sqlx::Result<u64> {
        let message = match refusal.as_database_error() {
            Some(db) => db.message().to_owned(),
            None => refusal.to_string(),
        };
        tracing::error!(
            job.id = finish.id,
            state = %finish.state,
            error = %refusal,
            "PostgreSQL refused this job's result; discarding the job"
        );
        let reason = clean_error(format!("could not record this attempt's result: {message}"));
        let (id, attempt, worker_id) = (finish.id, finish.attempt, self.worker_id);
        let conn = self.conn.get().await?;
        let second = match bounded(store::discard_unrecordable(
            conn, worker_id, id, attempt, &reason,
        ))
        .await
        {
            Ok(written) => return Ok(written),
            Err(e) if fault(&e) != Fault::Data => return Err(e),
            Err(e) => e,
        };
        let release_key = is_unique_violation(refusal) || is_unique_violation(&second);
        match bounded(store::discard_unrecordable_minimal(
            conn,
            worker_id,
            id,
            attempt,
            release_key,
        ))
        .await
        {
            Ok(written) => Ok(written),
            Err(e) if fault(&e) != Fault::Data => Err(e),
            Err(e) => {
                // Only a trigger or rule of the user's can refuse a write of
                // constants. Nothing is left to try: the job stays `running`
                // until this worker stops and its lease expires.
                tracing::error!(
                    job.id = id,
                    error = %e,
                    "PostgreSQL refused even to discard this job; it stays running until this \
                     worker stops"
                );
                Ok(1)
            }
        }
    }
}
