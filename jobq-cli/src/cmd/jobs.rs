//! `jobq jobs list|show|retry|cancel|delete|run-now`.

use clap::{Args, Subcommand};
use jobq::admin::{self, Action, Cursor, Target};
use sqlx::PgPool;

use crate::filter::FilterArgs;
use crate::output::{self, Table, count};
use crate::{Error, Result};

/// `jobq jobs ...`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs matching a filter, newest first, a page at a time.
    List(ListArgs),
    /// One job in full: arguments, each attempt with its error, worker and
    /// duration, and a timeline.
    Show(ShowArgs),
    /// Run finished or failed jobs again now (completed, discarded, cancelled,
    /// retryable).
    Retry(ActionArgs),
    /// Cancel jobs that have not finished (a running job's worker is told).
    Cancel(ActionArgs),
    /// Delete jobs that are not running.
    Delete(ActionArgs),
    /// Run jobs that wait for their time (scheduled, retryable) now.
    RunNow(ActionArgs),
}

/// `jobq jobs list [filter] [--limit N] [--after ID] [--json]`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// How many jobs to show (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
    limit: i64,
    /// Show the jobs after this one: the `next` of the previous page.
    #[arg(long, value_name = "ID")]
    after: Option<Cursor>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

/// `jobq jobs show ID [--json]`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The job's id.
    id: i64,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

/// The jobs of an action: ids, or a filter.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The jobs' ids; or leave them out and give a filter.
    #[arg(value_name = "ID")]
    ids: Vec<i64>,
    #[command(flatten)]
    filter: FilterArgs,
    /// With a filter: do it. Without, only say how many jobs match.
    #[arg(long)]
    yes: bool,
    /// Jobs changed per transaction.
    #[arg(long, default_value_t = admin::DEFAULT_BATCH,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    batch_size: usize,
    /// Print what was done as one JSON document.
    #[arg(long)]
    json: bool,
}

impl JobsCommand {
    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        match self {
            JobsCommand::List(args) => list(pool, args).await,
            JobsCommand::Show(args) => show(pool, args).await,
            JobsCommand::Retry(args) => act(pool, Action::Retry, args).await,
            JobsCommand::Cancel(args) => act(pool, Action::Cancel, args).await,
            JobsCommand::Delete(args) => act(pool, Action::Delete, args).await,
            JobsCommand::RunNow(args) => act(pool, Action::RunNow, args).await,
        }
    }
}

async fn list(pool: &PgPool, args: ListArgs) -> Result<()> {
    let now = chrono::Utc::now();
    let filter = args.filter.to_filter(now)?;
    let page =
        admin::list_jobs(pool, &filter, args.after, args.limit, admin::SEARCH_WINDOW).await?;
    if args.json {
        return output::json(&page);
    }
    if page.jobs.is_empty() && page.searched.is_none() {
        out!("no jobs match");
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID",
        "STATE",
        "KIND",
        "QUEUE",
        "ATTEMPT",
        "CREATED",
        "ERROR / ARGS",
    ]);
    for j in &page.jobs {
        let detail = match &j.last_error {
            Some(e) if j.state != jobq::JobState::Completed => output::cut(e, 60),
            _ => output::cut(&j.args_preview, 60),
        };
        t.row(vec![
            j.id.to_string(),
            j.state.to_string(),
            j.kind.clone(),
            j.queue.clone(),
            format!("{}/{}", j.attempt, j.max_attempts),
            output::relative(j.created_at, now),
            detail,
        ]);
    }
    if !t.is_empty() {
        t.print();
    }
    if let Some(searched) = page.searched {
        eprintln!(
            "searched the newest {} jobs{}: no index narrows this filter, so a page reads at \
             most that many",
            count(searched),
            if args.after.is_some() {
                " before --after"
            } else {
                ""
            }
        );
    }
    if let Some(next) = page.next {
        eprintln!("more: add --after {next} for the next page");
    }
    Ok(())
}

