//! An attempt's result as the completer writes it: the job's next state, its
//! wait clamped, its error message cleaned.

use std::time::Duration;

use super::super::Config;
use crate::job::{JobState, Outcome};
use crate::store::{ErrorKind, Finish};

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
    /// The result that hands a claimed job back untouched: it never started
    /// (shutdown, a lost lease, too long in the buffer).
    pub(crate) fn handed_back(job: &crate::store::ClaimedJob) -> Self {
        Completion {
            id: job.id,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            outcome: None,
        }
    }

    pub(crate) fn into_finish(self, config: &Config) -> Finish {
        let mut finish = Finish {
            id: self.id,
            attempt: self.attempt,
            state: JobState::Completed,
            delay_ms: 0,
            error: None,
            error_kind: None,
            requeue: false,
            result: None,
        };
        let Some(outcome) = self.outcome else {
            finish.state = JobState::Available;
            finish.requeue = true;
            return finish;
        };
        match outcome {
            Outcome::Completed => {}
            Outcome::CompletedWith(result) => finish.result = Some(result),
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
                            let backoff = super::super::Backoff {
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
            backoff: crate::worker::Backoff {
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
}
