//! How the commands print: aligned tables, readable durations and counts,
//! JSON.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Error, Result};

/// Writes to stdout; when stdout is closed (a pipe into `head`), ends the
/// program quietly with success, as other command-line tools do.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("jobq: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// Prints `value` as one JSON document on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::new(format!("cannot write JSON: {e}")))?;
    out!("{text}");
    Ok(())
}

/// A table of text columns, printed aligned: text left, numbers right.
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, two spaces between columns, no trailing blanks.
    pub(crate) fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        // A column is right-aligned when its cells read as numbers (or `-`),
        // at least one of them a number.
        let number = |c: &str| {
            c.trim_end_matches('+')
                .replace(',', "")
                .parse::<f64>()
                .is_ok()
        };
        let numeric: Vec<bool> = (0..widths.len())
            .map(|i| {
                self.rows.iter().all(|r| r[i] == "-" || number(&r[i]))
                    && self.rows.iter().any(|r| number(&r[i]))
            })
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - width(cell);
                if numeric[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    pub(crate) fn print(&self) {
        out_raw!("{}", self.render());
    }
}

/// A duration as people write it: `250ms`, `2.5s`, `3m 12s`, `2h 5m`
/// ([`jobq::admin::format_duration`], as the dashboard writes it).
pub(crate) fn duration(d: Duration) -> String {
    jobq::admin::format_duration(d)
}

/// How long ago (`3m ago`) or ahead (`in 20s`) `t` is.
pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    jobq::admin::format_relative(t, now)
}

/// An optional time, relative to now, or `-`.
pub(crate) fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "-".into(), |t| relative(t, now))
}

/// A time as `2026-11-30 09:15:02Z`.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// A count with thousands separators: `1,234,567`.
pub(crate) fn count(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    match i64::try_from(n) {
        Ok(n) => jobq::admin::format_count(n),
        Err(_) => n.to_string(),
    }
}

/// `text` on one line, cut to `max` characters with an ellipsis.
pub(crate) fn cut(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// A queue's limit and its use: `2/5 running; 40/100 started per 1m`.
pub(crate) fn queue_limit(l: &jobq::admin::QueueLimit) -> String {
    let mut parts = Vec::new();
    if let Some(c) = l.concurrency {
        parts.push(in_use(l.running, c, "running"));
    }
    if let Some(r) = l.rate {
        parts.push(started(l.started, r));
    }
    parts.join("; ")
}

/// `used/limit what`: `2/5 running`.
pub(crate) fn in_use(used: i64, limit: i64, what: &str) -> String {
    format!("{}/{} {what}", count(used), count(limit))
}

/// Starts against a rate: `40/100 started per 1m`.
pub(crate) fn started(used: i64, rate: jobq::admin::RateLimit) -> String {
    format!(
        "{} per {}",
        in_use(used, rate.count, "started"),
        rate.window_text()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators_and_tables_align() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        let mut t = Table::new(&["QUEUE", "JOBS"]);
        t.row(vec!["email".into(), "1,200".into()]);
        t.row(vec!["default".into(), "3".into()]);
        assert_eq!(
            t.render(),
            "QUEUE     JOBS\nemail    1,200\ndefault      3\n"
        );
    }

    #[test]
    fn cut_keeps_one_line() {
        assert_eq!(cut("a\nb", 10), "a b");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
