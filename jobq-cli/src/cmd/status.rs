//! `jobq status`: every queue at a glance, and the warnings.

use clap::Args;
use sqlx::PgPool;

use jobq::admin::{KindLimits, Overview};

use crate::Result;
use crate::output::{self, Table, count};

/// `jobq status [--json]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        let o = jobq::admin::overview(pool).await?;
        if self.json {
            return output::json(&o);
        }
        if o.queues.is_empty() {
            out!("no queues: no job was enqueued yet, and no worker runs");
        } else {
            let mut t = Table::new(&[
                "QUEUE",
                "PENDING",
                "AVAILABLE",
                "SCHEDULED",
                "RUNNING",
                "RETRYABLE",
                "DISCARDED",
                "LAG",
                "DONE 1MIN",
                "DONE 1H",
                "FAILED 1MIN",
                "FAILED 1H",
                "WORKERS",
            ]);
            for q in &o.queues {
                let name = if q.paused {
                    format!("{} (paused)", q.queue)
                } else {
                    q.queue.clone()
                };
                t.row(vec![
                    name,
                    count(q.pending),
                    count(q.available),
                    count(q.scheduled),
                    count(q.running),
                    count(q.retryable),
                    count(q.discarded),
                    q.lag.map_or_else(|| "-".into(), output::duration),
                    count(q.completed_last_minute),
                    count(q.completed_last_hour),
                    count(q.failed_last_minute),
                    count(q.failed_last_hour),
                    count(q.workers),
                ]);
            }
            t.print();
        }
        let limits = limits_table(&o);
        if !limits.is_empty() {
            out!("\nLimits:");
            limits.print();
        }
        out!(
            "\n{} live worker(s); {}",
            o.workers,
            if o.warnings.is_empty() {
                "no warnings".to_owned()
            } else {
                format!("{} warning(s):", o.warnings.len())
            }
        );
        for w in &o.warnings {
            out!("  warning: {w}");
        }
        Ok(())
    }
}

/// Every queue's limit and every kind's, each with its use now.
fn limits_table(o: &Overview) -> Table {
    let mut t = Table::new(&[
        "LIMIT OF",
        "CONCURRENCY",
        "RATE",
        "PARTITIONS AT LIMIT",
        "BUSIEST PARTITIONS",
    ]);
    let dash = || "-".to_owned();
    for q in &o.queues {
        let Some(l) = &q.limit else { continue };
        t.row(vec![
            format!("queue {}", q.queue),
            l.concurrency
                .map_or_else(dash, |c| output::in_use(l.running, c, "running")),
            l.rate.map_or_else(dash, |r| output::started(l.started, r)),
            dash(),
            dash(),
        ]);
    }
    for k in &o.kind_limits {
        t.row(kind_row(k));
    }
    t
}

/// A kind's limits: in use against the limit, or, partitioned, in all
/// partitions with each one's limit, the partitions at their limit and the
/// busiest.
fn kind_row(k: &KindLimits) -> Vec<String> {
    let dash = || "-".to_owned();
    let Some(parts) = &k.partitions else {
        return vec![
            format!("kind {}", k.kind),
            k.concurrency
                .map_or_else(dash, |c| output::in_use(k.running, c, "running")),
            k.rate.map_or_else(dash, |r| output::started(k.started, r)),
            dash(),
            dash(),
        ];
    };
    let each = k.partition.as_deref().unwrap_or_default();
    let busiest: Vec<String> = parts
        .busiest
        .iter()
        .map(|p| k.describe_partition(p))
        .collect();
    vec![
        format!("kind {} per {each}", k.kind),
        k.concurrency.map_or_else(dash, |c| {
            format!(
                "{} running, at most {} per {each}",
                count(k.running),
                count(c)
            )
        }),
        k.rate.map_or_else(dash, |r| {
            format!(
                "{} started, at most {} per {each} per {}",
                count(k.started),
                count(r.count),
                r.window_text()
            )
        }),
        format!("{} of {}", count(parts.at_limit), count(parts.active)),
        if busiest.is_empty() {
            dash()
        } else {
            busiest.join(", ")
        },
    ]
}
