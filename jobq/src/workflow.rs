//! Jobs that wait for other jobs: [`Enqueue::after`], and [`Workflow`]s
//! that insert a graph of jobs at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use sqlx::{Acquire, PgConnection};

use crate::db::Db;
use crate::enqueue::Enqueue;
use crate::error::{Error, Result};
use crate::job::{Job, JobId, JobState};
use crate::store::{self, GraphEdge, GraphJob, GraphRef, NewJob};

/// A job another job waits for: a job already enqueued (its [`JobId`], in
/// the same transaction or earlier), or a [`Step`] of the same
/// [`Workflow`]. Both convert into it, so `.after(&[a, b])` takes either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// A job already enqueued.
    Job(JobId),
    /// A job added to the same workflow before this one.
    Step(Step),
}

impl From<JobId> for Dependency {
    fn from(id: JobId) -> Self {
        Dependency::Job(id)
    }
}

impl From<Step> for Dependency {
    fn from(step: Step) -> Self {
        Dependency::Step(step)
    }
}

/// A job added to a [`Workflow`], as later jobs of the same workflow name
/// it in `.after(..)`. Only [`Workflow::add`] makes one, and only for a job
/// already added, so a workflow's dependencies cannot form a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Step {
    workflow: u64,
    index: usize,
}

/// The id of an inserted [`Workflow`]: the id of its first job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub i64);

/// What [`Workflow::insert`] inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InsertedWorkflow {
    /// The workflow's id, for [`Workflow::cancel`].
    pub id: WorkflowId,
    /// Each job's id, in the order the jobs were added.
    pub jobs: Vec<JobId>,
    /// The workflow's number in this process, as its steps carry it.
    workflow: u64,
}

impl InsertedWorkflow {
    /// The id of the job `step` stands for.
    ///
    /// # Panics
    ///
    /// When `step` was returned by another workflow's `add`.
    pub fn job(&self, step: Step) -> JobId {
        assert_eq!(
            step.workflow, self.workflow,
            "this step belongs to another workflow"
        );
        self.jobs[step.index]
    }
}

/// Workflows made in this process so far: tells one's steps from another's.
static WORKFLOWS: AtomicU64 = AtomicU64::new(0);

