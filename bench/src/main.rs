//! `jobq-bench`: jobq's benchmark against the PostgreSQL at `DATABASE_URL`.
//! `scripts/bench` starts a throwaway server and runs `jobq-bench all`; the
//! other subcommands run one figure, for quick iteration.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use jobq_bench::figures::{self, dashboard, enqueue, latency, process, scale};
use jobq_bench::jobs::{Kind, QUEUE};
use jobq_bench::{Ctx, Opts, db};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

/// jobq's benchmark: enqueue, process, latency and history-scale figures,
/// next to a raw-SQL baseline, on the PostgreSQL at DATABASE_URL.
#[derive(Parser, Debug)]
#[command(name = "jobq-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    opts: OptArgs,
}

/// The run's knobs; see [`Opts`].
#[derive(Args, Debug)]
struct OptArgs {
    /// Jobs per process figure.
    #[arg(long, global = true, default_value_t = Opts::default().jobs)]
    jobs: u64,
    /// `enqueue` calls per single-enqueue figure.
    #[arg(long, global = true, default_value_t = Opts::default().single)]
    single: u64,
    /// Interleaved rounds of the single-enqueue figures (the median is kept).
    #[arg(long, global = true, default_value_t = Opts::default().rounds)]
    rounds: u64,
    /// Interleaved rounds of the batch-enqueue and process figures (the
    /// median is kept).
    #[arg(long, global = true, default_value_t = Opts::default().bulk_rounds)]
    bulk_rounds: u64,
    /// Jobs for the batch-enqueue figure.
    #[arg(long, global = true, default_value_t = Opts::default().batch_jobs)]
    batch_jobs: u64,
    /// Batch size for the batch-enqueue figure.
    #[arg(long, global = true, default_value_t = Opts::default().batch_size)]
    batch_size: u64,
    /// Jobs for the latency figure.
    #[arg(long, global = true, default_value_t = Opts::default().latency_jobs)]
    latency_jobs: u64,
    /// Enqueues per second for the latency figure.
    #[arg(long, global = true, default_value_t = Opts::default().latency_rate)]
    latency_rate: u64,
    /// Finished jobs in the table for the scale figure.
    #[arg(long, global = true, default_value_t = Opts::default().history)]
    history: u64,
    /// Time budget of the whole run in seconds: the scale figure inserts less
    /// history when the full amount would not fit.
    #[arg(long, global = true, default_value_t = Opts::default().budget_s)]
    budget_s: u64,
    /// Keep each figure's database (jobq_bench_*) instead of dropping it.
    #[arg(long, global = true)]
    keep: bool,
    /// Print pg_stat_statements per figure (the server must preload it).
    #[arg(long, global = true)]
    pgss: bool,
}

