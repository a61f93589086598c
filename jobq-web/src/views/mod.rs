//! One module per page. Handlers read through `jobq::admin` and hand plain
//! values to templates compiled by askama, which escape every one of them.

pub(crate) mod cron;
pub(crate) mod enqueue;
pub(crate) mod job;
pub(crate) mod jobs;
pub(crate) mod overview;
pub(crate) mod queues;
pub(crate) mod workers;

use std::borrow::Borrow;
use std::time::Duration;

use askama::Template;
use axum::response::Html;
use chrono::{DateTime, Utc};

use crate::error::Error;

/// Renders a page.
pub(crate) fn render(page: impl Template) -> Result<Html<String>, Error> {
    Ok(Html(page.render()?))
}

/// `1234567` as `1,234,567` ([`jobq::admin::format_count`]).
pub(crate) fn count(n: impl Borrow<i64>) -> String {
    jobq::admin::format_count(*n.borrow())
}

/// A duration in its two largest units: `45s`, `3m 12s`, `2h 5m`, `3d 4h`
/// ([`jobq::admin::format_duration`], as the command line writes it).
pub(crate) fn duration(d: impl Borrow<Duration>) -> String {
    jobq::admin::format_duration(*d.borrow())
}

/// A time as the page shows it: UTC, to the second.
pub(crate) fn time(t: impl Borrow<DateTime<Utc>>) -> String {
    t.borrow().format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An optional time, or a dash.
pub(crate) fn time_or_dash(t: impl Borrow<Option<DateTime<Utc>>>) -> String {
    t.borrow().as_ref().map_or_else(|| "—".to_owned(), time)
}

/// How long before `now` `then` was: `3m 12s ago`, or `in 5s` ahead.
pub(crate) fn relative(
    now: impl Borrow<DateTime<Utc>>,
    then: impl Borrow<DateTime<Utc>>,
) -> String {
    jobq::admin::format_relative(*then.borrow(), *now.borrow())
}

/// A queue's unfinished and kept counts, by state, for a table row.
pub(crate) fn state_counts(q: &jobq::admin::QueueOverview) -> [(&'static str, i64); 7] {
    [
        ("pending", q.pending),
        ("available", q.available),
        ("scheduled", q.scheduled),
        ("running", q.running),
        ("retryable", q.retryable),
        ("discarded", q.discarded),
        ("cancelled", q.cancelled),
    ]
}

/// An action as a button says it.
pub(crate) fn action_label(action: impl Borrow<jobq::admin::Action>) -> &'static str {
    use jobq::admin::Action;
    match action.borrow() {
        Action::Retry => "Retry",
        Action::Cancel => "Cancel",
        Action::Delete => "Delete",
        Action::RunNow => "Run now",
    }
}

/// A query-string value, percent-encoded.
pub(crate) fn url(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
