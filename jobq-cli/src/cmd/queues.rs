//! `jobq queues list|pause|resume|limit`.

use clap::{ArgGroup, Args, Subcommand};
use jobq::admin::QueueLimit;
use jobq::{Limit, Rate};
use serde::Serialize;
use sqlx::PgPool;

use crate::output::{self, Table, count};
use crate::{Error, Result};

/// `jobq queues ...`.
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue: paused or not, workers and their concurrency, jobs
    /// waiting and running, lag, limit.
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
    /// Limit how many of a queue's jobs run at once, or start per window,
    /// across all workers; or clear its limits. Replaces the limits it had.
    Limit(QueueLimitArgs),
}

/// `jobq queues limit <queue> --concurrency N | --rate N/W | --clear`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("limit").required(true).args(["concurrency", "rate", "clear"]).multiple(true)))]
pub struct QueueLimitArgs {
    /// The queue.
    pub name: String,
    /// At most this many of its jobs run at once (at least 1).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// At most this many of its attempts start in any window: `100/1m`
    /// (`s`, `m`, `h`).
    #[arg(long)]
    pub rate: Option<String>,
    /// Remove its limits: workers claim its jobs as fast as they can again.
    #[arg(long, conflicts_with_all = ["concurrency", "rate"])]
    pub clear: bool,
}

impl QueueLimitArgs {
    /// The limit asked for; `None` for `--clear`.
    fn limit(&self) -> Result<Option<Limit>> {
        let rate = match &self.rate {
            Some(r) => Some(Rate::parse(r).map_err(|e| {
                let why = match e {
                    jobq::Error::Queue(why) => why,
                    e => e.to_string(),
                };
                Error::new(format!("--rate `{r}`: {why}"))
            })?),
            None => None,
        };
        Ok(match (self.concurrency, rate) {
            (Some(n), Some(r)) => Some(Limit::concurrency(n).and_rate(r)),
            (Some(n), None) => Some(Limit::concurrency(n)),
            (None, Some(r)) => Some(Limit::rate(r)),
            (None, None) => None,
        })
    }

    async fn run(self, pool: &PgPool) -> Result<()> {
        let name = &self.name;
        match self.limit()? {
            None => {
                jobq::clear_queue_limit(pool, name).await?;
                out!("cleared the limits of queue `{name}`");
            }
            Some(limit) => {
                jobq::set_queue_limit(pool, name, limit).await?;
                let mut said = Vec::new();
                if let Some(n) = self.concurrency {
                    said.push(format!("at most {n} of its jobs run at once"));
                }
                if let Some(r) = &self.rate {
                    said.push(format!("at most {r} of its attempts start"));
                }
                out!(
                    "limited queue `{name}`: {}, across all workers",
                    said.join(" and ")
                );
            }
        }
        warn_if_unknown(pool, name).await
    }
}

/// Says on stderr when no live worker runs `queue` and it holds no job,
/// finished ones included: most likely a misspelt name. The command did
/// what it was told all the same (a limit may be set before the queue's
/// first worker starts), so this is a warning, not an error.
async fn warn_if_unknown(pool: &PgPool, queue: &str) -> Result<()> {
    let overview = jobq::admin::overview(pool).await?;
    let known = overview.queues.iter().any(|q| {
        q.queue == queue
            && (q.workers > 0
                || q.pending + q.available + q.scheduled + q.running + q.retryable > 0
                || q.discarded + q.cancelled + q.completed_last_hour > 0)
    });
    if !known {
        eprintln!(
            "jobq: warning: no live worker runs queue `{queue}` and it holds no job; \
             check the name"
        );
    }
    Ok(())
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
    limit: Option<&'a QueueLimit>,
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
                            limit: q.limit.as_ref(),
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
                    "LIMIT",
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
                        q.limit
                            .as_ref()
                            .map_or_else(|| "-".into(), output::queue_limit),
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
            QueuesCommand::Limit(args) => args.run(pool).await,
        }
    }
}
