//! Inserting jobs, inside the caller's transaction when given one.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Acquire, Postgres};

use crate::error::{Error, Result};
use tracing::Instrument;

use crate::job::{Job, JobId, JobState};
use crate::metrics;
use crate::queue::QueueName;
use crate::store::{self, NewJob, Unique};
use crate::workflow::{Dependency, Planned, insert_planned};

/// Inserts one job of type `J` through `db`: a `&PgPool`, a `&mut PgConnection`
/// or a `&mut Transaction<Postgres>`. In a transaction the job exists, and
/// workers hear of it, only once the transaction commits.
///
/// `#[job]` generates `my_job::enqueue(db, args)`, which calls this.
///
/// The returned future is `Send`, so it can be awaited in a spawned task or a
/// web handler. (A plain `async fn` generic over `Acquire` would not be.)
pub fn enqueue<'c, J: Job, A>(
    db: A,
    args: J::Args,
) -> impl Future<Output = Result<JobId>> + Send + 'c
where
    A: Acquire<'c, Database = Postgres> + Send + 'c,
{
    Enqueue::<J>::new(args).enqueue(db)
}

/// Inserts many jobs of type `J` with one statement, whatever their number.
/// Returns their ids in input order. For a `#[job(unique = "args")]` job,
/// arguments whose key an unfinished job already holds, or that repeat
/// earlier arguments of the batch, insert nothing and give that job's id.
///
/// Like a transaction that enqueues several unique jobs, a unique batch
/// holds the keys it has inserted until it ends, and waits for a key that
/// an uncommitted transaction holds. Batches take their keys in sorted
/// order, so two batches never deadlock each other; a transaction that
/// takes the same keys in another order can, and PostgreSQL then aborts one
/// of the two. Through a pool or a plain connection, a batch so aborted is
/// retried one job at a time, each its own commit; inside a transaction, the
/// error is returned.
///
/// The arguments are serialized before the future is returned, so the
/// iterator need not be `Send`.
pub fn enqueue_many<'c, J: Job, A, I>(
    db: A,
    args: I,
) -> impl Future<Output = Result<Vec<JobId>>> + Send + 'c
where
    A: Acquire<'c, Database = Postgres> + Send + 'c,
    I: IntoIterator<Item = J::Args>,
{
    let def = &J::DEF;
    let prepared = if def.unique_by_args {
        // One clock reading for the batch: equal arguments fall in one
        // window even when the batch straddles two.
        let now = Utc::now();
        args.into_iter()
            .map(|a| {
                let (job, unique) = Enqueue::<J>::new(a).prepare_at(now)?;
                let unique = unique.expect("a unique-by-args job always has a key");
                Ok((job, unique))
            })
            .collect::<Result<Vec<_>>>()
            .map(Many::Unique)
    } else {
        args.into_iter()
            .map(|a| {
                serde_json::to_string(&a).map_err(|source| Error::Serialize {
                    job: def.name,
                    source,
                })
            })
            .collect::<Result<Vec<_>>>()
            .and_then(|args| Ok(Many::Batch(queue_name::<J>(def.queue)?, args)))
    };
    async move {
        let prepared = prepared?;
        let (queue, n) = match &prepared {
            Many::Unique(jobs) => (jobs.first().map(|(j, _)| j.queue.as_str()), jobs.len()),
            Many::Batch(queue, args) => (Some(queue.as_str()), args.len()),
        };
        let span = enqueue_span(def.name, queue.unwrap_or(def.queue), n);
        let inserted = async {
            let mut conn = db.acquire().await?;
            match prepared {
                #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
                Many::Unique(mut jobs) => {
                    #[cfg(feature = "opentelemetry")]
                    {
                        let trace = crate::trace::context_of(&tracing::Span::current());
                        jobs.iter_mut()
                            .for_each(|(j, _)| j.trace.clone_from(&trace));
                    }
                    let (ids, inserted) = store::insert_unique_many(&mut conn, &jobs).await?;
                    if let Some((first, _)) = jobs.first() {
                        metrics::enqueued(def.name, first.queue.as_str(), inserted);
                    }
                    Ok(ids.into_iter().map(JobId).collect())
                }
                Many::Batch(queue, args) => {
                    let batch = store::NewBatch {
                        kind: def.name,
                        limits: def.limits,
                        queue: &queue,
                        priority: def.priority,
                        max_attempts: def.max_attempts,
                        args,
                        #[cfg(feature = "opentelemetry")]
                        trace: crate::trace::context_of(&tracing::Span::current()),
                    };
                    let ids = store::insert_many(&mut conn, &batch).await?;
                    metrics::enqueued(def.name, queue.as_str(), ids.len() as u64);
                    Ok(ids.into_iter().map(JobId).collect())
                }
            }
        };
        inserted.instrument(span).await
    }
}

