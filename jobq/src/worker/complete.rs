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
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Config;
use super::conn::{HeldConn, bounded};
use crate::job::{JobState, Outcome};
use crate::service::Outage;
use crate::store::{self, ErrorKind, Finish};

/// Results written by one statement, at most.
const MAX_BATCH: usize = 1000;

/// The longest wait before a job runs again that jobq writes: 100 years
/// (36,525 days). A snooze, a `retry_at` or a backoff asking for longer is
/// cut to it, well within what PostgreSQL's `timestamptz` and `interval`
/// hold (a snooze of `Duration::MAX` would overflow both).
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(36_525 * 24 * 3600);

/// [`MAX_DELAY`] in milliseconds, as results carry it.
const MAX_DELAY_MS: i64 = MAX_DELAY.as_millis() as i64;

/// The longest error message written to a job's `errors`, in bytes. A longer
/// one keeps its beginning and ends with a note of how much was cut.
pub(crate) const MAX_ERROR_BYTES: usize = 8 * 1024;

/// How many times a piece of a batch is tried again on a serialization
/// failure, deadlock or statement time-out before it is split; a single
/// result is tried again for as long as it takes, as through an outage.
const TRANSIENT_TRIES: u32 = 5;

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
            state: JobState::Completed,
            delay_ms: 0,
            error: None,
            error_kind: None,
            requeue: false,
        };
        let Some(outcome) = self.outcome else {
            finish.state = JobState::Available;
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
                finish.error_kind = Some(ErrorKind::from_outcome(kind));
                if self.attempt >= self.max_attempts {
                    finish.state = JobState::Discarded;
                } else {
                    finish.state = JobState::Retryable;
                    finish.delay_ms = match retry_at {
                        Some(at) => (at - chrono::Utc::now()).num_milliseconds(),
                        None => {
                            // Clamped before the jitter, which could not
                            // scale a wait near `Duration::MAX`.
                            let backoff = super::Backoff {
                                base: config.backoff.base.min(MAX_DELAY),
                                max: config.backoff.max.min(MAX_DELAY),
                            };
                            millis(backoff.delay(self.attempt))
                        }
                    };
                }
            }
            Outcome::Discard { error, kind } => {
                finish.state = JobState::Discarded;
                finish.error = Some(error);
                finish.error_kind = Some(ErrorKind::from_outcome(kind));
            }
            Outcome::Snooze(delay) => {
                finish.state = JobState::Scheduled;
                finish.requeue = true;
                finish.delay_ms = millis(delay);
            }
            Outcome::Cancelled => {
                finish.state = JobState::Cancelled;
                finish.error = Some("cancelled on request".to_owned());
                finish.error_kind = Some(ErrorKind::Cancelled);
            }
            Outcome::Interrupted => {
                finish.state = JobState::Available;
                finish.requeue = true;
                finish.error = Some("interrupted: the worker shut down".to_owned());
                finish.error_kind = Some(ErrorKind::Shutdown);
            }
        }
        finish.delay_ms = finish.delay_ms.clamp(0, MAX_DELAY_MS);
        finish.error = finish.error.map(clean_error);
        finish
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An error message as it is written to a job's `errors`: each NUL byte,
/// which PostgreSQL's `text` and `jsonb` refuse, written as the two
/// characters `\0`; and at most [`MAX_ERROR_BYTES`], a longer one cut at a
/// character boundary and ended with `… [N bytes cut]`. (Every other
/// character of a Rust string is valid UTF-8, which PostgreSQL takes.)
pub(crate) fn clean_error(mut error: String) -> String {
    if error.contains('\0') {
        error = error.replace('\0', "\\0");
    }
    if error.len() > MAX_ERROR_BYTES {
        // Room for the note: "… [" + up to 20 digits + " bytes cut]".
        let mut keep = MAX_ERROR_BYTES - 40;
        while !error.is_char_boundary(keep) {
            keep -= 1;
        }
        let cut = error.len() - keep;
        error.truncate(keep);
        error.push_str(&format!("… [{cut} bytes cut]"));
    }
    error
}

