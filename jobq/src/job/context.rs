//! What a running job is handed: its [`JobContext`] and the worker's
//! [`State`]s.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{Job, JobDef, JobId};

/// A value the worker was given with [`Worker::state`](crate::Worker::state),
/// handed to every job that takes a `State<T>` parameter. Derefs to `T`;
/// cloning it is cheap (it is an `Arc`).
pub struct State<T: ?Sized>(Arc<T>);

impl<T: ?Sized> State<T> {
    /// Wraps a shared value.
    pub fn new(value: Arc<T>) -> Self {
        State(value)
    }

    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T: ?Sized> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&&*self.0).finish()
    }
}

/// The values a worker was given, by type.
#[derive(Default, Clone)]
pub(crate) struct States(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl States {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    /// Inserts a value the caller keeps a handle on.
    pub(crate) fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.0.insert(TypeId::of::<T>(), value);
    }

    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.0.contains_key(&id)
    }

    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
    }
}

/// What a running job knows about itself, and its cancellation signal. Take it
/// as a parameter of type `jobq::JobContext`.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    id: JobId,
    name: &'static str,
    queue: String,
    attempt: i32,
    max_attempts: i32,
    scheduled_at: DateTime<Utc>,
    cron: bool,
    cancel: CancellationToken,
    pool: PgPool,
}

impl JobContext {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: JobId,
        def: &'static JobDef,
        queue: String,
        attempt: i32,
        max_attempts: i32,
        scheduled_at: DateTime<Utc>,
        cancel: CancellationToken,
        pool: PgPool,
    ) -> Self {
        JobContext {
            inner: Arc::new(ContextInner {
                id,
                name: def.name,
                cron: def.cron.is_some(),
                queue,
                attempt,
                max_attempts,
                scheduled_at,
                cancel,
                pool,
            }),
        }
    }

    /// This job's id.
    pub fn id(&self) -> JobId {
        self.inner.id
    }

    /// The job's stored name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The queue the job was claimed from.
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// This attempt's number: 1 for the first run.
    pub fn attempt(&self) -> i32 {
        self.inner.attempt
    }

    /// Attempts the job gets in all.
    pub fn max_attempts(&self) -> i32 {
        self.inner.max_attempts
    }

    /// Whether a failure now discards the job instead of retrying it.
    pub fn is_last_attempt(&self) -> bool {
        self.inner.attempt >= self.inner.max_attempts
    }

    /// When this attempt was due to start.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        self.inner.scheduled_at
    }

    /// For a cron job, the tick this run is for (in UTC); `None` otherwise.
    pub fn cron_tick(&self) -> Option<DateTime<Utc>> {
        self.inner.cron.then_some(self.inner.scheduled_at)
    }

    /// Fires when the worker wants this attempt to stop: the worker is
    /// shutting down past its grace period, or the job timed out or was
    /// cancelled. A handler that can stop early should watch it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Whether [`cancellation`](Self::cancellation) has fired.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// The worker's pool, to enqueue follow-up jobs or read data.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// What job `id` of type `J` returned: `Some` once it has completed
    /// (see [`crate::result`]). A job enqueued `.after(&[id])` runs once
    /// `id` has completed, so it finds `Some` there (unless it was enqueued
    /// with `.after_any_outcome(..)`, or `id` was pruned meanwhile).
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Page { body: String }
    /// #[jobq::job]
    /// async fn fetch_page(url: String) -> anyhow::Result<Page> {
    ///     Ok(Page { body: format!("<html>{url}</html>") })
    /// }
    ///
    /// #[jobq::job]
    /// async fn count_words(ctx: jobq::JobContext, page: jobq::JobId) -> anyhow::Result<usize> {
    ///     let page = ctx.result_of::<fetch_page::Job>(page).await?;
    ///     Ok(page.map_or(0, |p| p.body.split_whitespace().count()))
    /// }
    /// # fn main() {}
    /// ```
    pub async fn result_of<J: Job>(&self, id: JobId) -> crate::Result<Option<J::Output>> {
        crate::result::<J, _>(&self.inner.pool, id).await
    }

    /// The jobs this one was enqueued after (`.after(..)`, or its steps in a
    /// [`Workflow`](crate::Workflow)), in id order: a workflow's job learns
    /// its dependencies' ids here, to read their results with
    /// [`result_of`](Self::result_of). Empty for a job without any. One
    /// query.
    pub async fn dependencies(&self) -> crate::Result<Vec<JobId>> {
        let mut conn = self.inner.pool.acquire().await?;
        let deps = crate::store::dependencies_of(&mut conn, self.inner.id.0).await?;
        Ok(deps.unwrap_or_default().into_iter().map(JobId).collect())
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("queue", &self.inner.queue)
            .field("attempt", &self.inner.attempt)
            .field("max_attempts", &self.inner.max_attempts)
            .finish_non_exhaustive()
    }
}
