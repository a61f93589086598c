//! Bulk actions in the background: a bulk action over thousands of jobs
//! runs in batches after its form is posted, and its page shows how far it
//! got, live, until it ends. A browser that leaves the page does not stop
//! it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use jobq::admin::{self, Action, JobFilter, Progress, Target};

use crate::context::Ctx;
use crate::error::Error;
use crate::views::render;
use crate::{App, Shared};

/// How many operations the registry remembers; the oldest go first.
const REMEMBERED: usize = 100;

/// The jobs a bulk action is about, owned by its task.
pub(crate) enum Jobs {
    Ids(Vec<i64>),
    Filter(JobFilter),
}

/// One bulk action, as its page shows it.
pub(crate) struct Operation {
    pub action: Action,
    /// What it is about, in words: "3 selected jobs", "jobs matching state
    /// = discarded, queue = email".
    pub about: String,
    /// How many jobs the confirmation said it would change (maybe estimated).
    pub expected: i64,
    pub expected_exact: bool,
    pub progress: Progress,
    pub started: Instant,
    /// Seconds it took, once it ended.
    pub took: Option<f64>,
    /// Why it stopped early.
    pub error: Option<String>,
    /// Ids asked for that had no job.
    pub missing: usize,
    /// Where "back" goes.
    pub back: String,
}

/// The operations of this process.
#[derive(Default)]
pub(crate) struct Registry {
    operations: Mutex<VecDeque<(String, Arc<Mutex<Operation>>)>>,
}

impl Registry {
    fn get(&self, id: &str) -> Option<Arc<Mutex<Operation>>> {
        let operations = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        operations
            .iter()
            .find(|(key, _)| key == id)
            .map(|(_, op)| op.clone())
    }

    fn insert(&self, op: Operation) -> (String, Arc<Mutex<Operation>>) {
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let op = Arc::new(Mutex::new(op));
        let mut operations = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        if operations.len() >= REMEMBERED {
            operations.pop_front();
        }
        operations.push_back((id.clone(), op.clone()));
        (id, op)
    }
}

/// Starts `op` on `jobs` in the background; returns its id for its page.
pub(crate) fn start(app: &Shared, op: Operation, jobs: Jobs) -> String {
    let action = op.action;
    let (id, shared) = app.operations.insert(op);
    let app: Arc<App> = app.clone();
    tokio::spawn(async move {
        let target = match &jobs {
            Jobs::Ids(ids) => Target::Ids(ids),
            Jobs::Filter(filter) => Target::Filter(filter),
        };
        let batch = usize::try_from(app.options.batch_size).unwrap_or(usize::MAX);
        let result = admin::apply(&app.pool, action, target, batch, |progress| {
            shared.lock().unwrap_or_else(|e| e.into_inner()).progress = *progress;
        })
        .await;
        let mut op = shared.lock().unwrap_or_else(|e| e.into_inner());
        op.took = Some(op.started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) => {
                op.progress = outcome.progress;
                op.missing = outcome.missing.len();
            }
            Err(error) => {
                tracing::error!(%error, "jobq-web: bulk {action} stopped");
                op.error = Some(error.to_string());
            }
        }
    });
    id
}

#[derive(Template)]
#[template(path = "operation.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    op: OperationView,
}

/// What the page shows of an operation, copied out of its lock.
struct OperationView {
    label: &'static str,
    about: String,
    expected: String,
    changed: u64,
    examined: u64,
    batches: u64,
    percent: String,
    done: bool,
    took: String,
    error: Option<String>,
    missing: usize,
    back: String,
}

/// `GET /operations/{id}`.
pub(crate) async fn page(
    State(app): State<Shared>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Html<String>, Error> {
    let shared = app.operations.get(&id).ok_or_else(|| {
        Error::NotFound(format!(
            "no operation `{id}` in this process (operations are kept in memory, the latest {REMEMBERED})"
        ))
    })?;
    let view = {
        let op = shared.lock().unwrap_or_else(|e| e.into_inner());
        let changed = op.progress.changed;
        let percent = match (op.took.is_some(), op.expected) {
            (true, _) => 100.0,
            (false, 0) => 0.0,
            (false, n) => (changed as f64 / n as f64 * 100.0).min(99.0),
        };
        OperationView {
            label: crate::views::action_label(op.action),
            about: op.about.clone(),
            expected: if op.expected_exact {
                crate::views::count(op.expected)
            } else {
                format!("about {}", crate::views::count(op.expected))
            },
            changed,
            examined: op.progress.examined,
            batches: op.progress.batches,
            percent: format!("{percent:.1}"),
            done: op.took.is_some(),
            took: op
                .took
                .map(|s| format!("{s:.2} s"))
                .unwrap_or_else(|| format!("{:.1} s so far", op.started.elapsed().as_secs_f64())),
            error: op.error.clone(),
            missing: op.missing,
            back: op.back.clone(),
        }
    };
    render(Page {
        ctx,
        nav: "/jobs",
        op: view,
    })
}
