//! `/enqueue`: a job of a kind live workers know, with JSON arguments.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jobq::admin::{self, KindInfo};

use crate::Shared;
use crate::context::Ctx;
use crate::error::Error;
use crate::views::render;

/// The form as typed, kept when it is shown again with an error.
#[derive(Clone, Debug, Default)]
pub(crate) struct EnqueueForm {
    pub kind: String,
    pub queue: String,
    pub priority: String,
    pub args: String,
    pub run_at: String,
}

#[derive(Template)]
#[template(path = "enqueue.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    kinds: Vec<KindInfo>,
    form: EnqueueForm,
    error: Option<String>,
}

/// Renders the form, with `error` when a submission was refused.
pub(crate) async fn form(
    app: &Shared,
    ctx: Ctx,
    form: EnqueueForm,
    error: Option<String>,
) -> Result<Response, Error> {
    let mut kinds = admin::kinds(&app.pool).await?;
    kinds.dedup_by(|a, b| a.kind == b.kind);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = render(Page {
        ctx,
        nav: "/enqueue",
        kinds,
        form,
        error,
    })?;
    Ok((status, page).into_response())
}

/// `GET /enqueue`.
pub(crate) async fn page(State(app): State<Shared>, ctx: Ctx) -> Result<Response, Error> {
    if ctx.read_only {
        return Err(Error::NotFound(
            "this dashboard is read-only: it enqueues nothing".into(),
        ));
    }
    let form_values = EnqueueForm {
        args: "{}".into(),
        ..EnqueueForm::default()
    };
    form(&app, ctx, form_values, None).await
}
