//! `/`: every queue at a glance, what needs a look, and throughput charts.

use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use jobq::admin::{self, KindLimits, Overview};

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
    /// The kinds' limits, taken out of `overview`.
    kind_limits: Vec<KindLimits>,
    charts: Vec<Chart>,
}

/// The two charts of a page: the last hour by minute, the last day by
/// quarter of an hour; `queue` narrows them to one queue.
pub(crate) async fn charts(app: &Shared, queue: Option<&str>) -> Result<Vec<Chart>, Error> {
    let series = |minutes: u64, buckets| {
        app.charts
            .throughput(&app.pool, Duration::from_secs(60 * minutes), buckets, queue)
    };
    // Both at once, on two connections: a day's series read afresh takes
    // a tenth of a second over 10 million jobs.
    let (hour, day) = tokio::try_join!(series(1, 60), series(15, 96))?;
    let mut out = Vec::new();
    for (title, minutes, series) in [
        ("Last hour, per minute", 1, hour),
        ("Last 24 hours, per minute (15-minute average)", 15, day),
    ] {
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
    let (mut overview, charts) = tokio::try_join!(
        async { Ok::<_, Error>(admin::overview(&app.pool).await?) },
        charts(&app, None)
    )?;
    let kind_limits = std::mem::take(&mut overview.kind_limits);
    render(Page {
        ctx,
        nav: "/",
        overview,
        kind_limits,
        charts,
    })
}
