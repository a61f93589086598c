//! Filters, times, durations and counts as people type and read them: one
//! reading and one writing, for the command line and the dashboard alike.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::JobFilter;
use crate::job::JobState;

/// A job filter as a person types it (a form's fields, command-line
/// flags): text, several values of a field separated by commas.
/// [`FilterText::parse`] turns it into a [`JobFilter`], reporting every
/// field that does not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterText {
    /// States: `discarded`, `retryable,discarded`.
    pub states: Vec<String>,
    /// Queue names.
    pub queues: Vec<String>,
    /// Kinds (stored names).
    pub kinds: Vec<String>,
    /// Job ids, separated by commas or white space.
    pub ids: Vec<String>,
    /// A JSON object the arguments must contain: `{"user_id": 7}`.
    pub args: Option<String>,
    /// Jobs enqueued since then: a time or a duration ago ([`parse_time`]).
    pub since: Option<String>,
    /// Jobs enqueued before then, as `since`.
    pub until: Option<String>,
}

/// A field of a [`FilterText`] that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// The field: `state`, `queue`, `kind`, `id`, `args`, `since` or `until`
    /// (a command line writes it `--state`).
    pub field: &'static str,
    /// What is wrong with it, and how to write it.
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FilterError {}

/// The non-empty comma-separated values of `values`, trimmed.
fn split<'a>(values: &'a [String], by: &'a [char]) -> impl Iterator<Item = &'a str> + 'a {
    values
        .iter()
        .flat_map(move |v| v.split(by))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl FilterText {
    /// The filter, or every field that does not read (times relative to
    /// `now`). Empty fields match every job.
    pub fn parse(&self, now: DateTime<Utc>) -> Result<JobFilter, Vec<FilterError>> {
        let mut errors = Vec::new();
        let mut error = |field, message| errors.push(FilterError { field, message });
        let mut filter = JobFilter::default();
        for name in split(&self.states, &[',']) {
            match name.parse::<JobState>() {
                Ok(state) => filter.states.push(state),
                Err(e) => error("state", e.to_string()),
            }
        }
        filter.queues = split(&self.queues, &[',']).map(str::to_owned).collect();
        filter.kinds = split(&self.kinds, &[',']).map(str::to_owned).collect();
        for id in split(&self.ids, &[',', ' ', '\t', '\n']) {
            match id.parse::<i64>() {
                Ok(id) => filter.ids.push(id),
                Err(_) => error("id", format!("`{id}` is not a job id")),
            }
        }
        if let Some(text) = self.args.as_deref().filter(|t| !t.trim().is_empty()) {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) if value.is_object() => filter.args = Some(value),
                Ok(_) => error(
                    "args",
                    "must be a JSON object, like {\"user_id\": 7}".to_owned(),
                ),
                Err(e) => error(
                    "args",
                    format!(
                        "not JSON ({e}); write the arguments to look for, like {{\"user_id\": 7}}"
                    ),
                ),
            }
        }
        for (field, text, into) in [
            ("since", &self.since, &mut filter.since),
            ("until", &self.until, &mut filter.until),
        ] {
            if let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) {
                match parse_time(text, now) {
                    Ok(t) => *into = Some(t),
                    Err(e) => error(field, e),
                }
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            error("until", "must come after since".to_owned());
        }
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }
}

/// A time as people type it: RFC 3339 (`2026-11-30T09:00:00+01:00`), a
/// date or a date and time in UTC (`2026-11-30`, `2026-11-30 09:00`,
/// `2026-11-30T09:00:05`, with or without a closing `Z` or `UTC`), or a
/// duration ago (`90m`, `2h 30m`, `7d`) counted back from `now`.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let utc = text
        .trim_end_matches("UTC")
        .trim_end_matches('Z')
        .trim()
        .replacen('T', " ", 1);
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&utc, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(&utc, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(ago) = humantime::parse_duration(text)
        && let Ok(ago) = chrono::Duration::from_std(ago)
        && let Some(t) = now.checked_sub_signed(ago)
    {
        return Ok(t);
    }
    Err(format!(
        "`{text}` is neither a time (2026-11-30, 2026-11-30 09:00 in UTC, or RFC 3339) nor a \
         duration ago (90m, 2h, 7d)"
    ))
}

