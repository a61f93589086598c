//! `/queues` and `/queues/{name}`: queues with pause and resume.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use jobq::admin::{self, KindInfo, QueueOverview, WorkerInfo};
use serde::Deserialize;

use crate::Shared;
use crate::chart::Chart;
use crate::context::Ctx;
use crate::error::Error;
use crate::views::render;

#[derive(Template)]
#[template(path = "queues.html")]
struct List {
    ctx: Ctx,
    nav: &'static str,
    queues: Vec<QueueOverview>,
}

/// `GET /queues`.
pub(crate) async fn list(State(app): State<Shared>, ctx: Ctx) -> Result<Html<String>, Error> {
    let overview = admin::overview(&app.pool).await?;
    render(List {
        ctx,
        nav: "/queues",
        queues: overview.queues,
    })
}

#[derive(Template)]
#[template(path = "queue.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    queue: QueueOverview,
    charts: Vec<Chart>,
    workers: Vec<WorkerInfo>,
    kinds: Vec<KindInfo>,
    done: Option<&'static str>,
}

/// A message from the action that led here.
#[derive(Deserialize)]
pub(crate) struct QueueQuery {
    #[serde(default)]
    done: String,
}

/// `GET /queues/{name}`.
pub(crate) async fn page(
    State(app): State<Shared>,
    ctx: Ctx,
    Path(name): Path<String>,
    Query(query): Query<QueueQuery>,
) -> Result<Html<String>, Error> {
    let (overview, charts) = tokio::try_join!(
        async { Ok::<_, Error>(admin::overview(&app.pool).await?) },
        crate::views::overview::charts(&app, Some(&name))
    )?;
    let queue = overview
        .queues
        .into_iter()
        .find(|q| q.queue == name)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no queue `{name}`: it holds no job, is not paused, and no live worker runs it"
            ))
        })?;
    // Workers and kinds sit outside the live region: a live update would
    // throw them away.
    let (workers, kinds) = if ctx.refresh {
        (Vec::new(), Vec::new())
    } else {
        let workers = admin::workers(&app.pool)
            .await?
            .into_iter()
            .filter(|w| w.queues.iter().any(|q| q.queue == name))
            .collect();
        let kinds = admin::kinds(&app.pool)
            .await?
            .into_iter()
            .filter(|k| k.queue == name)
            .collect();
        (workers, kinds)
    };
    let done = match query.done.as_str() {
        "pause" => Some("Paused: workers claim none of its jobs until it is resumed."),
        "resume" => Some("Resumed: workers claim its jobs again."),
        _ => None,
    };
    render(Page {
        ctx,
        nav: "/queues",
        queue,
        charts,
        workers,
        kinds,
        done,
    })
}
