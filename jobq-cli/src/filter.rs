//! The job filter flags, shared by `jobs list` and the bulk actions.

use chrono::{DateTime, Utc};
use clap::Args;
use jobq::admin::{FilterText, JobFilter};

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

    /// The filter, or an error naming every flag that does not read (read
    /// by [`jobq::admin::FilterText`], as the dashboard reads its form).
    pub fn to_filter(&self, now: DateTime<Utc>) -> Result<JobFilter> {
        FilterText {
            states: self.states.clone(),
            queues: self.queues.clone(),
            kinds: self.kinds.clone(),
            ids: Vec::new(),
            args: self.args.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
        .parse(now)
        .map_err(|errors| {
            let errors: Vec<String> = errors
                .iter()
                .map(|e| format!("--{}: {}", e.field, e.message))
                .collect();
            Error::new(errors.join("; "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_read_as_dates_or_durations_ago() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let since = |s: &str| {
            FilterArgs {
                since: Some(s.into()),
                ..FilterArgs::default()
            }
            .to_filter(now)
            .map(|f| f.since.unwrap())
        };
        assert_eq!(
            since("2h").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap()
        );
        assert_eq!(
            since("7d").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
        );
        assert_eq!(
            since("2026-11-01").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            since("2026-11-01T08:00:00+01:00").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 7, 0, 0).unwrap()
        );
        let e = since("yesterday-ish").unwrap_err().to_string();
        assert!(
            e.starts_with("--since: `yesterday-ish` is neither a time"),
            "{e}"
        );
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
        assert!(bad(args).starts_with("--args: not JSON"));
        let both = FilterArgs {
            states: vec!["failed".into()],
            since: Some("1h".into()),
            until: Some("2h".into()),
            ..FilterArgs::default()
        };
        let e = bad(both);
        assert!(e.contains("; --until: must come after since"), "{e}");
    }
}
