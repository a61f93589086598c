//! `jobq queues list|pause|resume`.

use clap::{Args, Subcommand};
use serde::Serialize;
use sqlx::PgPool;

use crate::Result;
use crate::output::{self, Table, count};

/// `jobq queues ...`.
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue: paused or not, workers and their concurrency, jobs
    /// waiting and running, lag.
    List(QueuesListArgs),
    /// Stop every worker claiming from a queue (enqueues go on; running jobs
    /// finish).
    Pause {
        /// The queue.
        name: String,
    },
    /// Let workers claim from a paused queue again.
    Resume {
        /// The queue.
        name: String,
    },
}

/// `jobq queues list [--json]`.
#[derive(Debug, Args)]
pub struct QueuesListArgs {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// One queue, as `jobq queues list --json` prints it.
#[derive(Serialize)]
struct QueueJson<'a> {
    queue: &'a str,
    paused: bool,
    workers: i64,
    concurrency: i64,
    available: i64,
    running: i64,
    #[serde(rename = "lag_seconds")]
    lag: Option<f64>,
}

impl QueuesCommand {
    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        match self {
            QueuesCommand::List(args) => {
                let o = jobq::admin::overview(pool).await?;
                if args.json {
                    let queues: Vec<QueueJson<'_>> = o
                        .queues
                        .iter()
                        .map(|q| QueueJson {
                            queue: &q.queue,
                            paused: q.paused,
                            workers: q.workers,
                            concurrency: q.concurrency,
                            available: q.available,
                            running: q.running,
                            lag: q.lag.map(|l| l.as_secs_f64()),
                        })
                        .collect();
                    return output::json(&queues);
                }
                let mut t = Table::new(&[
                    "QUEUE",
                    "STATE",
                    "WORKERS",
                    "CONCURRENCY",
                    "AVAILABLE",
                    "RUNNING",
                    "LAG",
                ]);
                for q in &o.queues {
                    t.row(vec![
                        q.queue.clone(),
                        if q.paused { "paused" } else { "active" }.into(),
                        count(q.workers),
                        count(q.concurrency),
                        count(q.available),
                        count(q.running),
                        q.lag.map_or_else(|| "-".into(), output::duration),
                    ]);
                }
                if t.is_empty() {
                    out!("no queues: no job was enqueued yet, and no worker runs");
                } else {
                    t.print();
                }
                Ok(())
            }
            QueuesCommand::Pause { name } => {
                jobq::pause_queue(pool, &name).await?;
                out!("paused queue `{name}`: workers stop claiming its jobs");
                Ok(())
            }
            QueuesCommand::Resume { name } => {
                jobq::resume_queue(pool, &name).await?;
                out!("resumed queue `{name}`");
                Ok(())
            }
        }
    }
}
