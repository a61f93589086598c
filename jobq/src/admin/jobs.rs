//! Finding jobs: filters, pages, one job in full, counts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::seconds;
use crate::error::Result;
use crate::job::JobState;
use crate::store;

/// How many jobs of an unknown kind [`Warning::UnknownKind`](super::Warning)
/// counts at most.
pub(crate) const UNKNOWN_KIND_CAP: i64 = 10_000;

/// Which jobs a list, a count or a bulk action is about. Every field left
/// empty matches every job; the fields set must all match.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobFilter {
    /// Jobs with one of these ids.
    pub ids: Vec<i64>,
    /// Jobs in one of these states.
    pub states: Vec<JobState>,
    /// Jobs in one of these queues.
    pub queues: Vec<String>,
    /// Jobs of one of these kinds (stored names).
    pub kinds: Vec<String>,
    /// Jobs whose arguments contain this JSON (PostgreSQL's `@>`):
    /// `{"user_id": 7}` matches every job with a `user_id` of 7, whatever
    /// its other arguments. Lists and counts read a window of the newest
    /// jobs for it, unless you created a GIN index on `args` (see
    /// [`list_jobs`]).
    pub args: Option<serde_json::Value>,
    /// Jobs enqueued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Jobs enqueued before this time.
    pub until: Option<DateTime<Utc>>,
}

impl JobFilter {
    /// Whether it matches every job.
    pub fn is_empty(&self) -> bool {
        *self == JobFilter::default()
    }
}

/// Where the next page of [`list_jobs`] starts: after the last job of this
/// one. Jobs come newest first (by id), so a page never repeats a job or
/// skips one that was there when the first page was read. Shown and parsed
/// as the id it continues after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(pub i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cursor {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        s.trim().parse().map(Cursor)
    }
}

impl Serialize for Cursor {
    /// As a string, so that JavaScript does not round a large id.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How many jobs a list or count reads at most for a filter no index
/// narrows (see [`list_jobs`]), by default: on a busy 2-core machine a
/// window of 100,000 jobs reads in well under 200 ms.
pub const SEARCH_WINDOW: i64 = 100_000;

/// A page of [`list_jobs`].
#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobSummary>,
    /// Where the next page starts, when there may be one.
    pub next: Option<Cursor>,
    /// When the page stopped at its search window before it was full: how
    /// many jobs it looked at (the newest below `after`). Older jobs may
    /// match too; `next` goes on from the oldest one looked at.
    pub searched: Option<i64>,
}

impl JobPage {
    /// For a first page (read without `after`) that is not full: how many
    /// jobs match, read off the page, as [`count_matching`] would count them
    /// (every match is on it, or every match among the jobs it searched), so
    /// a caller need not read them again. `None` when more may follow.
    pub fn first_page_count(&self) -> Option<Count> {
        let n = self.jobs.len() as i64;
        match (self.searched, self.next) {
            (Some(searched), _) => Some(Count {
                count: n,
                exact: false,
                searched: Some(searched),
            }),
            (None, None) => Some(Count::exactly(n)),
            (None, Some(_)) => None,
        }
    }
}

/// One job in a list: everything but its full arguments and history.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    /// The job's id.
    pub id: i64,
    /// Its kind (stored name).
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Its state.
    pub state: JobState,
    /// Its priority; lower runs first.
    pub priority: i16,
    /// Attempts started so far.
    pub attempt: i32,
    /// Attempts it may use in all.
    pub max_attempts: i32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it may run (next).
    pub scheduled_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finalized_at: Option<DateTime<Utc>>,
    /// The worker that ran (or runs) its latest attempt.
    pub attempted_by: Option<i64>,
    /// Its arguments as JSON text, cut to 200 characters.
    pub args_preview: String,
    /// Its latest error, cut to 200 characters.
    pub last_error: Option<String>,
}

/// One job in full: [`job`].
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    /// What a list shows of it.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Its metadata.
    pub metadata: serde_json::Value,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// When its cancellation was asked.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Attempts lost with their worker (killed, cut off), apart from its own.
    pub lost_attempts: i32,
    /// Its attempts, oldest first: the failed ones from its error history
    /// (the first and the last 20 are kept), then the latest if it did not
    /// fail.
    pub attempts: Vec<Attempt>,
    /// What happened to it, in order.
    pub timeline: Vec<Event>,
    /// The jobs it was enqueued after (`.after(..)`, a workflow's steps),
    /// in id order, each as it is now.
    pub dependencies: Vec<LinkedJob>,
    /// The jobs enqueued after it, in id order: the first
    /// [`MAX_DEPENDENTS`].
    pub dependents: Vec<LinkedJob>,
}

