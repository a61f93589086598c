//! Every change of state, each a `POST` (the security layer has checked
//! the origin and the CSRF token before any of these runs). Actions on jobs
//! answer a first post with a confirmation page saying what they will
//! change; the confirmed post does it, then redirects to a page that shows
//! the result (post/redirect/get).

use std::str::FromStr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use jobq::admin::{self, Action, Target};

use crate::Shared;
use crate::context::Ctx;
use crate::error::Error;
use crate::filter::FilterForm;
use crate::operations::{self, Jobs, Operation};
use crate::views::enqueue::EnqueueForm;
use crate::views::{action_label, count, render};

/// A posted form's fields, in order; a name may repeat (`ids`).
pub(crate) struct Fields(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Fields(
            form_urlencoded::parse(&bytes).into_owned().collect(),
        ))
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn confirmed(&self) -> bool {
        self.get("confirm") == Some("yes")
    }

    fn action(&self) -> Result<Action, Error> {
        let name = self.get("action").unwrap_or_default();
        Action::from_str(name).map_err(Error::BadRequest)
    }
}

/// The confirmation page: what the action will do, and the same form again
/// with `confirm=yes`.
#[derive(Template)]
#[template(path = "confirm.html")]
struct Confirm {
    ctx: Ctx,
    nav: &'static str,
    heading: String,
    details: Vec<String>,
    post_to: String,
    hidden: Vec<(String, String)>,
    button: String,
    danger: bool,
    back: String,
}

/// A sentence for the states an action changes.
fn changes_words(action: Action) -> String {
    let states: Vec<&str> = action.changes().iter().map(|s| s.as_str()).collect();
    format!(
        "{} changes only jobs that are {}.",
        action_label(action),
        states.join(", ")
    )
}

