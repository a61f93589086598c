//! The rules of [jobq](https://docs.rs/jobq) that are checked twice: by the
//! `#[job]` attribute at compile time (`jobq-macros`) and by the runtime
//! (`jobq`) when a worker starts or a job is enqueued. Both call the functions
//! here, so a queue name or cron expression the attribute accepts is one the
//! runtime accepts, and the two report it in the same words. Also the
//! settings a job gets when `#[job]` does not give them, which the attribute
//! and the runtime's constants for them must agree on.
//!
//! Depend on `jobq`, not on this crate.

#![deny(missing_docs)]

use std::fmt;

use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

/// The longest queue name, in bytes.
pub const MAX_QUEUE_NAME_LEN: usize = 63;

/// The queue of a job whose `#[job]` does not say `queue`.
pub const DEFAULT_QUEUE: &str = "default";

/// The retries of a job whose `#[job]` does not say `retries`.
pub const DEFAULT_RETRIES: u32 = 20;

/// The priority of a job whose `#[job]` does not say `priority`.
pub const DEFAULT_PRIORITY: i16 = 0;

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

/// A cron expression that [`parse_cron`] refuses. Its `Display` quotes the
/// expression, names the field at fault when one number is out of its range,
/// and says how to write one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCron {
    /// The expression as given.
    pub expr: String,
    /// What is wrong with it, such as "the hour `25` is out of range 0-23".
    pub reason: String,
}

impl fmt::Display for InvalidCron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid cron expression `{}`: {}; use 5 fields (minute hour day month weekday), \
             6 with seconds first, or a nickname such as `@hourly`",
            self.expr, self.reason
        )
    }
}

impl std::error::Error for InvalidCron {}

/// Parses a cron expression the one way jobq reads it: 5 fields (minute hour
/// day-of-month month day-of-week), or 6 with seconds first, or a nickname
/// such as `@hourly`; no year field.
///
/// ```
/// assert!(jobq_rules::parse_cron("0 * * * *").is_ok());
/// assert!(jobq_rules::parse_cron("30 0 * * * *").is_ok());
/// assert!(jobq_rules::parse_cron("@daily").is_ok());
/// assert!(jobq_rules::parse_cron("0 0 * * * * 2030").is_err());
/// let e = jobq_rules::parse_cron("0 25 * * *").unwrap_err();
/// assert_eq!(e.reason, "the hour `25` is out of range 0-23");
/// ```
pub fn parse_cron(expr: &str) -> Result<Cron, InvalidCron> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| InvalidCron {
            expr: expr.to_owned(),
            reason: out_of_range(expr).unwrap_or_else(|| reason(&e)),
        })
}

/// croner's message, without the period that ends it (ours goes on).
fn reason(e: &CronError) -> String {
    e.to_string().trim_end_matches('.').to_owned()
}

/// The first number of `expr` outside its field's range, said in words:
/// croner only says "Number out of bounds".
fn out_of_range(expr: &str) -> Option<String> {
    const MINUTE_ON: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of the month", 1, 31),
        ("month", 1, 12),
        ("day of the week", 0, 7),
    ];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let named: Vec<(&str, u32, u32)> = match fields.len() {
        5 => MINUTE_ON.to_vec(),
        6 => [("second", 0, 59)].into_iter().chain(MINUTE_ON).collect(),
        _ => return None,
    };
    for (field, (name, low, high)) in fields.iter().zip(named) {
        // Each item of a list; a step (`/5`) is not a value of the field.
        for item in field.split(',') {
            let range = item.split('/').next().unwrap_or_default();
            for value in range.split('-') {
                // `15W`, `5L` and `5#3` carry a number before their marker.
                let digits = value.trim_end_matches(['W', 'L']);
                let digits = digits.split('#').next().unwrap_or_default();
                let Ok(n) = digits.parse::<u32>() else {
                    continue;
                };
                if n < low || n > high {
                    return Some(format!("the {name} `{n}` is out of range {low}-{high}"));
                }
            }
        }
    }
    None
}

/// The most attempts a rate limit allows in one window.
pub const MAX_RATE_COUNT: u32 = 1_000_000;
/// The longest window of a rate limit, in seconds: one day.
pub const MAX_RATE_WINDOW_SECS: u64 = 86_400;

/// A rate limit: at most `count` attempts started in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Attempts allowed per window, at least 1.
    pub count: u32,
    /// The window's length, in whole seconds, at least 1.
    pub per_secs: u64,
}

