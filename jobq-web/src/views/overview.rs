//! `/`: every queue at a glance, what needs a look, and throughput charts.

use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use jobq::admin::{self, Overview};

use crate::Shared;
use crate::chart::{self, Bucket, Chart};
use crate::context::Ctx;
use crate::error::Error;
use crate::views::render;

#[derive(Template)]
#[template(path = "overview.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    overview: Overview,
    charts: Vec<Chart>,
}

/// The two charts of a page: the last hour by minute, the last day by
/// quarter of an hour; `queue` narrows them to one queue.
pub(crate) async fn charts(app: &Shared, queue: Option<&str>) -> Result<Vec<Chart>, Error> {
    let mut out = Vec::new();
    for (title, minutes, buckets) in [
        ("Last hour, per minute", 1, 60),
        ("Last 24 hours, per minute (15-minute average)", 15, 96),
    ] {
        let series = app
            .charts
            .throughput(&app.pool, Duration::from_secs(60 * minutes), buckets, queue)
            .await?;
        let buckets: Vec<Bucket> = series
            .into_iter()
            .map(|b| Bucket {
                start: b.start,
                completed: b.completed,
                failed: b.failed,
            })
            .collect();
        out.push(chart::stacked(title, &buckets, minutes as i64));
    }
    Ok(out)
}

/// `GET /`.
pub(crate) async fn page(State(app): State<Shared>, ctx: Ctx) -> Result<Html<String>, Error> {
    let overview = admin::overview(&app.pool).await?;
    let charts = charts(&app, None).await?;
    render(Page {
        ctx,
        nav: "/",
        overview,
        charts,
    })
}