/// The span of one enqueue: `jobq.enqueue`, with the job's kind, its queue
/// and how many jobs it inserts. With the `opentelemetry` feature, the jobs
/// store its context, and their runs link to it.
fn enqueue_span(kind: &'static str, queue: &str, jobs: usize) -> tracing::Span {
    tracing::info_span!(
        "jobq.enqueue",
        kind,
        queue,
        jobs,
        id = tracing::field::Empty
    )
}

/// One job ready to insert: on its own, or with the jobs it waits for.
enum Prepared {
    Plain((NewJob, Option<Unique>)),
    Waiting(Planned),
}

/// The jobs of one `enqueue_many` call, ready to insert.
enum Many {
    /// Unique jobs, each with its key: one statement for all too, though
    /// a job whose key changes hands meanwhile is settled on its own.
    Unique(Vec<(NewJob, Unique)>),
    /// Every other kind: the queue and the serialized arguments, one
    /// statement for all.
    Batch(QueueName, Vec<String>),
}

/// `queue` checked as job `J`'s queue.
fn queue_name<J: Job>(queue: impl Into<String>) -> Result<QueueName> {
    QueueName::new(queue).map_err(|e| Error::Enqueue(format!("job `{}`: {e}", J::DEF.name)))
}

/// What an enqueue did: the job's id, and whether an unfinished job with the
/// same unique key already existed (then `id` is that job's, and nothing was
/// inserted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// The new job's id, or the existing duplicate's.
    pub id: JobId,
    /// Whether the job was a duplicate of an existing one.
    pub duplicate: bool,
}

/// Inserts one job, counts it (unless it was a duplicate), and records its
/// id in the current span (the enqueue's).
async fn insert(
    conn: &mut sqlx::PgConnection,
    job: &NewJob,
    unique: Option<&Unique>,
) -> Result<Inserted> {
    let inserted = match unique {
        None => Inserted {
            id: JobId(store::insert_one(conn, job).await?),
            duplicate: false,
        },
        Some(u) => {
            let (id, duplicate) = store::insert_unique(conn, job, u).await?;
            Inserted {
                id: JobId(id),
                duplicate,
            }
        }
    };
    if !inserted.duplicate {
        metrics::enqueued(job.kind, job.queue.as_str(), 1);
    }
    tracing::Span::current().record("id", inserted.id.0);
    Ok(inserted)
}

/// PostgreSQL's earliest `timestamptz`: 4714-11-24 BC (year -4713 counted
/// as chrono does, with a year 0), midnight UTC.
fn earliest_timestamp() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(-4713, 11, 24)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid date")
        .and_utc()
}