/// The most dependents [`job`] lists.
pub const MAX_DEPENDENTS: i64 = 100;

/// A job's dependency or dependent, in [`JobDetail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkedJob {
    /// Its id.
    pub id: i64,
    /// Its kind; `None` when it no longer exists (pruned or deleted).
    pub kind: Option<String>,
    /// Its state; `None` when it no longer exists.
    pub state: Option<JobState>,
}

/// One attempt of a job, in [`JobDetail::attempts`].
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Its number, from 1.
    pub attempt: i32,
    /// How it ended: `running` (not yet), `completed`, or the kind of its
    /// error (`error`, `panic`, `timeout`, `decode`, `discard`,
    /// `cancelled`, `shutdown`, `lost`, `unrecordable`).
    pub outcome: String,
    /// When it started, when known.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// How long it ran, when both ends are known.
    #[serde(rename = "duration_seconds", with = "seconds::option")]
    pub duration: Option<Duration>,
    /// The worker that ran it, when known.
    pub worker: Option<i64>,
    /// Its error.
    pub error: Option<String>,
}

/// One moment in [`JobDetail::timeline`].
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When.
    pub at: DateTime<Utc>,
    /// What: `enqueued`, `due`, `attempt 2 started`, `attempt 2 failed
    /// (timeout)`, `cancel requested`, `completed`...
    pub what: String,
}

/// A page of jobs matching `filter`, newest first: `limit` of them (1 to
/// 1,000) after `after` (the previous page's [`JobPage::next`]).
///
/// A filter on ids, or on unfinished states only, is read through its
/// index, however far back its matches lie; so is a filter on arguments
/// when you have created a GIN index on them (`CREATE INDEX CONCURRENTLY
/// ON jobq_jobs USING gin (args jsonb_path_ops)`: jobq does not, since
/// every enqueue, claim and completion would write to it). Any other (finished states,
/// queues, kinds, arguments, a time range) walks the jobs newest first
/// and stops when the page is full or after `window` jobs
/// ([`SEARCH_WINDOW`] is a good default), so that a rare match costs a
/// bounded read rather than the whole table; [`JobPage::searched`] then
/// says how far it looked, and `next` goes on from there. A time range is
/// turned into the ids it covers first (ids grow with enqueue time), so
/// `since` and `until` narrow the walk to their part of the table.
pub async fn list_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    after: Option<Cursor>,
    limit: i64,
    window: i64,
) -> Result<JobPage> {
    let limit = limit.clamp(1, 1000);
    let rows = store::list_jobs(pool, filter, after.map(|c| c.0), limit, window).await?;
    let jobs = rows.jobs;
    let (next, searched) = match rows.stopped {
        Some((seen, oldest)) => (Some(Cursor(oldest)), Some(seen)),
        None if jobs.len() as i64 == limit => (jobs.last().map(|j| Cursor(j.id)), None),
        None => (None, None),
    };
    Ok(JobPage {
        jobs,
        next,
        searched,
    })
}