/// `POST /jobs/{id}/{action}`: one job.
pub(crate) async fn one(
    State(app): State<Shared>,
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, Error> {
    let id = crate::views::job::parse_id(&id)?;
    let action = Action::from_str(&action).map_err(Error::NotFound)?;
    let job = admin::job(&app.pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no job {id}: never enqueued, or pruned")))?;
    if !fields.confirmed() {
        let s = &job.summary;
        let mut details = vec![format!(
            "Job {id}, {} in queue {}, is {} (attempt {} of {}).",
            s.kind, s.queue, s.state, s.attempt, s.max_attempts
        )];
        if !action.changes().contains(&s.state) {
            details.push(format!(
                "{} It will be left as it is.",
                changes_words(action)
            ));
        }
        if action == Action::Delete {
            details.push("Deleting removes the job and its history for good.".into());
        }
        return Ok(render(Confirm {
            heading: format!("{} job {id}?", action_label(action)),
            details,
            post_to: ctx.href(&format!("/jobs/{id}/{action}")),
            hidden: Vec::new(),
            button: format!("{} job {id}", action_label(action)),
            danger: matches!(action, Action::Delete | Action::Cancel),
            back: ctx.href(&format!("/jobs/{id}")),
            ctx,
            nav: "/jobs",
        })?
        .into_response());
    }
    let batch = 1;
    let outcome = admin::apply(&app.pool, action, Target::Ids(&[id]), batch, |_| {}).await?;
    let target = if outcome.progress.changed == 0 {
        format!("/jobs/{id}?done=unchanged")
    } else if action == Action::Delete {
        format!("/jobs?deleted={id}")
    } else {
        format!("/jobs/{id}?done={action}")
    };
    Ok(Redirect::to(&ctx.href(&target)).into_response())
}

/// `POST /actions/selected`: the jobs ticked in the list.
pub(crate) async fn selected(
    State(app): State<Shared>,
    ctx: Ctx,
    fields: Fields,
) -> Result<Response, Error> {
    let action = fields.action()?;
    let mut ids = Vec::new();
    for (name, value) in &fields.0 {
        if name == "ids" {
            let id = value
                .parse::<i64>()
                .map_err(|_| Error::BadRequest(format!("`{value}` is not a job id")))?;
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(Error::BadRequest(
            "no job selected: tick the jobs to act on, or act on all that match the filter".into(),
        ));
    }
    let n = ids.len() as i64;
    if !fields.confirmed() {
        let mut hidden: Vec<(String, String)> = ids
            .iter()
            .map(|id| ("ids".into(), id.to_string()))
            .collect();
        hidden.push(("action".into(), action.to_string()));
        return Ok(render(Confirm {
            heading: format!("{} {} selected job(s)?", action_label(action), count(n)),
            details: vec![
                format!("Jobs {}.", list_ids(&ids)),
                changes_words(action) + " The others are left as they are.",
            ],
            post_to: ctx.href("/actions/selected"),
            hidden,
            button: format!("{} {} job(s)", action_label(action), count(n)),
            danger: matches!(action, Action::Delete | Action::Cancel),
            back: ctx.href("/jobs"),
            ctx,
            nav: "/jobs",
        })?
        .into_response());
    }
    let op = Operation {
        action,
        about: format!("{} selected job(s)", count(n)),
        expected: n,
        expected_exact: true,
        progress: Default::default(),
        started: std::time::Instant::now(),
        took: None,
        error: None,
        missing: 0,
        back: ctx.href("/jobs"),
    };
    let id = operations::start(&app, op, Jobs::Ids(ids));
    Ok(Redirect::to(&ctx.href(&format!("/operations/{id}"))).into_response())
}

fn list_ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(20).map(i64::to_string).collect();
    if ids.len() > 20 {
        format!("{} and {} more", shown.join(", "), ids.len() - 20)
    } else {
        shown.join(", ")
    }
}

/// `POST /actions/filter`: every job the list's filter matches.
pub(crate) async fn filter(
    State(app): State<Shared>,
    ctx: Ctx,
    fields: Fields,
) -> Result<Response, Error> {
    let action = fields.action()?;
    let form = FilterForm::from_pairs(&fields.0);
    let filter = form
        .parse()
        .map_err(|errors| Error::BadRequest(errors.join("\n")))?;
    if filter.is_empty() {
        return Err(Error::BadRequest(
            "a bulk action needs a filter: choose at least a state, queue or kind".into(),
        ));
    }
    let narrowed = action.narrow(&filter);
    let about = describe(&form);
    let back = format!("{}?{}", ctx.href("/jobs"), form.query());
    let expected = if narrowed.states.is_empty() {
        admin::Count::exactly(0)
    } else {
        admin::count_matching(
            &app.pool,
            &narrowed,
            app.options.exact_count_limit,
            app.options.search_window,
        )
        .await?
    };
    if !fields.confirmed() {
        let mut hidden: Vec<(String, String)> = form
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        hidden.push(("action".into(), action.to_string()));
        let n = match (expected.exact, expected.searched) {
            (true, _) => count(expected.count),
            // Counted among the newest jobs only: the action walks them all.
            (false, Some(_)) => format!("at least {}", count(expected.count)),
            (false, None) => format!("about {}", count(expected.count)),
        };
        return Ok(render(Confirm {
            heading: format!("{} {n} job(s)?", action_label(action)),
            details: vec![
                format!("Every job matching {about}."),
                changes_words(action),
                format!(
                    "It runs in batches of {} jobs, each its own transaction; its page shows how far it got.",
                    count(app.options.batch_size)
                ),
            ],
            post_to: ctx.href("/actions/filter"),
            hidden,
            button: format!("{} {n} job(s)", action_label(action)),
            danger: matches!(action, Action::Delete | Action::Cancel),
            back,
            ctx,
            nav: "/jobs",
        })?
        .into_response());
    }
    let op = Operation {
        action,
        about: format!("jobs matching {about}"),
        expected: expected.count,
        expected_exact: expected.exact,
        progress: Default::default(),
        started: std::time::Instant::now(),
        took: None,
        error: None,
        missing: 0,
        back,
    };
    let id = operations::start(&app, op, Jobs::Filter(narrowed));
    Ok(Redirect::to(&ctx.href(&format!("/operations/{id}"))).into_response())
}

/// The filter in words: `state = discarded, queue = email`.
fn describe(form: &FilterForm) -> String {
    form.pairs()
        .into_iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `POST /queues/{name}/{action}`: pause, resume, or `limit`: set the
/// queue's limits from the form's `concurrency` and `rate` (`100/1m`),
/// replacing those it had, or clear them (`clear=yes`).
pub(crate) async fn queue(
    State(app): State<Shared>,
    ctx: Ctx,
    Path((name, action)): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, Error> {
    let done = match action.as_str() {
        "pause" => jobq::pause_queue(&app.pool, &name).await.map(|()| "pause"),
        "resume" => jobq::resume_queue(&app.pool, &name)
            .await
            .map(|()| "resume"),
        "limit" => match queue_limit(&fields)? {
            Some(limit) => jobq::set_queue_limit(&app.pool, &name, limit)
                .await
                .map(|()| "limit"),
            None => jobq::clear_queue_limit(&app.pool, &name)
                .await
                .map(|()| "unlimit"),
        },
        _ => return Err(Error::NotFound(format!("no queue action `{action}`"))),
    }
    .map_err(|e| match e {
        jobq::Error::Queue(message) => Error::BadRequest(message),
        other => Error::Database(other),
    })?;
    Ok(Redirect::to(&ctx.href(&format!("/queues/{name}?done={done}"))).into_response())
}

/// The limit a queue's limit form asks for; `None` to clear its limits.
fn queue_limit(fields: &Fields) -> Result<Option<jobq::Limit>, Error> {
    if fields.get("clear") == Some("yes") {
        return Ok(None);
    }
    let concurrency = match fields.get("concurrency").unwrap_or_default().trim() {
        "" => None,
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Error::BadRequest(format!(
                    "the concurrency must be a whole number of at least 1, not `{n}`; \
                     pause the queue to stop it"
                )));
            }
        },
    };
    let rate = match fields.get("rate").unwrap_or_default().trim() {
        "" => None,
        r => Some(jobq::Rate::parse(r).map_err(|e| match e {
            jobq::Error::Queue(message) => Error::BadRequest(format!("rate `{r}`: {message}")),
            other => Error::BadRequest(format!("rate `{r}`: {other}")),
        })?),
    };
    match (concurrency, rate) {
        (Some(n), Some(r)) => Ok(Some(jobq::Limit::concurrency(n).and_rate(r))),
        (Some(n), None) => Ok(Some(jobq::Limit::concurrency(n))),
        (None, Some(r)) => Ok(Some(jobq::Limit::rate(r))),
        (None, None) => Err(Error::BadRequest(
            "give a concurrency (`50`), a rate (`100/1m`) or both; or clear the queue's limits"
                .into(),
        )),
    }
}

/// `POST /enqueue`.
pub(crate) async fn enqueue(
    State(app): State<Shared>,
    ctx: Ctx,
    fields: Fields,
) -> Result<Response, Error> {
    let form = EnqueueForm {
        kind: fields.get("kind").unwrap_or_default().to_owned(),
        queue: fields.get("queue").unwrap_or_default().trim().to_owned(),
        priority: fields.get("priority").unwrap_or_default().trim().to_owned(),
        args: fields.get("args").unwrap_or_default().to_owned(),
        run_at: fields.get("run_at").unwrap_or_default().trim().to_owned(),
    };
    match named_job(&app, &form).await? {
        Err(message) => crate::views::enqueue::form(&app, ctx, form, Some(message)).await,
        Ok(job) => match admin::enqueue_json(&app.pool, &job).await {
            Ok(id) => Ok(Redirect::to(&ctx.href(&format!("/jobs/{id}"))).into_response()),
            Err(jobq::Error::Enqueue(message)) => {
                crate::views::enqueue::form(&app, ctx, form, Some(message)).await
            }
            Err(other) => Err(Error::Database(other)),
        },
    }
}

/// The job the form describes, or what is wrong with it.
async fn named_job(
    app: &Shared,
    form: &EnqueueForm,
) -> Result<Result<admin::NamedJob, String>, Error> {
    let kinds = admin::kinds(&app.pool).await?;
    let Some(kind) = kinds.into_iter().find(|k| k.kind == form.kind) else {
        return Ok(Err(format!(
            "no live worker knows the kind `{}`; pick one from the list",
            form.kind
        )));
    };
    let args: serde_json::Value = match serde_json::from_str(&form.args) {
        Ok(args) => args,
        Err(e) => return Ok(Err(format!("the arguments are not JSON: {e}"))),
    };
    let priority = match form.priority.as_str() {
        "" => kind.priority,
        p => match p.parse::<i16>() {
            Ok(p) => p,
            Err(_) => {
                return Ok(Err(format!(
                    "the priority must be a whole number from -32768 to 32767, not `{p}`"
                )));
            }
        },
    };
    let run_at = match form.run_at.as_str() {
        "" => None,
        text => {
            let probe = FilterForm {
                since: text.to_owned(),
                ..FilterForm::default()
            };
            match probe.parse() {
                Ok(filter) => filter.since,
                Err(errors) => {
                    return Ok(Err(errors.join(" ").replacen("since:", "run at:", 1)));
                }
            }
        }
    };
    Ok(Ok(admin::NamedJob {
        kind: kind.kind,
        queue: if form.queue.is_empty() {
            kind.queue
        } else {
            form.queue.clone()
        },
        args,
        priority,
        max_attempts: kind.max_attempts,
        run_at,
    }))
}