/// What an error of a result write says, and so what the completer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The connection is gone or unusable, or the statement cannot run at
    /// all (an outage): the same results are tried again, on a new
    /// connection, with the outage's backoff.
    ///
    /// Beside connection errors (I/O, TLS, pool time-out or closed,
    /// SQLSTATE class 08, 57P01-57P03 shutdowns, 53300 too many
    /// connections), this takes the errors no one result causes and every
    /// result would meet alike: a missing function or table or privilege
    /// (class 42, say a schema older than this jobq), insufficient resources
    /// (53), system and internal errors (58, XX), authentication (28) and a
    /// missing database (3D). Discarding result by result would discard
    /// every one of them.
    Outage,
    /// A serialization failure (40001), deadlock (40P01), statement time-out
    /// or cancel (57014) or lock time-out (55P03): the same results are
    /// tried again on the same connection, a few times before the piece is
    /// split.
    Transient,
    /// PostgreSQL refused the data (classes 22, 23, 54, any other database
    /// error), or sqlx could not encode it: some result of the piece is to
    /// blame, and splitting finds it.
    Data,
}

fn fault(e: &sqlx::Error) -> Fault {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => Fault::Outage,
        // A message sqlx did not expect: the connection's state is unknown.
        E::Protocol(_) => Fault::Outage,
        E::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            match code {
                "40001" | "40P01" | "57014" | "55P03" => Fault::Transient,
                "57P01" | "57P02" | "57P03" | "53300" => Fault::Outage,
                _ if ["08", "42", "53", "58", "XX", "28", "3D"]
                    .iter()
                    .any(|class| code.starts_with(class)) =>
                {
                    Fault::Outage
                }
                _ => Fault::Data,
            }
        }
        _ => Fault::Data,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

/// The running completer task.
pub(super) struct Completer {
    task: JoinHandle<()>,
    /// Fired when no more results are to come.
    close: CancellationToken,
}

impl Completer {
    /// Starts writing the results `rx` receives.
    pub(super) fn spawn(
        tracker: &TaskTracker,
        pool: PgPool,
        worker_id: i64,
        config: Config,
        rx: mpsc::Receiver<Completion>,
        rescans: Vec<Arc<Notify>>,
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
/// starts on time rather than up to a poll interval late.
async fn run(
    pool: PgPool,
    worker_id: i64,
    config: Config,
    mut rx: mpsc::Receiver<Completion>,
    rescans: Vec<Arc<Notify>>,
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
        let rescan = batch
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
        if rescan {
            rescans.iter().for_each(|r| r.notify_one());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_loses_its_nul_bytes_and_is_cut_to_8_kib() {
        assert_eq!(clean_error("a\0b".into()), "a\\0b");
        assert_eq!(clean_error("short".into()), "short");
        let long = clean_error("é".repeat(10 * 1024 * 1024));
        assert!(long.len() <= MAX_ERROR_BYTES, "{}", long.len());
        assert!(long.starts_with("éé"));
        let kept = long.len() - long.rsplit_once('…').unwrap().1.len() - '…'.len_utf8();
        assert!(
            long.ends_with(&format!("[{} bytes cut]", 20 * 1024 * 1024 - kept)),
            "{}",
            &long[long.len() - 40..]
        );
    }

    #[test]
    fn waits_are_clamped_to_100_years() {
        let config = Config {
            backoff: super::super::Backoff {
                base: Duration::MAX,
                max: Duration::MAX,
            },
            ..Config::default()
        };
        let done = |outcome| {
            Completion {
                id: 1,
                attempt: 1,
                max_attempts: 2,
                outcome: Some(outcome),
            }
            .into_finish(&config)
        };
        assert_eq!(done(Outcome::Snooze(Duration::MAX)).delay_ms, MAX_DELAY_MS);
        assert!(done(Outcome::failed("x", "error")).delay_ms <= MAX_DELAY_MS);
        let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
        let past = chrono::DateTime::<chrono::Utc>::MIN_UTC;
        for (at, ms) in [(far, MAX_DELAY_MS), (past, 0)] {
            let f = done(Outcome::Failed {
                error: "x".into(),
                kind: "error",
                retry_at: Some(at),
            });
            assert_eq!(f.delay_ms, ms);
        }
    }

    #[test]
    fn connection_errors_are_outages_and_refused_data_is_not() {
        let io = sqlx::Error::Io(std::io::Error::other("gone"));
        assert_eq!(fault(&io), Fault::Outage);
        assert_eq!(fault(&sqlx::Error::PoolTimedOut), Fault::Outage);
        assert_eq!(fault(&sqlx::Error::RowNotFound), Fault::Data);
    }
}
