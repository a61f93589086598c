//! The job filter flags, shared by `jobs list` and the bulk actions.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::Args;
use jobq::JobState;
use jobq::admin::JobFilter;

use crate::{Error, Result};

/// Which jobs: every flag given must match; a flag given twice (or with
/// commas) matches any of its values.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Jobs in this state: available, scheduled, running, retryable,
    /// completed, discarded, cancelled.
    #[arg(long = "state", value_name = "STATE", value_delimiter = ',')]
    pub states: Vec<String>,
    /// Jobs in this queue.
    #[arg(long = "queue", value_name = "QUEUE", value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Jobs of this kind (the job's stored name).
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Jobs whose arguments contain this JSON: '{"user_id": 7}'.
    #[arg(long, value_name = "JSON")]
    pub args: Option<String>,
    /// Jobs enqueued since then: a time (2026-11-30, 2026-11-30T09:00:00Z)
    /// or a duration ago (90m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Jobs enqueued before then: a time or a duration ago, as --since.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

impl FilterArgs {
    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
            && self.queues.is_empty()
            && self.kinds.is_empty()
            && self.args.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// The filter, or an error naming the flag that does not read.
    pub fn to_filter(&self, now: DateTime<Utc>) -> Result<JobFilter> {
        let states = self
            .states
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<JobState>()
                    .map_err(|e| Error::new(format!("--state: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let args = match &self.args {
            None => None,
            Some(text) => {
                let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                    Error::new(format!(
                        "--args is not JSON ({e}); write it like '{{\"user_id\": 7}}'"
                    ))
                })?;
                if !value.is_object() {
                    return Err(Error::new(
                        "--args must be a JSON object, like '{\"user_id\": 7}'",
                    ));
                }
                Some(value)
            }
        };
        let since = self
            .since
            .as_deref()
            .map(|t| time("--since", t, now))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|t| time("--until", t, now))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(Error::new("--since must come before --until"));
        }
        Ok(JobFilter {
            ids: Vec::new(),
            states,
            queues: clean(&self.queues),
            kinds: clean(&self.kinds),
            args,
            since,
            until,
        })
    }
}

fn clean(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// A time as the flags take it: RFC 3339, a date or a date and time in UTC,
/// or a duration ago.
fn time(flag: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(ago) = humantime::parse_duration(text)
        && let Ok(ago) = chrono::Duration::from_std(ago)
        && let Some(t) = now.checked_sub_signed(ago)
    {
        return Ok(t);
    }
    Err(Error::new(format!(
        "{flag} `{text}` is neither a time (2026-11-30, 2026-11-30T09:00:00Z) nor a duration \
         ago (90m, 2h, 7d)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_read_as_dates_or_durations_ago() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let at = |s| time("--since", s, now).unwrap();
        assert_eq!(
            at("2h"),
            Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap()
        );
        assert_eq!(
            at("7d"),
            Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
        );
        assert_eq!(
            at("2026-11-01"),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            at("2026-11-01T08:00:00+01:00"),
            Utc.with_ymd_and_hms(2026, 11, 1, 7, 0, 0).unwrap()
        );
        assert!(time("--since", "yesterday-ish", now).is_err());
    }

    #[test]
    fn a_bad_flag_is_named() {
        let now = Utc::now();
        let bad = |f: FilterArgs| f.to_filter(now).unwrap_err().to_string();
        let state = FilterArgs {
            states: vec!["failed".into()],
            ..FilterArgs::default()
        };
        assert!(bad(state).starts_with("--state: unknown job state `failed`"));
        let args = FilterArgs {
            args: Some("{user_id: 7}".into()),
            ..FilterArgs::default()
        };
        assert!(bad(args).starts_with("--args is not JSON"));
    }
}
