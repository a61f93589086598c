//! `/jobs`: the job list, filtered and paged by keyset; `/api/jobs`: the
//! same as JSON.

use askama::Template;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use jobq::JobState;
use jobq::admin::{self, Action, Count, Cursor, JobPage};
use serde::Deserialize;

use crate::Shared;
use crate::context::Ctx;
use crate::error::Error;
use crate::filter::FilterForm;
use crate::views::render;

/// The list's query string: the filter, where the page starts, and a
/// message from the action that led here.
#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(flatten)]
    filter: FilterForm,
    #[serde(default)]
    after: String,
    #[serde(default)]
    deleted: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct Page {
    ctx: Ctx,
    nav: &'static str,
    form: FilterForm,
    errors: Vec<String>,
    page: Option<JobPage>,
    count: Option<Count>,
    first_page: bool,
    deleted: Option<i64>,
    states: [JobState; 8],
    actions: [Action; 4],
}

impl Page {
    /// The link to the page after this one.
    fn next_href(&self, cursor: &Cursor) -> String {
        let query = self.form.query();
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{}?{query}{sep}after={cursor}", self.ctx.href("/jobs"))
    }

    fn first_href(&self) -> String {
        format!("{}?{}", self.ctx.href("/jobs"), self.form.query())
    }

    fn count_label(&self) -> String {
        let count = crate::views::count;
        match self.count {
            Some(Count {
                count: n,
                exact: true,
                ..
            }) => format!("{} matching job(s)", count(n)),
            Some(Count {
                count: n,
                searched: Some(searched),
                ..
            }) => format!(
                "{} matching job(s) among the newest {} (older jobs not searched)",
                count(n),
                count(searched)
            ),
            Some(Count { count: n, .. }) => format!(
                "about {} matching jobs (estimated by PostgreSQL; exact up to {})",
                count(n),
                count(self.exact_limit())
            ),
            None => String::new(),
        }
    }

    fn exact_limit(&self) -> i64 {
        self.ctx.exact_count_limit
    }
}

/// `GET /jobs`.
pub(crate) async fn page(
    State(app): State<Shared>,
    ctx: Ctx,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, Error> {
    let after = parse_after(&query.after)?;
    let (errors, page, count) = match query.filter.parse() {
        Err(errors) => (errors, None, None),
        Ok(filter) => {
            let page = list(&app, &filter, after).await?;
            // The count sits outside the live region: a live update
            // would throw it away.
            let count = match ctx.refresh {
                true => None,
                false => Some(count(&app, &filter, &page, after).await?),
            };
            (Vec::new(), Some(page), count)
        }
    };
    render(Page {
        ctx,
        nav: "/jobs",
        form: query.filter,
        errors,
        page,
        count,
        first_page: after.is_none(),
        deleted: query.deleted.parse().ok(),
        states: JobState::ALL,
        actions: Action::ALL,
    })
}

/// How many jobs match: read off a first page that holds them all (or all
/// those its search window found), else counted.
/// One page of the jobs `filter` matches, after `after`, as the options
/// size and bound it; the HTML page and the JSON route both read it here.
async fn list(
    app: &Shared,
    filter: &jobq::admin::JobFilter,
    after: Option<Cursor>,
) -> Result<JobPage, Error> {
    Ok(admin::list_jobs(
        &app.pool,
        filter,
        after,
        app.options.page_size,
        app.options.search_window,
    )
    .await?)
}

async fn count(
    app: &Shared,
    filter: &jobq::admin::JobFilter,
    page: &JobPage,
    after: Option<Cursor>,
) -> Result<Count, Error> {
    if after.is_none()
        && let Some(count) = page.first_page_count()
    {
        return Ok(count);
    }
    Ok(admin::count_matching(
        &app.pool,
        filter,
        app.options.exact_count_limit,
        app.options.search_window,
    )
    .await?)
}

fn parse_after(after: &str) -> Result<Option<Cursor>, Error> {
    if after.trim().is_empty() {
        return Ok(None);
    }
    after
        .parse()
        .map(Some)
        .map_err(|_| Error::BadRequest(format!("`after` must be a job id, not `{after}`")))
}

/// `GET /api/jobs`: a page as JSON. Ids are strings (JavaScript rounds
/// integers beyond 2^53), and so are integers in arguments beyond that.
pub(crate) async fn json(
    State(app): State<Shared>,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    let after = parse_after(&query.after)?;
    let filter = query
        .filter
        .parse()
        .map_err(|errors| Error::BadRequest(errors.join("\n")))?;
    let page = list(&app, &filter, after).await?;
    let count = count(&app, &filter, &page, after).await?;
    let jobs: Vec<serde_json::Value> = page
        .jobs
        .iter()
        .map(|job| crate::json::ids_as_strings(serde_json::to_value(job).unwrap_or_default()))
        .collect();
    Ok(Json(serde_json::json!({
        "jobs": jobs,
        "next": page.next.map(|c| c.to_string()),
        "count": count.count,
        "count_exact": count.exact,
        "count_searched": count.searched,
        "searched": page.searched,
    }))
    .into_response())
}