/// A rate that breaks the rule of [`parse_rate`]. Its `Display` quotes the
/// rate and says how to write one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRate {
    /// The rate as given.
    pub rate: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for InvalidRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid rate `{}`: {}; write attempts per window like \"100/1s\", \"600/1m\" or \
             \"10/1h\" (1 to {MAX_RATE_COUNT} attempts, a window of whole seconds `s`, minutes \
             `m` or hours `h`, at most a day)",
            self.rate, self.reason
        )
    }
}

impl std::error::Error for InvalidRate {}

/// Parses a rate limit: `N/W`, where `N` is how many attempts may start in
/// any window of length `W`, and `W` is a whole number of seconds, minutes
/// or hours (`1s`, `30s`, `1m`, `5m`, `1h`); the number may be left out for
/// one unit (`100/s`).
///
/// ```
/// let r = jobq_rules::parse_rate("100/1m").unwrap();
/// assert_eq!((r.count, r.per_secs), (100, 60));
/// assert_eq!(jobq_rules::parse_rate("5/h").unwrap().per_secs, 3600);
/// assert!(jobq_rules::parse_rate("100 per minute").is_err());
/// assert!(jobq_rules::parse_rate("0/1s").is_err());
/// ```
pub fn parse_rate(rate: &str) -> Result<RateSpec, InvalidRate> {
    let bad = |reason| InvalidRate {
        rate: rate.to_owned(),
        reason,
    };
    let (count, window) = rate
        .split_once('/')
        .ok_or_else(|| bad("no `/` between the attempts and the window"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| bad("the attempts are not a whole number"))?;
    if count == 0 || count > MAX_RATE_COUNT {
        return Err(bad("the attempts are out of range"));
    }
    let window = window.trim();
    let unit_at = window
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("the window has no unit"))?;
    let (n, unit) = window.split_at(unit_at);
    let n: u64 = if n.is_empty() {
        1
    } else {
        n.parse().map_err(|_| bad("the window is too long"))?
    };
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad("the window's unit is not `s`, `m` or `h`")),
    };
    let per_secs = n.saturating_mul(unit_secs);
    if per_secs == 0 {
        return Err(bad("the window is zero"));
    }
    if per_secs > MAX_RATE_WINDOW_SECS {
        return Err(bad("the window is longer than a day"));
    }
    Ok(RateSpec { count, per_secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        for (good, count, secs) in [
            ("100/1s", 100, 1),
            ("100/1m", 100, 60),
            ("10/1h", 10, 3600),
            ("3/30s", 3, 30),
            ("7/s", 7, 1),
            ("1000000/24h", 1_000_000, 86_400),
        ] {
            let r = parse_rate(good).unwrap();
            assert_eq!((r.count, r.per_secs), (count, secs), "{good}");
        }
        for bad in [
            "",
            "100",
            "/1s",
            "0/1s",
            "-1/1s",
            "100/0s",
            "100/1d",
            "100/1ms",
            "100/25h",
            "1000001/1s",
            "100/1 m x",
            "1.5/1s",
            "100/m1",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_error_says_how_to_write_one() {
        let e = parse_rate("100/1d").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid rate `100/1d`: the window's unit is not `s`, `m` or `h`; write attempts per \
             window like \"100/1s\", \"600/1m\" or \"10/1h\" (1 to 1000000 attempts, a window \
             of whole seconds `s`, minutes `m` or hours `h`, at most a day)"
        );
    }

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

    #[test]
    fn an_out_of_range_number_names_its_field() {
        for (expr, reason) in [
            ("61 * * * *", "the minute `61` is out of range 0-59"),
            ("0 24 * * *", "the hour `24` is out of range 0-23"),
            ("0 0 0 * *", "the day of the month `0` is out of range 1-31"),
            (
                "0 0 1-32 * *",
                "the day of the month `32` is out of range 1-31",
            ),
            ("0 0 * 13 *", "the month `13` is out of range 1-12"),
            ("0 0 * * 1,8", "the day of the week `8` is out of range 0-7"),
            ("60 0 0 * * *", "the second `60` is out of range 0-59"),
            (
                "0 0 0 * * 9#2",
                "the day of the week `9` is out of range 0-7",
            ),
        ] {
            let e = parse_cron(expr).unwrap_err();
            assert_eq!(e.reason, reason, "{expr}");
            assert!(e.to_string().starts_with(&format!(
                "invalid cron expression `{expr}`: {reason}; use 5 fields"
            )));
        }
        // A step is not a value: `*/90` is croner's to judge, in its words.
        let e = parse_cron("not cron at all x").unwrap_err();
        assert!(
            !e.reason.is_empty() && !e.reason.ends_with('.'),
            "{}",
            e.reason
        );
    }
}
