//! Queue names, queue control (pause, resume) and statistics.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::job::JobState;
use crate::store;

/// A queue name, checked once where it enters jobq: 1 to 63 characters from
/// `a-z A-Z 0-9 _ - .`, the rule `#[job]` checks at compile time
/// (`jobq_rules::check_queue_name`, which says the same words).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct QueueName(String);

impl QueueName {
    /// `name`, if it is a valid queue name.
    pub(crate) fn new(name: impl Into<String>) -> std::result::Result<Self, InvalidQueueName> {
        let name = name.into();
        jobq_rules::check_queue_name(&name)?;
        Ok(QueueName(name))
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) use jobq_rules::InvalidQueueName;

/// Pauses `queue` across every worker: they stop claiming its jobs within one
/// claim (the claim itself checks), while enqueues go on being accepted.
/// Running jobs finish normally.
pub fn pause_queue<'c, A>(db: A, queue: &str) -> impl Future<Output = Result<()>> + Send + 'c
where
    A: Db<'c>,
{
    set_paused(db, queue.to_owned(), true)
}

/// Resumes a paused queue; workers hear of it at once (NOTIFY).
pub fn resume_queue<'c, A>(db: A, queue: &str) -> impl Future<Output = Result<()>> + Send + 'c
where
    A: Db<'c>,
{
    set_paused(db, queue.to_owned(), false)
}

fn set_paused<'c, A>(
    db: A,
    queue: String,
    paused: bool,
) -> impl Future<Output = Result<()>> + Send + 'c
where
    A: Db<'c>,
{
    async move {
        let queue = QueueName::new(queue).map_err(|e| Error::Queue(e.to_string()))?;
        let mut conn = db.acquire().await?;
        store::set_paused(&mut conn, &queue, paused).await?;
        Ok(())
    }
}

/// One queue's figures in [`Stats`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    /// Whether the queue is paused.
    pub paused: bool,
    /// Jobs per state; states with no job are absent.
    pub counts: BTreeMap<JobState, i64>,
    /// How long the oldest due, unclaimed job has been waiting past its due
    /// time (`None` when no job is waiting).
    pub oldest_available_age: Option<Duration>,
}

impl QueueStats {
    /// Jobs in `state`.
    pub fn count(&self, state: JobState) -> i64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }
}

/// Job counts per queue and state, from [`stats`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// By queue name: every queue that holds a job or was ever paused.
    pub queues: BTreeMap<String, QueueStats>,
}

/// Counts jobs per queue and state, with each queue's pause flag and the age
/// of its oldest waiting job. One statement; it reads the whole jobs table, so
/// call it for dashboards and alerts, not per request.
pub async fn stats(pool: &PgPool) -> Result<Stats> {
    let mut stats = Stats::default();
    for row in store::stats(pool).await? {
        let q = stats.queues.entry(row.queue).or_default();
        q.paused = row.paused;
        if let Some(state) = row.state {
            q.counts.insert(state, row.count);
        }
        if let Some(due) = row.oldest_due {
            let age = (row.now - due).to_std().unwrap_or(Duration::ZERO);
            q.oldest_available_age = Some(q.oldest_available_age.map_or(age, |a| a.max(age)));
        }
    }
    Ok(stats)
}
