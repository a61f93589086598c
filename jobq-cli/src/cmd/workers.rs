//! `jobq workers`: the live worker processes.

use clap::Args;
use sqlx::PgPool;

use crate::Result;
use crate::output::{self, Table, count};

/// `jobq workers [--json]`.
#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

impl WorkersArgs {
    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        let workers = jobq::admin::workers(pool).await?;
        if self.json {
            return output::json(&workers);
        }
        if workers.is_empty() {
            out!("no live workers");
            return Ok(());
        }
        let now = chrono::Utc::now();
        let mut t = Table::new(&[
            "ID",
            "HOST",
            "PID",
            "QUEUES",
            "RUNNING",
            "HEARTBEAT",
            "STARTED",
        ]);
        for w in &workers {
            let queues: Vec<String> = w
                .queues
                .iter()
                .map(|q| match q.concurrency {
                    Some(c) => format!("{}({c})", q.queue),
                    None => q.queue.clone(),
                })
                .collect();
            let beat = format!("{} ago", output::duration(w.heartbeat_age));
            t.row(vec![
                w.id.to_string(),
                w.host.clone(),
                w.pid.to_string(),
                queues.join(","),
                count(w.running),
                if w.stale {
                    format!("{beat} (missed its lease)")
                } else {
                    beat
                },
                output::relative(w.started_at, now),
            ]);
        }
        t.print();
        Ok(())
    }
}