/// A graph of jobs inserted together, each waiting for the jobs it names
/// in `.after(..)`: the others of the workflow added before it, or jobs
/// enqueued earlier.
///
/// ```no_run
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Page { body: String }
///
/// #[jobq::job]
/// async fn fetch(url: String) -> anyhow::Result<Page> {
///     Ok(Page { body: url })
/// }
///
/// /// Runs after the fetches it was added after, and reads what they returned.
/// #[jobq::job]
/// async fn merge(ctx: jobq::JobContext) -> anyhow::Result<usize> {
///     let mut total = 0;
///     for dep in ctx.dependencies().await? {
///         let page = ctx.result_of::<fetch::Job>(dep).await?;
///         total += page.map_or(0, |p| p.body.len());
///     }
///     Ok(total)
/// }
/// # fn main() {}
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), jobq::Error> {
///
/// let mut tx = pool.begin().await?;
/// let mut w = jobq::Workflow::new();
/// let a = w.add(fetch::builder(fetch::Args { url: "https://a.example".into() }));
/// let b = w.add(fetch::builder(fetch::Args { url: "https://b.example".into() }));
/// let m = w.add(merge::builder(merge::Args {}).after(&[a, b]));
/// let inserted = w.insert(&mut *tx).await?;
/// tx.commit().await?;
/// let total = merge::wait(&pool, inserted.job(m), std::time::Duration::from_secs(60)).await;
/// # let _ = total;
/// # Ok(()) }
/// ```
///
/// Every job goes in with one statement (two when some depend on jobs
/// enqueued before), inside the caller's transaction when given one. A job
/// waits `pending` until each of its dependencies has finished, and is then
/// made `available` by the write of the last one's end, in the same
/// transaction, with no polling: its queue's sleeping workers are woken as
/// by an enqueue. When a dependency ends discarded or cancelled, the job is
/// cancelled, with an error entry naming that dependency (and so are the
/// jobs waiting for it, down the graph), unless it was added with
/// `.after_any_outcome(..)` for that dependency, in which case it runs.
///
/// Jobs with dependencies cannot have a unique key.
#[derive(Debug)]
pub struct Workflow {
    id: u64,
    steps: Vec<Result<Planned>>,
}

impl Default for Workflow {
    fn default() -> Self {
        Self::new()
    }
}

impl Workflow {
    /// An empty workflow.
    pub fn new() -> Self {
        Workflow {
            id: WORKFLOWS.fetch_add(1, Ordering::Relaxed),
            steps: Vec::new(),
        }
    }

    /// Adds a job; returns the [`Step`] by which later jobs name it in
    /// `.after(..)`. Its arguments are serialized now; an error (or a step
    /// of another workflow among its dependencies) is returned by
    /// [`insert`](Self::insert).
    pub fn add<J: Job>(&mut self, job: Enqueue<J>) -> Step {
        let index = self.steps.len();
        self.steps.push(job.plan(Some(self.id)));
        Step {
            workflow: self.id,
            index,
        }
    }

    /// How many jobs were added.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no job was added.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Inserts every job through `db` (pool, connection or transaction). In
    /// a transaction, the jobs exist, and workers hear of them, when it
    /// commits. Nothing is inserted when any job fails to prepare, or a
    /// dependency enqueued earlier does not exist.
    pub fn insert<'c, A: Db<'c>>(
        self,
        db: A,
    ) -> impl Future<Output = Result<InsertedWorkflow>> + Send + 'c {
        let workflow = self.id;
        let planned: Result<Vec<Planned>> = self.steps.into_iter().collect();
        async move {
            let planned = planned?;
            if planned.is_empty() {
                return Err(Error::Enqueue("a workflow needs at least one job".into()));
            }
            let mut conn = db.acquire().await?;
            let ids = insert_planned(&mut conn, planned, true).await?;
            Ok(InsertedWorkflow {
                id: WorkflowId(ids[0].0),
                jobs: ids,
                workflow,
            })
        }
    }

    /// Cancels every unfinished job of workflow `id` through `db`: jobs that
    /// wait end `cancelled` at once (with "its workflow was cancelled" in
    /// their errors), running ones are asked to stop as by
    /// [`cancel`](crate::cancel). Returns how many jobs that touched.
    pub fn cancel<'c, A: Db<'c>>(
        db: A,
        id: WorkflowId,
    ) -> impl Future<Output = Result<u64>> + Send + 'c {
        async move {
            let mut conn = db.acquire().await?;
            let n = store::cancel_workflow(&mut conn, id.0).await?;
            Ok(u64::try_from(n).unwrap_or(0))
        }
    }
}

/// A job ready to insert with its dependencies.
#[derive(Debug)]
pub(crate) struct Planned {
    pub job: NewJob,
    /// Each dependency, with whether the job runs whatever its outcome.
    pub deps: Vec<(GraphRef, bool)>,
}

