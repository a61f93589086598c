//! Limits and how much of each is in use: a queue's, set at run time
//! ([`QueueOverview::limit`](super::QueueOverview::limit)), and each job
//! kind's, declared by `#[job]` and published by live workers
//! ([`Overview::kind_limits`](super::Overview::kind_limits)).
//!
//! Use is counted as the limited claim counts it: running
//! means a job row in state `running`; started means an attempt claimed in
//! the rate's window up to now.

use std::time::Duration;

use serde::Serialize;

use super::seconds;

/// How many of a partitioned kind's busiest partitions
/// [`PartitionsUse::busiest`] lists.
pub const BUSIEST_PARTITIONS: usize = 5;

/// A rate limit: at most `count` attempts started in any window of
/// `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Attempts allowed per window.
    pub count: i64,
    /// The window's length.
    #[serde(rename = "window_seconds", with = "seconds")]
    pub window: Duration,
}

impl RateLimit {
    /// The window as `#[job(rate = ..)]` writes it: `1m`, `30s`, `2h`.
    pub fn window_text(&self) -> String {
        let ms = self.window.as_millis();
        let (n, unit) = match ms {
            _ if ms.is_multiple_of(3_600_000) => (ms / 3_600_000, "h"),
            _ if ms.is_multiple_of(60_000) => (ms / 60_000, "m"),
            _ if ms.is_multiple_of(1_000) => (ms / 1_000, "s"),
            _ => (ms, "ms"),
        };
        format!("{n}{unit}")
    }
}

impl std::fmt::Display for RateLimit {
    /// As `#[job(rate = ..)]` writes it: `100/1m`, `10/1s`, `500/1h`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, self.window_text())
    }
}

/// A queue's limits, set with [`set_queue_limit`](crate::set_queue_limit),
/// and their use now. Every job of the queue counts, whatever its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueLimit {
    /// At most this many of the queue's jobs run at once.
    pub concurrency: Option<i64>,
    /// At most this many of its attempts start per window.
    pub rate: Option<RateLimit>,
    /// Its jobs running now: what the concurrency limit counts.
    pub running: i64,
    /// With a rate: its attempts started in the window up to now, what the
    /// rate counts (0 without one).
    pub started: i64,
}

/// A job kind's limits, as `#[job(concurrency, rate, partition)]` declares
/// them and live workers publish them, and their use now. Workers that
/// disagree about a kind's limits (during a deploy) give one entry per
/// version, each with the same use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindLimits {
    /// The job's stored name, which names its limits.
    pub kind: String,
    /// Its default queue (its jobs count against its limits in any queue).
    pub queue: String,
    /// At most this many attempts run at once (in each partition, with
    /// `partition`).
    pub concurrency: Option<i64>,
    /// At most this many attempts start per window (in each partition).
    pub rate: Option<RateLimit>,
    /// The argument whose values the limits hold per.
    pub partition: Option<String>,
    /// Attempts running now, every partition together.
    pub running: i64,
    /// With a rate: attempts started in the window up to now, every
    /// partition together (0 without one).
    pub started: i64,
    /// With `partition`: how many partitions are busy and at their limit,
    /// and the busiest.
    pub partitions: Option<PartitionsUse>,
    /// How many live workers declare these limits.
    pub workers: i64,
}

impl KindLimits {
    /// Whether `running` attempts and `started` starts leave no room under
    /// these limits (one partition's figures, with `partition`).
    pub fn full(&self, running: i64, started: i64) -> bool {
        self.concurrency.is_some_and(|c| running >= c)
            || self.rate.is_some_and(|r| started >= r.count)
    }

    /// One partition of this kind and what it uses of the limits the kind
    /// has, as the CLI and the dashboard print it: `42 (2 running, 1
    /// started)`.
    pub fn describe_partition(&self, p: &PartitionUse) -> String {
        let mut uses = Vec::new();
        if self.concurrency.is_some() {
            uses.push(format!("{} running", super::format_count(p.running)));
        }
        if self.rate.is_some() {
            uses.push(format!("{} started", super::format_count(p.started)));
        }
        format!("{} ({})", p.partition, uses.join(", "))
    }
}

/// The partitions of a partitioned kind in use: [`KindLimits::partitions`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionsUse {
    /// Partitions with an attempt running, or (with a rate) started in the
    /// window.
    pub active: i64,
    /// Of those, the ones at a limit: none of their jobs may start now (the
    /// others' jobs still do).
    pub at_limit: i64,
    /// The busiest: most running first, then most started; at most
    /// [`BUSIEST_PARTITIONS`].
    pub busiest: Vec<PartitionUse>,
}

/// One partition's use, in [`PartitionsUse::busiest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionUse {
    /// The partitioning argument's value, as text (`''` when the job had
    /// none).
    pub partition: String,
    /// Its attempts running now.
    pub running: i64,
    /// With a rate: its attempts started in the window up to now.
    pub started: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_the_job_attribute_writes_them() {
        let rate = |count, ms| RateLimit {
            count,
            window: Duration::from_millis(ms),
        };
        assert_eq!(rate(100, 60_000).to_string(), "100/1m");
        assert_eq!(rate(10, 1_000).to_string(), "10/1s");
        assert_eq!(rate(5, 7_200_000).to_string(), "5/2h");
        assert_eq!(rate(3, 90_000).to_string(), "3/90s");
        assert_eq!(rate(1, 1_500).to_string(), "1/1500ms");
    }
}