async fn show(pool: &PgPool, args: ShowArgs) -> Result<()> {
    let Some(job) = admin::job(pool, args.id).await? else {
        return Err(Error::new(format!(
            "no job {}: never enqueued, or finished and pruned",
            args.id
        )));
    };
    if args.json {
        return output::json(&job);
    }
    let now = chrono::Utc::now();
    let s = &job.summary;
    out!("job {}: {} in queue {}, {}", s.id, s.kind, s.queue, s.state);
    out!(
        "attempts: {} of {}{}",
        s.attempt,
        s.max_attempts,
        if job.lost_attempts > 0 {
            format!(" ({} more lost with their worker)", job.lost_attempts)
        } else {
            String::new()
        }
    );
    out!("priority: {}", s.priority);
    out!(
        "enqueued: {} ({})",
        output::timestamp(s.created_at),
        output::relative(s.created_at, now)
    );
    if !s.state.is_finished() && s.state != jobq::JobState::Running {
        out!(
            "runs:     {} ({})",
            output::timestamp(s.scheduled_at),
            output::relative(s.scheduled_at, now)
        );
    }
    if let Some(key) = &job.unique_key {
        out!("unique key: {key}");
    }
    if !job.tags.is_empty() {
        out!("tags: {}", job.tags.join(", "));
    }
    for (title, links) in [
        ("waits for", &job.dependencies),
        ("waited for by", &job.dependents),
    ] {
        if links.is_empty() {
            continue;
        }
        let more = if title == "waited for by" && links.len() as i64 >= admin::MAX_DEPENDENTS {
            " (the first only)"
        } else {
            ""
        };
        out!("{title}{more}:");
        for l in links.iter() {
            match (&l.kind, l.state) {
                (Some(kind), Some(state)) => out!("  job {}: {kind}, {state}", l.id),
                _ => out!("  job {}: deleted or pruned", l.id),
            }
        }
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    out_raw!("args:\n{}", indent(&pretty(&job.args)));
    if job.metadata.as_object().is_some_and(|m| !m.is_empty()) {
        out_raw!("metadata:\n{}", indent(&pretty(&job.metadata)));
    }
    if !job.attempts.is_empty() {
        out!("\nattempts:");
        let mut t = Table::new(&["#", "OUTCOME", "WORKER", "STARTED", "DURATION", "ERROR"]);
        for a in &job.attempts {
            t.row(vec![
                a.attempt.to_string(),
                a.outcome.clone(),
                a.worker.map_or_else(|| "-".into(), |w| w.to_string()),
                a.started_at.map_or_else(|| "-".into(), output::timestamp),
                a.duration.map_or_else(|| "-".into(), output::duration),
                a.error
                    .as_deref()
                    .map_or_else(|| "-".into(), |e| output::cut(e, 100)),
            ]);
        }
        out_raw!("{}", indent(&t.render()));
    }
    out!("\ntimeline:");
    for e in &job.timeline {
        out!("  {}  {}", output::timestamp(e.at), e.what);
    }
    Ok(())
}

/// The past tense of an action, for what was done.
fn done(action: Action) -> &'static str {
    match action {
        Action::Retry => "retried",
        Action::Cancel => "cancelled",
        Action::Delete => "deleted",
        Action::RunNow => "made due now",
    }
}

async fn act(pool: &PgPool, action: Action, args: ActionArgs) -> Result<()> {
    let has_filter = !args.filter.is_empty();
    if !args.ids.is_empty() && has_filter {
        return Err(Error::new(
            "give job ids or a filter (--state, --queue, ...), not both",
        ));
    }
    if args.ids.is_empty() && !has_filter {
        return Err(Error::new(format!(
            "which jobs? give their ids (jobq jobs {action} 12 13) or a filter \
             (jobq jobs {action} --state discarded --kind send_email)"
        )));
    }
    if !args.ids.is_empty() {
        return act_on_ids(pool, action, &args).await;
    }

    let filter = args.filter.to_filter(chrono::Utc::now())?;
    let by_state = admin::count_by_state(pool, &filter).await?;
    let total: i64 = by_state.values().sum();
    let changes: i64 = by_state
        .iter()
        .filter(|(s, _)| action.changes().contains(s))
        .map(|(_, n)| n)
        .sum();
    let states: Vec<String> = by_state
        .iter()
        .map(|(s, n)| format!("{} {s}", count(*n)))
        .collect();
    eprintln!(
        "{} job(s) match{}; {action} applies to {} of them",
        count(total),
        if states.is_empty() {
            String::new()
        } else {
            format!(" ({})", states.join(", "))
        },
        count(changes)
    );
    if changes == 0 {
        eprintln!("nothing to do");
        if args.json {
            output::json(&admin::BulkOutcome::default())?;
        }
        return Ok(());
    }
    if !args.yes {
        eprintln!("nothing done: add --yes to {action} them");
        return Ok(());
    }
    let outcome = admin::apply(
        pool,
        action,
        Target::Filter(&filter),
        args.batch_size,
        |p| {
            eprintln!(
                "{action}: {} of {} done (batch {}, {} looked at)",
                count(p.changed),
                count(changes),
                p.batches,
                count(p.examined)
            );
        },
    )
    .await?;
    if args.json {
        return output::json(&outcome);
    }
    out!(
        "{} {} job(s) in {} batch(es) of at most {}; {} left as they were",
        done(action),
        count(outcome.progress.changed),
        outcome.progress.batches,
        count(args.batch_size as u64),
        count(outcome.skipped)
    );
    Ok(())
}

async fn act_on_ids(pool: &PgPool, action: Action, args: &ActionArgs) -> Result<()> {
    let outcome = admin::apply(
        pool,
        action,
        Target::Ids(&args.ids),
        args.batch_size,
        |_| {},
    )
    .await?;
    if args.json {
        output::json(&outcome)?;
    } else if outcome.missing.len() < args.ids.len() {
        // Said only when some job was found: "retried 0 job(s)" above "no job
        // 12" would read as two answers.
        out!(
            "{} {} job(s)",
            done(action),
            count(outcome.progress.changed)
        );
    }
    for u in &outcome.unchanged {
        eprintln!(
            "job {} is {}: {action} does not apply to it, left as it was{}",
            u.id,
            u.state,
            match (action, u.state) {
                (Action::Delete, jobq::JobState::Running) => " (cancel it first)",
                (Action::Retry, s) if action.changes().contains(&s) =>
                    " (another job holds its unique key)",
                _ => "",
            }
        );
    }
    match outcome.missing.as_slice() {
        [] => Ok(()),
        [id] => Err(Error::new(format!(
            "no job {id}: never enqueued, or finished and pruned"
        ))),
        ids => {
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            Err(Error::new(format!("no jobs {}", ids.join(", "))))
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
