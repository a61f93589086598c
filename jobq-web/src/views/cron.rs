//! `/cron`: cron jobs, their schedule, next tick and latest run.

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, Utc};
use jobq::admin::{self, CronJob};

use crate::Shared;
use crate::context::Ctx;
use crate::error::Error;
use crate::views::render;

#[derive(Template)]
#[template(path = "cron.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    jobs: Vec<CronJob>,
    now: DateTime<Utc>,
}

/// `GET /cron`.
pub(crate) async fn page(State(app): State<Shared>, ctx: Ctx) -> Result<Html<String>, Error> {
    let jobs = admin::cron_jobs(&app.pool).await?;
    render(Page {
        ctx,
        nav: "/cron",
        jobs,
        now: Utc::now(),
    })
}