impl<J: Job> Enqueue<J> {
    /// The job and its dependencies, ready to insert, as a step of the
    /// workflow `workflow` (in this process's numbering) or on its own.
    pub(crate) fn plan(self, workflow: Option<u64>) -> Result<Planned> {
        let name = J::DEF.name;
        let (deps, job, unique) = self.prepare_with_deps()?;
        if unique.is_some() {
            return Err(Error::Enqueue(format!(
                "job `{name}`: a job that waits for other jobs cannot have a unique key"
            )));
        }
        let deps = deps
            .into_iter()
            .map(|(dep, any)| match dep {
                Dependency::Job(id) => Ok((GraphRef::Job(id.0), any)),
                Dependency::Step(step) if Some(step.workflow) == workflow => {
                    Ok((GraphRef::Node(step.index), any))
                }
                Dependency::Step(_) => Err(Error::Enqueue(format!(
                    "job `{name}`: `.after(..)` names a step of another workflow (or, outside \
                     a workflow, a step at all); name a workflow's steps only in jobs added \
                     to that workflow"
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(Planned { job, deps })
    }
}

/// Inserts `planned` (a workflow's jobs, or one job with dependencies) in a
/// transaction of its own (a savepoint inside the caller's), so that the
/// jobs depended on stay locked until the new ones are in, and an error
/// leaves nothing behind and the caller's transaction usable.
pub(crate) async fn insert_planned(
    conn: &mut PgConnection,
    planned: Vec<Planned>,
    workflow: bool,
) -> Result<Vec<JobId>> {
    let mut tx = conn.begin().await?;
    let mut earlier: Vec<i64> = planned
        .iter()
        .flat_map(|p| p.deps.iter())
        .filter_map(|(d, _)| match d {
            GraphRef::Job(id) => Some(*id),
            GraphRef::Node(_) => None,
        })
        .collect();
    earlier.sort_unstable();
    earlier.dedup();
    let states: HashMap<i64, JobState> = if earlier.is_empty() {
        HashMap::new()
    } else {
        store::lock_parents(&mut tx, &earlier)
            .await?
            .into_iter()
            .collect()
    };
    if let Some(missing) = earlier.iter().find(|id| !states.contains_key(id)) {
        // Dropping `tx` rolls back the marks just written.
        return Err(Error::Enqueue(format!(
            "job {missing}, named in `.after(..)`, does not exist: never enqueued, enqueued in \
             a transaction that has not committed, or finished and pruned"
        )));
    }
    let (jobs, edges) = plan_graph(planned, &states);
    let ids = store::insert_graph(
        &mut tx,
        &jobs,
        &edges,
        workflow,
        #[cfg(feature = "opentelemetry")]
        crate::trace::context_of(&tracing::Span::current()),
    )
    .await?;
    tx.commit().await?;
    for g in &jobs {
        crate::metrics::enqueued(g.job.kind, g.job.queue.as_str(), 1);
    }
    Ok(ids.into_iter().map(JobId).collect())
}

/// Decides each job's starting state from its dependencies' states (`states`
/// for jobs enqueued before; the graph's own jobs were just decided):
/// cancelled when one that it does not take any outcome of ended discarded
/// or cancelled, `pending` while some have not finished, else `available`
/// (or `scheduled` for a later time).
fn plan_graph(
    planned: Vec<Planned>,
    states: &HashMap<i64, JobState>,
) -> (Vec<GraphJob>, Vec<GraphEdge>) {
    let now = Utc::now();
    let mut jobs: Vec<GraphJob> = Vec::with_capacity(planned.len());
    let mut edges = Vec::new();
    for (child, p) in planned.into_iter().enumerate() {
        // A dependency named twice counts once, strictly if either is.
        let mut deps: Vec<(GraphRef, bool)> = Vec::with_capacity(p.deps.len());
        for (r, any) in p.deps {
            match deps.iter_mut().find(|(d, _)| *d == r) {
                Some((_, seen)) => *seen &= any,
                None => deps.push((r, any)),
            }
        }
        let state_of = |r: GraphRef, jobs: &[GraphJob]| match r {
            GraphRef::Node(i) => jobs[i].state,
            GraphRef::Job(id) => states[&id],
        };
        let failed = deps.iter().find_map(|&(r, any)| {
            let s = state_of(r, &jobs);
            (!any && matches!(s, JobState::Discarded | JobState::Cancelled)).then_some((r, s))
        });
        let mut deps_left = 0;
        for &(parent, any_outcome) in &deps {
            let finished = matches!(
                state_of(parent, &jobs),
                JobState::Completed | JobState::Discarded | JobState::Cancelled
            );
            // A job cancelled at once waits for nothing.
            let waits = !finished && failed.is_none();
            if waits {
                deps_left += 1;
                if let GraphRef::Node(i) = parent {
                    jobs[i].has_dependents = true;
                }
            }
            edges.push(GraphEdge {
                child,
                parent,
                waits,
                any_outcome,
            });
        }
        let state = if failed.is_some() {
            JobState::Cancelled
        } else if deps_left > 0 {
            JobState::Pending
        } else if p.job.run_at.is_some_and(|at| at > now) {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        jobs.push(GraphJob {
            job: p.job,
            state,
            deps_left,
            has_dependents: false,
            failed,
        });
    }
    (jobs, edges)
}