/// One job about to be enqueued, with options that override the job's
/// defaults. Start it with `my_job::builder(args)`:
///
/// ```no_run
/// # #[jobq::job(queue = "email")]
/// # async fn send_email(to: String) -> Result<(), std::io::Error> { Ok(()) }
/// # fn main() {}
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), jobq::Error> {
/// let mut tx = pool.begin().await?;
/// send_email::builder(send_email::Args { to: "a@example.com".into() })
///     .delay(std::time::Duration::from_secs(60))
///     .priority(-1)
///     .enqueue(&mut *tx)
///     .await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[must_use = "an Enqueue does nothing until `.enqueue(db)` is awaited"]
pub struct Enqueue<J: Job> {
    args: J::Args,
    queue: Option<String>,
    priority: Option<i16>,
    max_attempts: Option<i32>,
    run_at: Option<DateTime<Utc>>,
    delay: Option<Duration>,
    unique_key: Option<String>,
    unique_for: Option<Duration>,
    unique_states: Option<Vec<JobState>>,
    /// Jobs this one waits for, each with whether it runs whatever their
    /// outcome.
    deps: Vec<(Dependency, bool)>,
    _job: PhantomData<fn() -> J>,
}

impl<J: Job> Enqueue<J> {
    /// An enqueue of `args` with the job's defaults.
    pub fn new(args: J::Args) -> Self {
        Enqueue {
            args,
            queue: None,
            priority: None,
            max_attempts: None,
            run_at: None,
            delay: None,
            unique_key: None,
            unique_for: None,
            unique_states: None,
            deps: Vec::new(),
            _job: PhantomData,
        }
    }

    /// Puts the job in `queue` instead of the job's default queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the priority; lower runs first within a queue.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets how many attempts the job gets in all (at least 1).
    pub fn max_attempts(mut self, attempts: i32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Runs the job no earlier than `at`. A time before 4714 BC, which
    /// PostgreSQL cannot store, makes the enqueue fail with
    /// [`Error::Enqueue`].
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Runs the job no earlier than `delay` from now (measured on this
    /// machine's clock). A delay that ends past the year 262142 makes the
    /// enqueue fail with [`Error::Enqueue`].
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Makes the job unique under `key`: while a job of this type with the
    /// same key is in one of the unique states (by default, not yet
    /// finished), enqueueing returns that job instead of inserting another.
    /// `#[job(unique = "args")]` does the same with the arguments as key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Keeps the unique key within windows of `window` (aligned to the Unix
    /// epoch): a job with the same key in an earlier window is no duplicate.
    /// With finished states among [`unique_states`](Self::unique_states) (at
    /// most once per window, whatever happens), the job is kept until an
    /// hour after its window ended, then pruned like any finished job.
    pub fn unique_for(mut self, window: Duration) -> Self {
        self.unique_for = Some(window);
        self
    }

    /// The states in which the unique key holds (default
    /// [`JobState::UNFINISHED`]); [`JobState::ALL`] for "at most once, ever".
    /// They must include every unfinished state (enqueue fails otherwise):
    /// only finished states may be added.
    pub fn unique_states(mut self, states: &[JobState]) -> Self {
        self.unique_states = Some(states.to_vec());
        self
    }

    /// Runs the job only once every job of `deps` has completed: until
    /// then it waits in the state `pending`. Each is a [`JobId`] (of a job
    /// enqueued in the same transaction or earlier) or, for a job added to
    /// a [`Workflow`](crate::Workflow), a [`Step`](crate::Step) of that
    /// workflow. When one ends discarded or cancelled, this job is
    /// cancelled, with an error entry naming it. A dependency that has
    /// already completed counts at once; one that has already failed
    /// cancels the job at once. Calls add up.
    ///
    /// The enqueue locks the rows of the unfinished dependencies until its
    /// transaction ends, so that none ends unheard: inside a long
    /// transaction, the write of their results waits for it. A job with
    /// dependencies cannot have a unique key.
    pub fn after<D: Into<Dependency> + Copy>(mut self, deps: &[D]) -> Self {
        self.deps.extend(deps.iter().map(|&d| (d.into(), false)));
        self
    }

    /// Like [`after`](Self::after), but the job runs once each of `deps` has
    /// finished, whatever its outcome (completed, discarded or cancelled).
    pub fn after_any_outcome<D: Into<Dependency> + Copy>(mut self, deps: &[D]) -> Self {
        self.deps.extend(deps.iter().map(|&d| (d.into(), true)));
        self
    }

    /// The row to insert, and its unique key if it has one.
    fn prepare(self) -> Result<(NewJob, Option<Unique>)> {
        self.prepare_at(Utc::now())
    }

    /// [`prepare`](Self::prepare), and the dependencies.
    #[allow(clippy::type_complexity)]
    pub(crate) fn prepare_with_deps(
        mut self,
    ) -> Result<(Vec<(Dependency, bool)>, NewJob, Option<Unique>)> {
        let deps = std::mem::take(&mut self.deps);
        let (job, unique) = self.prepare()?;
        Ok((deps, job, unique))
    }

    /// [`prepare`](Self::prepare) with the clock read at `now`: a delay and
    /// a unique key's window count from it.
    fn prepare_at(self, now: DateTime<Utc>) -> Result<(NewJob, Option<Unique>)> {
        let def = &J::DEF;
        let args = serde_json::to_string(&self.args).map_err(|source| Error::Serialize {
            job: def.name,
            source,
        })?;
        let queue = queue_name::<J>(self.queue.unwrap_or_else(|| def.queue.to_owned()))?;
        let max_attempts = self.max_attempts.unwrap_or(def.max_attempts);
        if max_attempts < 1 {
            return Err(Error::Enqueue(format!(
                "max_attempts must be at least 1, got {max_attempts} for job `{}`",
                def.name
            )));
        }
        let run_at = match (self.run_at, self.delay) {
            (Some(at), _) => Some(at),
            (None, Some(d)) => Some(
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| {
                        Error::Enqueue(format!(
                            "job `{}`: delay {d:?} is too long: it ends past the year 262142",
                            def.name
                        ))
                    })?,
            ),
            (None, None) => None,
        };
        // A chrono time is never past PostgreSQL's latest (294276 AD), but it
        // can be before its earliest.
        if let Some(at) = run_at
            && at < earliest_timestamp()
        {
            return Err(Error::Enqueue(format!(
                "job `{}`: run_at {at} is before 4714-11-24 BC, the earliest time PostgreSQL \
                 stores",
                def.name
            )));
        }
        let key = match (self.unique_key, def.unique_by_args) {
            (Some(key), _) => Some(key),
            (None, true) => Some(format!("args:{args}")),
            (None, false) => None,
        };
        let unique = match key {
            None => None,
            Some(key) => {
                let window = self.unique_for.or(def.unique_for);
                let (key, until) = match window {
                    Some(w) if !w.is_zero() => {
                        let now = now.timestamp_millis().max(0) as u128;
                        let w = w.as_millis().max(1);
                        let bucket = now / w;
                        // A window too long to end within chrono's range
                        // has no end: its row is kept like a key without one.
                        let until = i64::try_from((bucket + 1) * w)
                            .ok()
                            .and_then(DateTime::from_timestamp_millis);
                        (format!("{}:{key}@{bucket}", def.name), until)
                    }
                    _ => (format!("{}:{key}", def.name), None),
                };
                let states = self
                    .unique_states
                    .as_deref()
                    .unwrap_or(&JobState::UNFINISHED)
                    .iter()
                    .fold(0, |mask, s| mask | s.bit());
                // A key must hold in every unfinished state: were it to hold
                // in some only, the move of one job into another would meet a
                // second job holding the same key, and could not be written.
                let unfinished = JobState::UNFINISHED
                    .iter()
                    .fold(0, |mask, s| mask | s.bit());
                if states & unfinished != unfinished {
                    return Err(Error::Enqueue(format!(
                        "job `{}`: unique_states must include every unfinished state \
                         (available, scheduled, running, retryable), and may add finished \
                         ones: for example `&JobState::UNFINISHED` (the default) or \
                         `&JobState::ALL`",
                        def.name
                    )));
                }
                Some(Unique {
                    key: store::stored_unique_key(key),
                    states,
                    until,
                })
            }
        };
        let job = NewJob {
            kind: def.name,
            limits: def.limits,
            queue,
            args,
            priority: self.priority.unwrap_or(def.priority),
            max_attempts,
            run_at,
            #[cfg(feature = "opentelemetry")]
            trace: None,
        };
        Ok((job, unique))
    }

    /// Inserts the job through `db` (pool, connection or transaction). The
    /// arguments are serialized before the future is returned.
    pub fn enqueue<'c, A>(self, db: A) -> impl Future<Output = Result<JobId>> + Send + 'c
    where
        A: Acquire<'c, Database = Postgres> + Send + 'c,
    {
        let inserted = self.insert(db);
        async move { Ok(inserted.await?.id) }
    }

    /// Like [`enqueue`](Self::enqueue), and says whether the job was a
    /// duplicate of an unfinished job with the same unique key. A duplicate
    /// never raises an error, so the caller's transaction stays usable.
    pub fn insert<'c, A>(self, db: A) -> impl Future<Output = Result<Inserted>> + Send + 'c
    where
        A: Acquire<'c, Database = Postgres> + Send + 'c,
    {
        let prepared = if self.deps.is_empty() {
            self.prepare().map(Prepared::Plain)
        } else {
            self.plan(None).map(Prepared::Waiting)
        };
        async move {
            let prepared = prepared?;
            let (kind, queue) = match &prepared {
                Prepared::Plain((job, _)) => (job.kind, job.queue.as_str()),
                Prepared::Waiting(planned) => (planned.job.kind, planned.job.queue.as_str()),
            };
            let span = enqueue_span(kind, queue, 1);
            let inserted = async {
                let mut conn = db.acquire().await?;
                match prepared {
                    #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
                    Prepared::Plain((mut job, unique)) => {
                        #[cfg(feature = "opentelemetry")]
                        {
                            job.trace = crate::trace::context_of(&tracing::Span::current());
                        }
                        insert(&mut conn, &job, unique.as_ref()).await
                    }
                    Prepared::Waiting(planned) => {
                        let ids = insert_planned(&mut conn, vec![planned], false).await?;
                        tracing::Span::current().record("id", ids[0].0);
                        Ok(Inserted {
                            id: ids[0],
                            duplicate: false,
                        })
                    }
                }
            };
            inserted.instrument(span).await
        }
    }
}
