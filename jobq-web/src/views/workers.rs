//! `/workers`: live worker processes and the job kinds they run.

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use jobq::admin::{self, KindInfo, WorkerInfo};

use crate::Shared;
use crate::context::Ctx;
use crate::error::Error;
use crate::views::render;

#[derive(Template)]
#[template(path = "workers.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    workers: Vec<WorkerInfo>,
    kinds: Vec<KindInfo>,
}

/// `GET /workers`.
pub(crate) async fn page(State(app): State<Shared>, ctx: Ctx) -> Result<Html<String>, Error> {
    let workers = admin::workers(&app.pool).await?;
    let kinds = admin::kinds(&app.pool).await?;
    render(Page {
        ctx,
        nav: "/workers",
        workers,
        kinds,
    })
}
