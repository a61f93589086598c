//! The rules of [jobq](https://docs.rs/jobq) that are checked twice: by the
//! `#[job]` attribute at compile time (`jobq-macros`) and by the runtime
//! (`jobq`) when a worker starts or a job is enqueued. Both call the functions
//! here, so a queue name or cron expression the attribute accepts is one the
//! runtime accepts, and the two report it in the same words.
//!
//! Depend on `jobq`, not on this crate.

#![deny(missing_docs)]

use std::fmt;

use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

/// The longest queue name, in bytes.
pub const MAX_QUEUE_NAME_LEN: usize = 63;

/// A queue name that breaks the rule of [`check_queue_name`]. Its `Display`
/// names the queue and says what a valid name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidQueueName {
    /// The name as given.
    pub name: String,
}

impl fmt::Display for InvalidQueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid queue name `{}`: use 1 to {MAX_QUEUE_NAME_LEN} characters from a-z, A-Z, \
             0-9, `_`, `-` and `.`",
            self.name
        )
    }
}

impl std::error::Error for InvalidQueueName {}

/// Checks a queue name. A queue name ends up in SQL and in metrics labels, so
/// it stays plain: 1 to [`MAX_QUEUE_NAME_LEN`] characters from
/// `a-z A-Z 0-9 _ - .`.
///
/// ```
/// assert!(jobq_rules::check_queue_name("email.high-priority_2").is_ok());
/// assert!(jobq_rules::check_queue_name("").is_err());
/// assert!(jobq_rules::check_queue_name("no spaces").is_err());
/// ```
pub fn check_queue_name(queue: &str) -> Result<(), InvalidQueueName> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if queue.is_empty() || queue.len() > MAX_QUEUE_NAME_LEN || !queue.chars().all(ok_char) {
        return Err(InvalidQueueName {
            name: queue.to_owned(),
        });
    }
    Ok(())
}

/// Parses a cron expression the one way jobq reads it: 5 fields (minute hour
/// day-of-month month day-of-week), or 6 with seconds first, or a nickname
/// such as `@hourly`; no year field.
///
/// ```
/// assert!(jobq_rules::parse_cron("0 * * * *").is_ok());
/// assert!(jobq_rules::parse_cron("30 0 * * * *").is_ok());
/// assert!(jobq_rules::parse_cron("@daily").is_ok());
/// assert!(jobq_rules::parse_cron("0 0 * * * * 2030").is_err());
/// ```
pub fn parse_cron(expr: &str) -> Result<Cron, CronError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_name_limits() {
        assert!(check_queue_name(&"q".repeat(MAX_QUEUE_NAME_LEN)).is_ok());
        assert!(check_queue_name(&"q".repeat(MAX_QUEUE_NAME_LEN + 1)).is_err());
        for bad in ["", "a b", "a/b", "é", "a\0"] {
            assert!(check_queue_name(bad).is_err(), "{bad:?}");
        }
        for good in ["default", "A-Z_0.9", "-", "."] {
            assert!(check_queue_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn queue_name_error_says_the_rule() {
        let e = check_queue_name("a b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid queue name `a b`: use 1 to 63 characters from a-z, A-Z, 0-9, `_`, `-` and `.`"
        );
    }

    #[test]
    fn cron_fields() {
        for good in ["* * * * *", "*/5 * * * *", "0 0 9 * * MON-FRI", "@hourly"] {
            assert!(parse_cron(good).is_ok(), "{good}");
        }
        for bad in ["", "* * * *", "61 * * * *", "0 0 0 * * * 2030", "not cron"] {
            assert!(parse_cron(bad).is_err(), "{bad}");
        }
    }
}