impl From<&OptArgs> for Opts {
    fn from(a: &OptArgs) -> Self {
        Opts {
            jobs: a.jobs,
            single: a.single,
            rounds: a.rounds,
            bulk_rounds: a.bulk_rounds,
            batch_jobs: a.batch_jobs,
            batch_size: a.batch_size,
            latency_jobs: a.latency_jobs,
            latency_rate: a.latency_rate,
            history: a.history,
            budget_s: a.budget_s,
            keep: a.keep,
            pgss: a.pgss,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Every figure, then the table (what scripts/bench runs).
    All {
        /// Concurrency of each of the two worker processes.
        #[arg(long, default_value_t = 32)]
        procs_concurrency: usize,
    },
    /// The machine line only.
    Machine,
    /// Single enqueues (jobq, raw insert, raw insert + notify) from N clients.
    Enqueue {
        /// Concurrent clients.
        #[arg(long, default_value_t = 1)]
        clients: usize,
    },
    /// Batch enqueue (jobq enqueue_many of plain and unique jobs, raw unnest insert).
    Batch,
    /// jobq worker processes finishing pre-enqueued jobs.
    Process {
        /// Concurrency of each worker process.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Worker processes.
        #[arg(long, default_value_t = 1)]
        procs: usize,
        /// Also time one claim statement before the run.
        #[arg(long)]
        claim: bool,
        /// The job: no-op, or no-op under limits.
        #[arg(long, value_enum, default_value = "noop")]
        kind: Kind,
        /// Each worker records its metrics into a Prometheus recorder.
        #[arg(long)]
        prometheus: bool,
    },
    /// The limited figures: no-op jobs at concurrency 50, and at
    /// concurrency 1 in each of 1,000 partitions, next to unlimited ones.
    Limits,
    /// The raw-SQL claim-and-complete cycle finishing pre-enqueued jobs.
    Raw {
        /// Jobs per claim.
        #[arg(long, default_value_t = 100)]
        batch: i64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Enqueue-to-handler-start latency into an idle worker.
    Latency,
    /// The process figure and claim cost with --history finished jobs.
    Scale,
    /// How long each dashboard page takes over a table of --rows jobs,
    /// kept in the database `jobq_bench_dashboard` between runs.
    Dashboard {
        /// Jobs in the table.
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Fill the table again even when it holds --rows jobs.
        #[arg(long)]
        refill: bool,
        /// Requests per page; the median is reported, with the slowest.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// A worker process for the process figures (started by the bench): runs
    /// the `bench` queue once told `go` on stdin, until stdin closes.
    #[command(hide = true)]
    Worker {
        /// The figure's database.
        #[arg(long)]
        database: String,
        /// Concurrency of the `bench` queue.
        #[arg(long)]
        concurrency: usize,
        /// The job it runs.
        #[arg(long, value_enum, default_value = "noop")]
        kind: Kind,
        /// Records jobq's metrics into a Prometheus recorder
        /// (`Worker::prometheus` on a port of the loopback), never scraped.
        #[arg(long)]
        prometheus: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sqlx=error".into()),
        )
        .init();
    let cli = Cli::parse();
    let url = std::env::var("DATABASE_URL")
        .context("set DATABASE_URL, or run scripts/bench (it starts a throwaway PostgreSQL)")?;
    let base = PgConnectOptions::from_str(&url).context("parsing DATABASE_URL")?;

    if let Cmd::Worker {
        database,
        concurrency,
        kind,
        prometheus,
    } = &cli.command
    {
        return worker(base.database(database), *concurrency, *kind, *prometheus).await;
    }

    let admin = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(base.clone())
        .await
        .context("connecting to DATABASE_URL")?;
    let mut ctx = Ctx {
        base,
        url,
        admin,
        opts: Opts::from(&cli.opts),
        report: Default::default(),
        started: Instant::now(),
    };
    if ctx.opts.pgss {
        db::reset_statements(&ctx)
            .await
            .context("--pgss: pg_stat_statements is not loaded on this server")?;
    }
    match cli.command {
        Cmd::All { procs_concurrency } => figures::all(&mut ctx, procs_concurrency).await?,
        Cmd::Machine => figures::machine(&ctx).await?,
        Cmd::Enqueue { clients } => enqueue::single(&mut ctx, clients).await?,
        Cmd::Batch => enqueue::batch(&mut ctx).await?,
        Cmd::Process {
            concurrency,
            procs,
            claim,
            kind,
            prometheus,
        } => {
            let runner = process::Runner::Jobq {
                procs,
                concurrency,
                kind,
                prometheus,
            };
            let (claim_ms, run) = process::figure(&ctx, runner, claim).await?;
            if let Some(ms) = claim_ms {
                ctx.report.record("claim_ms", ms, "ms");
            }
            process::record(&mut ctx, "", runner, run);
        }
        Cmd::Raw { batch, clients } => {
            let runner = process::Runner::Raw { batch, clients };
            let (_, run) = process::figure(&ctx, runner, false).await?;
            process::record(&mut ctx, "", runner, run);
        }
        Cmd::Limits => figures::limits_all(&mut ctx).await?,
        Cmd::Latency => latency::latency(&mut ctx).await?,
        Cmd::Scale => scale::scale(&mut ctx).await?,
        Cmd::Dashboard { rows, refill, runs } => {
            // Its own table, not the figures' one.
            return dashboard::dashboard(&mut ctx, rows, refill, runs).await;
        }
        Cmd::Worker { .. } => unreachable!("handled above"),
    }
    figures::close(&mut ctx);
    Ok(())
}

/// The worker process: connects, says `ready`, waits for `go`, then runs the
/// `bench` queue at `concurrency` until its stdin closes; with `prometheus`,
/// recording its metrics into a Prometheus recorder.
async fn worker(
    options: PgConnectOptions,
    concurrency: usize,
    kind: Kind,
    prometheus: bool,
) -> anyhow::Result<()> {
    let pool = db::pool(&options.application_name("jobq-bench-worker"), 8).await?;
    // The scale figure's history (finished 30 days ago) must stay in the
    // table while it is measured: no pruning.
    let mut worker = jobq::Worker::new(pool)
        .registry(kind.registry()?)
        .queue(QUEUE, concurrency)
        .retention(jobq::Retention::keep_all());
    if prometheus {
        worker = worker.prometheus(([127, 0, 0, 1], 0).into());
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    println!("ready");
    match stdin.next_line().await? {
        Some(line) if line == "go" => {}
        _ => return Ok(()),
    }
    worker
        .run_until(async move { while let Ok(Some(_)) = stdin.next_line().await {} })
        .await?;
    Ok(())
}
