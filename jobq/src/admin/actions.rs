//! Acting on jobs by id or by filter, in bounded batches.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::PgPool;

use super::JobFilter;
use crate::error::{Error, Result};
use crate::job::JobState;
use crate::store;

/// Jobs changed per transaction by default in [`apply`].
pub const DEFAULT_BATCH: usize = 1000;

/// The most jobs [`apply`] changes per transaction.
const MAX_BATCH: usize = 10_000;

/// What [`apply`] does to each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Runs a finished or failed job again, now (`completed`, `discarded`,
    /// `cancelled` or `retryable` → `available`). It keeps its history and
    /// gets one more attempt if it used them all. A job whose unique key
    /// another job holds now is left as it is.
    Retry,
    /// Cancels a job that has not finished: a waiting one (`pending`
    /// included) ends `cancelled`; a running one's worker is told to cancel
    /// it (see [`cancel`](crate::cancel)). Jobs that wait for a cancelled
    /// job are cancelled too, unless they take any outcome (then they run).
    Cancel,
    /// Deletes a job that is not running (cancel a running job first). Jobs
    /// that wait for a deleted job are cancelled, with an error entry
    /// saying it was deleted, unless they take any outcome (then they run).
    Delete,
    /// Runs a job that waits for its time now (`scheduled` or `retryable`
    /// → `available`). A `pending` job is left waiting for its
    /// dependencies: cancel or delete it to drop it.
    RunNow,
}

impl Action {
    /// Every action, in the order they are listed.
    pub const ALL: [Action; 4] = [
        Action::Retry,
        Action::Cancel,
        Action::Delete,
        Action::RunNow,
    ];

    /// `filter` narrowed to the states this action changes: the jobs it
    /// would touch. A filter without states gets all of them; one whose
    /// states the action changes none of gets none (it matches nothing).
    pub fn narrow(self, filter: &JobFilter) -> JobFilter {
        let mut narrowed = filter.clone();
        narrowed.states = if filter.states.is_empty() {
            self.changes().to_vec()
        } else {
            filter
                .states
                .iter()
                .copied()
                .filter(|s| self.changes().contains(s))
                .collect()
        };
        narrowed
    }

    /// The states of the jobs this action changes.
    pub fn changes(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            Action::Retry => &[Retryable, Completed, Discarded, Cancelled],
            Action::Cancel => &[Pending, Available, Scheduled, Running, Retryable],
            Action::Delete => &[
                Pending, Available, Scheduled, Retryable, Completed, Discarded, Cancelled,
            ],
            Action::RunNow => &[Scheduled, Retryable],
        }
    }

    /// The action's name: `retry`, `cancel`, `delete`, `run-now`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Delete => "delete",
            Action::RunNow => "run-now",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown action `{s}`; expected retry, cancel, delete or run-now")
            })
    }
}

/// Which jobs [`apply`] acts on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// These jobs.
    Ids(&'a [i64]),
    /// Every job matching the filter (which must not be empty: use a
    /// filter on every state to mean every job).
    Filter(&'a JobFilter),
}

/// How far [`apply`] got, after each batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Batches done, each its own transaction.
    pub batches: u64,
    /// Jobs looked at.
    pub examined: u64,
    /// Jobs changed.
    pub changed: u64,
    /// The most jobs one batch changed.
    pub largest_batch: u64,
}

/// A job [`apply`] was asked for by id and left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unchanged {
    /// The job.
    pub id: i64,
    /// Its state, which the action does not change (or a unique key another
    /// job holds kept it from being retried).
    pub state: JobState,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BulkOutcome {
    /// The totals.
    #[serde(flatten)]
    pub progress: Progress,
    /// Jobs looked at and left as they were (`examined - changed`).
    pub skipped: u64,
    /// With [`Target::Ids`]: the ids with no job.
    pub missing: Vec<i64>,
    /// With [`Target::Ids`]: the jobs left as they were.
    pub unchanged: Vec<Unchanged>,
}

/// Does `action` to the jobs of `target`, `batch` jobs per transaction (1 to
/// 10,000), so that no transaction holds many rows locked for long however
/// many jobs match; calls `progress` after each batch.
///
/// A filter is walked from the newest job to the oldest, once, over the
/// states the action changes ([`Action::changes`]): a job enqueued
/// meanwhile is not included, and a job changed meanwhile into a
/// state the action does not change is left as it is (each batch checks
/// again as it writes). Jobs made `available` wake the workers of their
/// queue at once. Stopped half-way (an error, the caller's future
/// dropped), the batches done stay done.
pub async fn apply(
    pool: &PgPool,
    action: Action,
    target: Target<'_>,
    batch: usize,
    mut progress: impl FnMut(&Progress),
) -> Result<BulkOutcome> {
    let batch = batch.clamp(1, MAX_BATCH);
    let mut out = BulkOutcome::default();
    let mut record = |out: &mut BulkOutcome, rows: &[store::ActedRow]| {
        let changed = rows.iter().filter(|r| r.changed).count() as u64;
        let p = &mut out.progress;
        p.batches += 1;
        p.examined += rows.len() as u64;
        p.changed += changed;
        p.largest_batch = p.largest_batch.max(changed);
        progress(p);
    };
    match target {
        Target::Ids(ids) => {
            for chunk in ids.chunks(batch) {
                let rows = store::act_on_ids(pool, action, chunk).await?;
                let by_id: HashMap<i64, &store::ActedRow> =
                    rows.iter().map(|r| (r.id, r)).collect();
                for id in chunk {
                    match by_id.get(id) {
                        None => out.missing.push(*id),
                        Some(r) if !r.changed => out.unchanged.push(Unchanged {
                            id: r.id,
                            state: r.state,
                        }),
                        Some(_) => {}
                    }
                }
                record(&mut out, &rows);
            }
            out.missing.dedup();
        }
        Target::Filter(filter) => {
            if filter.is_empty() {
                return Err(Error::Admin(
                    "a bulk action needs a filter; to act on every job, filter on every state"
                        .into(),
                ));
            }
            // Only the states the action changes are walked: a cancel by
            // kind reads the unfinished jobs (through their indexes), not
            // the finished history.
            let filter = action.narrow(filter);
            let range = store::filter_id_range(pool, &filter).await?;
            let mut before = None;
            while !filter.states.is_empty() {
                let rows =
                    store::act_on_filter(pool, action, &filter, range, before, batch).await?;
                let Some(last) = rows.iter().map(|r| r.id).min() else {
                    break;
                };
                before = Some(last);
                let full = rows.len() == batch;
                record(&mut out, &rows);
                if !full {
                    break;
                }
            }
        }
    }
    out.skipped = out.progress.examined - out.progress.changed;
    Ok(out)
}
