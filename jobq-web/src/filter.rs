//! The job list's filter as the page's form holds it (strings, as typed),
//! and as `jobq::admin` takes it. A field that does not parse is reported
//! on the page, never guessed at.

use chrono::Utc;
use jobq::admin::{FilterText, JobFilter};
use serde::Deserialize;

/// The filter fields of the job list's form and of a bulk action's form.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct FilterForm {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub args: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
}

/// The names of [`FilterForm`]'s fields, for forms that carry it along.
pub(crate) const FIELDS: [&str; 7] = ["state", "queue", "kind", "args", "id", "since", "until"];

impl FilterForm {
    /// Reads the filter fields out of a posted form.
    pub fn from_pairs(pairs: &[(String, String)]) -> FilterForm {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        FilterForm {
            state: get("state"),
            queue: get("queue"),
            kind: get("kind"),
            args: get("args"),
            id: get("id"),
            since: get("since"),
            until: get("until"),
        }
    }

    /// The fields as (name, value) pairs, the empty ones left out.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        FIELDS
            .into_iter()
            .zip([
                &self.state,
                &self.queue,
                &self.kind,
                &self.args,
                &self.id,
                &self.since,
                &self.until,
            ])
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k, v.as_str()))
            .collect()
    }

    /// The filter as a query string (`state=discarded&queue=email`), for links.
    pub fn query(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            out.append_pair(k, v);
        }
        out.finish()
    }

    /// The filter, or what is wrong with each field that does not parse
    /// (read by [`jobq::admin::FilterText`], as the command line reads its
    /// flags; a time may be a duration ago, `2h`).
    pub fn parse(&self) -> Result<JobFilter, Vec<String>> {
        let some = |v: &String| Some(v.clone()).filter(|v| !v.trim().is_empty());
        FilterText {
            states: vec![self.state.clone()],
            queues: vec![self.queue.clone()],
            kinds: vec![self.kind.clone()],
            ids: vec![self.id.clone()],
            args: some(&self.args),
            since: some(&self.since),
            until: some(&self.until),
        }
        .parse(Utc::now())
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use jobq::JobState;

    #[test]
    fn a_full_form_parses_into_the_filter() {
        let form = FilterForm {
            state: "discarded, retryable".into(),
            queue: "email".into(),
            kind: "send_email".into(),
            args: r#"{"user_id": 7}"#.into(),
            id: "12, 15 9007199254740993".into(),
            since: "2026-01-31 14:05".into(),
            until: "2026-02-01T00:00:00+01:00".into(),
        };
        let filter = form.parse().unwrap();
        assert_eq!(
            filter.states,
            vec![JobState::Discarded, JobState::Retryable]
        );
        assert_eq!(filter.queues, vec!["email".to_owned()]);
        assert_eq!(filter.kinds, vec!["send_email".to_owned()]);
        assert_eq!(filter.args, Some(serde_json::json!({"user_id": 7})));
        assert_eq!(filter.ids, vec![12, 15, 9_007_199_254_740_993]);
        assert_eq!(
            filter.since.unwrap().to_rfc3339(),
            "2026-01-31T14:05:00+00:00"
        );
        assert_eq!(
            filter.until.unwrap().to_rfc3339(),
            "2026-01-31T23:00:00+00:00"
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let form = FilterForm {
            state: "done".into(),
            args: "{user_id: 7}".into(),
            id: "12a".into(),
            since: "yesterday".into(),
            ..FilterForm::default()
        };
        let errors = form.parse().unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("state: unknown job state `done`"));
        assert!(errors[1].contains("`12a` is not a job id"));
        assert!(errors[2].starts_with("args: not JSON"));
        assert!(errors[3].contains("`yesterday` is neither a time"));
    }

    #[test]
    fn the_query_string_round_trips_through_the_form() {
        let form = FilterForm {
            state: "discarded".into(),
            kind: "a&b=c".into(),
            args: r#"{"x": "</script>"}"#.into(),
            ..FilterForm::default()
        };
        let query = form.query();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let back = FilterForm::from_pairs(&pairs);
        assert_eq!(back.kind, "a&b=c");
        assert_eq!(back.args, form.args);
        assert_eq!(back.state, "discarded");
    }
}
