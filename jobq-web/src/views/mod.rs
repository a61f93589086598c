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

/// `1234567` as `1,234,567`.
pub(crate) fn count(n: impl Borrow<i64>) -> String {
    let n = *n.borrow();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A duration in its two largest units: `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub(crate) fn duration(d: impl Borrow<Duration>) -> String {
    let d = *d.borrow();
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, minutes) {
        (0, 0, 0) if secs < 10 => format!("{:.1}s", d.as_secs_f64()),
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
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
    let (now, then) = (*now.borrow(), *then.borrow());
    match (now - then).to_std() {
        Ok(ago) => format!("{} ago", duration(ago)),
        Err(_) => format!("in {}", duration((then - now).to_std().unwrap_or_default())),
    }
}

/// A queue's unfinished and kept counts, by state, for a table row.
pub(crate) fn state_counts(q: &jobq::admin::QueueOverview) -> [(&'static str, i64); 6] {
    [
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(10_000_000), "10,000,000");
        assert_eq!(count(-1234), "-1,234");
    }

    #[test]
    fn durations_read_in_their_two_largest_units() {
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(duration(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d 4h"
        );
    }
}