/// A duration as people write it, in its two largest units, a zero second
/// unit left out: `250ms`, `2.5s`, `45s`, `3m 12s`, `1h`, `2h 5m`, `3d 4h`.
/// Under 10 seconds it keeps a tenth of a second.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.is_zero() {
        return "0s".into();
    }
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    if secs < 10 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let first = units
        .iter()
        .position(|(_, size)| secs >= *size)
        .unwrap_or(units.len() - 1);
    let (name, size) = units[first];
    let mut out = format!("{}{name}", secs / size);
    if let Some((next, next_size)) = units.get(first + 1) {
        let n = secs % size / next_size;
        if n > 0 {
            out.push_str(&format!(" {n}{next}"));
        }
    }
    out
}

/// How long before `now` `then` was (`3m 12s ago`), or after it (`in 5s`).
pub fn format_relative(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match (now - then).to_std() {
        Ok(ago) => format!("{} ago", format_duration(ago)),
        Err(_) => format!(
            "in {}",
            format_duration((then - now).to_std().unwrap_or_default())
        ),
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn format_count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    #[test]
    fn times_read_as_dates_times_or_durations_ago() {
        let at = |s| parse_time(s, noon()).unwrap();
        let utc = |d, h, m| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        assert_eq!(at("2h"), utc(30, 10, 0));
        assert_eq!(at("1h 30m"), utc(30, 10, 30));
        assert_eq!(at("7d"), utc(23, 12, 0));
        assert_eq!(at("2026-11-01"), utc(1, 0, 0));
        assert_eq!(at("2026-11-01 14:05"), utc(1, 14, 5));
        assert_eq!(at("2026-11-01T14:05:00"), utc(1, 14, 5));
        assert_eq!(at("2026-11-01 14:05 UTC"), utc(1, 14, 5));
        assert_eq!(at("2026-11-01T08:00:00+01:00"), utc(1, 7, 0));
        assert_eq!(at("2026-11-01T08:00:00Z"), utc(1, 8, 0));
        let e = parse_time("yesterday-ish", noon()).unwrap_err();
        assert!(e.contains("`yesterday-ish` is neither a time"), "{e}");
    }

    #[test]
    fn a_filter_reads_every_field() {
        let text = FilterText {
            states: vec!["discarded, retryable".into()],
            queues: vec!["email".into(), " ".into()],
            kinds: vec!["send_email,resize".into()],
            ids: vec!["12, 15 9007199254740993".into()],
            args: Some(r#"{"user_id": 7}"#.into()),
            since: Some("2026-11-01 14:05".into()),
            until: Some("1h".into()),
        };
        let filter = text.parse(noon()).unwrap();
        assert_eq!(
            filter.states,
            vec![JobState::Discarded, JobState::Retryable]
        );
        assert_eq!(filter.queues, vec!["email"]);
        assert_eq!(filter.kinds, vec!["send_email", "resize"]);
        assert_eq!(filter.ids, vec![12, 15, 9_007_199_254_740_993]);
        assert_eq!(filter.args, Some(serde_json::json!({"user_id": 7})));
        assert_eq!(
            filter.until,
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 0).unwrap())
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let text = FilterText {
            states: vec!["done".into()],
            ids: vec!["12a".into()],
            args: Some("{user_id: 7}".into()),
            since: Some("yesterday".into()),
            ..FilterText::default()
        };
        let errors: Vec<String> = text
            .parse(noon())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("state: unknown job state `done`"));
        assert!(errors[1].starts_with("id: `12a` is not a job id"));
        assert!(errors[2].starts_with("args: not JSON"));
        assert!(errors[3].starts_with("since: `yesterday` is neither"));
        let not_object = FilterText {
            args: Some("7".into()),
            since: Some("1h".into()),
            until: Some("2h".into()),
            ..FilterText::default()
        };
        let errors = not_object.parse(noon()).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "args: must be a JSON object, like {\"user_id\": 7}"
        );
        assert_eq!(errors[1].to_string(), "until: must come after since");
    }

    #[test]
    fn durations_read_in_their_two_largest_units() {
        let d = |s| format_duration(Duration::from_secs(s));
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(d(45), "45s");
        assert_eq!(d(192), "3m 12s");
        assert_eq!(d(3600), "1h");
        assert_eq!(d(3605), "1h");
        assert_eq!(d(7530), "2h 5m");
        assert_eq!(d(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(
            format_relative(noon() - chrono::Duration::seconds(192), noon()),
            "3m 12s ago"
        );
        assert_eq!(
            format_relative(noon() + chrono::Duration::seconds(45), noon()),
            "in 45s"
        );
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1000), "1,000");
        assert_eq!(format_count(10_000_000), "10,000,000");
        assert_eq!(format_count(-1234), "-1,234");
    }
}
