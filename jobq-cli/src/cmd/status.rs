//! `jobq status`: every queue at a glance, and the warnings.

use clap::Args;
use sqlx::PgPool;

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
