//! `jobq cron list`: cron jobs, their next tick and latest run.

use clap::{Args, Subcommand};
use sqlx::PgPool;

use crate::Result;
use crate::output::{self, Table};

/// `jobq cron ...`.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Every cron job live workers know or that ever ticked: schedule, zone,
    /// next tick, latest tick and how its job went.
    List(CronListArgs),
}

/// `jobq cron list [--json]`.
#[derive(Debug, Args)]
pub struct CronListArgs {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

impl CronCommand {
    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        let CronCommand::List(args) = self;
        let jobs = jobq::admin::cron_jobs(pool).await?;
        if args.json {
            return output::json(&jobs);
        }
        if jobs.is_empty() {
            out!("no cron jobs: no live worker knows one, and none ever ticked");
            return Ok(());
        }
        let now = chrono::Utc::now();
        let mut t = Table::new(&[
            "KIND",
            "SCHEDULE",
            "TZ",
            "QUEUE",
            "NEXT TICK",
            "LAST RUN",
            "RECENT RUNS",
        ]);
        for j in &jobs {
            let next = match (j.schedule.is_some(), j.served, j.next_tick) {
                (false, _, _) => "no live worker knows it".to_owned(),
                (true, false, _) => "never: no worker runs its queue".to_owned(),
                (true, true, Some(t)) => output::relative(t, now),
                (true, true, None) => "never".to_owned(),
            };
            // The tick of the latest run, its job and how it went.
            let last_run = match &j.last_run {
                None => "-".to_owned(),
                Some(r) => {
                    let tick = output::when(j.last_tick, now);
                    match &r.error {
                        Some(e) if r.state != jobq::JobState::Completed => {
                            format!("{tick}: {} (job {}): {}", r.state, r.id, output::cut(e, 60))
                        }
                        _ => format!("{tick}: {} (job {})", r.state, r.id),
                    }
                }
            };
            t.row(vec![
                j.kind.clone(),
                j.schedule.clone().unwrap_or_else(|| "-".into()),
                j.tz.clone().unwrap_or_else(|| "UTC".into()),
                j.queue.clone().unwrap_or_else(|| "-".into()),
                next,
                last_run,
                recent(&j.recent_runs),
            ]);
        }
        t.print();
        Ok(())
    }
}

/// How the jobs of a cron job's latest ticks went, counted by state:
/// `4 completed, 1 discarded`.
fn recent(runs: &[jobq::admin::CronRun]) -> String {
    if runs.is_empty() {
        return "-".into();
    }
    let mut counts: Vec<(jobq::JobState, usize)> = Vec::new();
    for r in runs {
        match counts.iter_mut().find(|(s, _)| *s == r.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.state, 1)),
        }
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}
