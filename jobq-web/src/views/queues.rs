//! `/queues` and `/queues/{name}`: queues with pause and resume, their
//! limits and those of the kinds they run, with the form that sets a
//! queue's limits.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use jobq::admin::{self, KindInfo, KindLimits, QueueLimit, QueueOverview, WorkerInfo};
use serde::Deserialize;

use crate::Shared;
use crate::chart::Chart;
use crate::context::Ctx;
use crate::error::Error;
use crate::views::{count, render};

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
    /// The limits of the kinds whose default queue this is.
    kind_limits: Vec<KindLimits>,
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
    let kind_limits = overview
        .kind_limits
        .into_iter()
        .filter(|k| k.queue == name)
        .collect();
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
        "limit" => Some("Limit set: every worker's next claim of this queue counts against it."),
        "unlimit" => Some("Limits cleared: workers claim its jobs as fast as they can again."),
        _ => None,
    };
    render(Page {
        ctx,
        nav: "/queues",
        queue,
        charts,
        workers,
        kinds,
        kind_limits,
        done,
    })
}

/// A queue's limit and its use: `2/5 running · 40/100 started per 1m`.
pub(crate) fn queue_limit(l: &QueueLimit) -> String {
    let mut parts = Vec::new();
    if let Some(c) = l.concurrency {
        parts.push(format!("{}/{} running", count(l.running), count(c)));
    }
    if let Some(r) = l.rate {
        parts.push(format!(
            "{}/{} started per {}",
            count(l.started),
            count(r.count),
            r.window_text()
        ));
    }
    parts.join(" · ")
}

/// A kind's concurrency limit and its use: `3/5 running`, or, per
/// partition, `7 running, at most 2 per user_id`; a dash without one.
pub(crate) fn kind_concurrency(k: &KindLimits) -> String {
    let Some(c) = k.concurrency else {
        return "—".into();
    };
    match &k.partition {
        None => format!("{}/{} running", count(k.running), count(c)),
        Some(p) => format!("{} running, at most {} per {p}", count(k.running), count(c)),
    }
}

/// A kind's rate limit and its use: `40/100 started per 1m`, or, per
/// partition, `90 started, at most 10 per tenant per 1s`; a dash without.
pub(crate) fn kind_rate(k: &KindLimits) -> String {
    let Some(r) = k.rate else {
        return "—".into();
    };
    match &k.partition {
        None => format!(
            "{}/{} started per {}",
            count(k.started),
            count(r.count),
            r.window_text()
        ),
        Some(p) => format!(
            "{} started, at most {} per {p} per {}",
            count(k.started),
            count(r.count),
            r.window_text()
        ),
    }
}

/// A partitioned kind's partitions at their limit, of those in use: `2
/// of 3`; a dash for a kind without partitions.
pub(crate) fn kind_at_limit(k: &KindLimits) -> String {
    k.partitions.as_ref().map_or_else(
        || "—".into(),
        |p| format!("{} of {}", count(p.at_limit), count(p.active)),
    )
}

/// A partitioned kind's busiest partitions: `42 (2 running), 7 (1
/// running)`; a dash when none is in use.
pub(crate) fn kind_busiest(k: &KindLimits) -> String {
    let busiest = k.partitions.as_ref().map(|p| &p.busiest);
    let Some(busiest) = busiest.filter(|b| !b.is_empty()) else {
        return "—".into();
    };
    busiest
        .iter()
        .map(|p| k.describe_partition(p))
        .collect::<Vec<_>>()
        .join(", ")
}