/// Job `id` in full, or `None` when there is none (never enqueued, or
/// pruned).
pub async fn job(pool: &PgPool, id: i64) -> Result<Option<JobDetail>> {
    let Some(row) = store::job_detail(pool, id).await? else {
        return Ok(None);
    };
    let s = &row.summary;
    let mut attempts: Vec<Attempt> = row
        .errors
        .iter()
        .map(|e| Attempt {
            attempt: e.attempt,
            outcome: e.kind.clone().unwrap_or_else(|| "error".into()),
            started_at: e.started_at,
            ended_at: e.at,
            duration: e.started_at.zip(e.at).map(|(s, a)| super::age(a, s)),
            worker: e.worker,
            error: e.error.clone(),
        })
        .collect();
    let latest_failed = attempts.last().map(|a| a.attempt) == Some(s.attempt);
    if s.attempt > 0 && !latest_failed {
        let ended_at = match s.state {
            JobState::Running => None,
            _ => s.finalized_at,
        };
        let outcome = match s.state {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Discarded => "discarded",
            // Put back without an error: interrupted by a shutdown or lost
            // in a buffer, or retried by hand.
            _ => "interrupted",
        };
        attempts.push(Attempt {
            attempt: s.attempt,
            outcome: outcome.into(),
            started_at: s.attempted_at,
            ended_at,
            duration: s.attempted_at.zip(ended_at).map(|(a, e)| super::age(e, a)),
            worker: s.attempted_by,
            error: None,
        });
    }
    let mut timeline = vec![Event {
        at: s.created_at,
        what: "enqueued".into(),
    }];
    if s.scheduled_at > s.created_at && s.attempt == 0 {
        timeline.push(Event {
            at: s.scheduled_at,
            what: "due".into(),
        });
    }
    for a in &attempts {
        if let Some(at) = a.started_at {
            timeline.push(Event {
                at,
                what: format!("attempt {} started", a.attempt),
            });
        }
        if let Some(at) = a.ended_at
            && a.error.is_some()
        {
            timeline.push(Event {
                at,
                what: format!("attempt {} failed ({})", a.attempt, a.outcome),
            });
        }
    }
    if let Some(at) = row.cancel_requested_at {
        timeline.push(Event {
            at,
            what: "cancel requested".into(),
        });
    }
    if matches!(s.state, JobState::Retryable | JobState::Scheduled) && s.attempt > 0 {
        timeline.push(Event {
            at: s.scheduled_at,
            what: "next attempt due".into(),
        });
    }
    if let Some(at) = s.finalized_at {
        timeline.push(Event {
            at,
            what: s.state.to_string(),
        });
    }
    // Enqueued first: a worker's clock, which stamps an attempt's start,
    // may run a little behind the database's.
    timeline[1..].sort_by_key(|e| e.at);
    let (mut dependencies, mut dependents) = (Vec::new(), Vec::new());
    for link in store::job_links(pool, id, MAX_DEPENDENTS).await? {
        let linked = LinkedJob {
            id: link.id,
            kind: link.kind,
            state: link.state,
        };
        if link.dependency {
            dependencies.push(linked);
        } else {
            dependents.push(linked);
        }
    }
    Ok(Some(JobDetail {
        summary: row.summary,
        args: row.args,
        metadata: row.metadata,
        tags: row.tags,
        unique_key: row.unique_key,
        cancel_requested_at: row.cancel_requested_at,
        lost_attempts: row.lost_attempts,
        attempts,
        timeline,
        dependencies,
        dependents,
    }))
}

/// How many jobs match `filter`, per state (states with none are absent):
/// what a bulk action would look at. Exact, so it reads every match: on a
/// big table with a broad filter, prefer [`count_matching`].
pub async fn count_by_state(pool: &PgPool, filter: &JobFilter) -> Result<BTreeMap<JobState, i64>> {
    Ok(store::count_by_state(pool, filter).await?)
}

/// A count that is exact up to a cap, estimated past it, or taken over the
/// newest jobs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The count, or the estimate.
    pub count: i64,
    /// Whether `count` is exact (else PostgreSQL's estimate, at least the
    /// cap, or a count over the newest `searched` jobs only).
    pub exact: bool,
    /// When set, `count` is how many of the newest `searched` jobs match:
    /// older ones were not read (see [`count_matching`]).
    pub searched: Option<i64>,
}

impl Count {
    /// An exact count.
    pub fn exactly(count: i64) -> Count {
        Count {
            count,
            exact: true,
            searched: None,
        }
    }
}

impl std::fmt::Display for Count {
    /// `1,234`, `about 2,500,000 (estimated)`, or `12 among the newest
    /// 100,000 jobs`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = super::format_count(self.count);
        match (self.exact, self.searched) {
            (true, _) => f.write_str(&n),
            (false, Some(searched)) => write!(
                f,
                "{n} among the newest {} jobs",
                super::format_count(searched)
            ),
            (false, None) => write!(f, "about {n} (estimated)"),
        }
    }
}

/// How many jobs match `filter`: exactly when at most `cap`, else the
/// planner's estimate (never below `cap + 1`), so that a count over
/// millions of rows costs no more than reading `cap` of them. A filter that
/// no index narrows (see [`list_jobs`]) is counted over the newest `window`
/// jobs only: when fewer than `cap` of them match and older jobs exist, the
/// count says so ([`Count::searched`]) rather than read the whole table.
pub async fn count_matching(
    pool: &PgPool,
    filter: &JobFilter,
    cap: i64,
    window: i64,
) -> Result<Count> {
    let cap = cap.max(0);
    let (n, partial) = store::count_capped(pool, filter, cap, window).await?;
    if n <= cap {
        return Ok(Count {
            count: n,
            exact: partial.is_none(),
            searched: partial,
        });
    }
    let estimate = store::estimate_matching(pool, filter).await?;
    Ok(Count {
        count: estimate.max(cap + 1),
        exact: false,
        searched: None,
    })
}
