//! `/jobs/{id}`: one job in full; `/api/jobs/{id}`: the same as JSON.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use jobq::admin::{self, Action, JobDetail};
use serde::Deserialize;

use crate::Shared;
use crate::context::Ctx;
use crate::error::Error;
use crate::json::{self, Piece};
use crate::views::render;

#[derive(Template)]
#[template(path = "job.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    job: JobDetail,
    args: Vec<Piece>,
    metadata: Vec<Piece>,
    has_metadata: bool,
    big_numbers: bool,
    actions: Vec<Action>,
    done: Option<String>,
    now: DateTime<Utc>,
}

/// A message from the action that led here.
#[derive(Deserialize)]
pub(crate) struct DetailQuery {
    #[serde(default)]
    done: String,
}

pub(crate) fn parse_id(id: &str) -> Result<i64, Error> {
    id.trim()
        .parse()
        .map_err(|_| Error::NotFound(format!("`{id}` is not a job id")))
}

async fn load(app: &Shared, id: &str) -> Result<JobDetail, Error> {
    let id = parse_id(id)?;
    admin::job(&app.pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no job {id}: never enqueued, or pruned")))
}

/// `GET /jobs/{id}`.
pub(crate) async fn page(
    State(app): State<Shared>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Html<String>, Error> {
    let job = load(&app, &id).await?;
    let args_text = serde_json::to_string(&job.args).unwrap_or_default();
    let args = json::pretty(&args_text);
    let metadata = json::pretty(&serde_json::to_string(&job.metadata).unwrap_or_default());
    let has_metadata = job.metadata.as_object().is_some_and(|m| !m.is_empty());
    let big_numbers = args.iter().any(|p| p.kind == "bignum");
    let actions = [
        Action::Retry,
        Action::RunNow,
        Action::Cancel,
        Action::Delete,
    ]
    .into_iter()
    .filter(|a| a.changes().contains(&job.summary.state))
    .collect();
    let done = match query.done.as_str() {
        "" => None,
        "retry" => Some("Retried: the job is available and runs as soon as a worker is free."),
        "run-now" => Some("The job is available and runs as soon as a worker is free."),
        "cancel" => Some("Cancelled (a running job's worker was told to stop it)."),
        "unchanged" => Some("Nothing changed: the job's state does not allow that action now."),
        _ => None,
    }
    .map(str::to_owned);
    render(Page {
        ctx,
        nav: "/jobs",
        job,
        args,
        metadata,
        has_metadata,
        big_numbers,
        actions,
        done,
        now: Utc::now(),
    })
}

/// `GET /api/jobs/{id}`: the job as JSON, ids as strings, and integers in
/// its arguments that JavaScript would round as strings too.
pub(crate) async fn json(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let job = load(&app, &id).await?;
    let args_text = serde_json::to_string(&job.args).unwrap_or_default();
    let mut value = json::ids_as_strings(serde_json::to_value(&job).unwrap_or_default());
    if let Some(map) = value.as_object_mut() {
        let safe = serde_json::from_str(&json::javascript_safe(&args_text))
            .unwrap_or(serde_json::Value::Null);
        map.insert("args".into(), safe);
    }
    Ok(Json(value).into_response())
}
