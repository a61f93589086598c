//! Process figures: how fast pre-enqueued no-op jobs are finished by jobq
//! worker processes, and by the raw-SQL claim-and-complete cycle; and what
//! one claim statement costs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::AssertSqlSafe;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinSet;

use super::enqueue::enqueue_kind_in_batches;
use crate::db::{self, FigureDb};
use crate::jobs::{Kind, QUEUE};
use crate::report::Rounds;
use crate::{Ctx, progress, sql};

/// What finishes the jobs.
#[derive(Debug, Clone, Copy)]
pub enum Runner {
    /// `procs` `jobq-bench worker` processes, each running the `bench` queue
    /// at `concurrency`, over jobs of `kind`.
    Jobq {
        /// Worker processes.
        procs: usize,
        /// Concurrency of each.
        concurrency: usize,
        /// The job they run: no-op, or no-op under limits.
        kind: Kind,
        /// Whether each records jobq's metrics into a Prometheus recorder
        /// (`Worker::prometheus`); without, no recorder is installed.
        prometheus: bool,
    },
    /// `clients` connections each looping: claim `batch` (`FOR UPDATE SKIP
    /// LOCKED`), complete them (one `UPDATE ... WHERE id = ANY`).
    Raw {
        /// Jobs per claim.
        batch: i64,
        /// Concurrent clients.
        clients: usize,
    },
}

impl Runner {
    /// The figure's name, without the `_per_s` suffix.
    pub fn name(&self) -> String {
        match *self {
            Runner::Jobq {
                procs: 1,
                concurrency,
                kind,
                prometheus,
            } => format!(
                "process_c{concurrency}{}{}",
                kind.suffix(),
                prometheus_suffix(prometheus)
            ),
            Runner::Jobq {
                procs,
                concurrency,
                kind,
                prometheus,
            } => format!(
                "process_{procs}proc_c{concurrency}{}{}",
                kind.suffix(),
                prometheus_suffix(prometheus)
            ),
            Runner::Raw { batch, clients } => format!("raw_process_b{batch}_c{clients}"),
        }
    }
}

/// The figure name's suffix for a run with the Prometheus recorder on.
fn prometheus_suffix(prometheus: bool) -> &'static str {
    if prometheus { "_prometheus" } else { "" }
}

/// What one drain measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Jobs finished per second.
    pub per_s: f64,
    /// WAL written per job, in bytes.
    pub wal_per_job: f64,
    /// CPU time the whole machine spent per job (every process: PostgreSQL,
    /// the workers), in microseconds. Unlike the rate, this barely moves
    /// when the host steals time from this VM.
    pub cpu_us_per_job: f64,
}

/// Enqueues `n` waiting no-op jobs of `kind` (`enqueue_many`, batches of
/// 1,000) and returns the largest id from before them.
pub async fn prepare(ctx: &Ctx, db: &FigureDb, n: u64, kind: Kind) -> anyhow::Result<i64> {
    let before = db::max_id(&db.pool).await?;
    let start = Instant::now();
    enqueue_kind_in_batches(&db.pool, kind, n, 1000).await?;
    progress(
        ctx,
        format!(
            "  enqueued {n} jobs in {:.1}s",
            start.elapsed().as_secs_f64()
        ),
    );
    Ok(before)
}

/// A running `jobq-bench worker` process.
struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
}

/// Starts `procs` worker processes and waits until each is connected and
/// ready (they start claiming only when told `go`).
async fn spawn_workers(
    ctx: &Ctx,
    db: &FigureDb,
    procs: usize,
    concurrency: usize,
    kind: Kind,
    prometheus: bool,
) -> anyhow::Result<Vec<WorkerProc>> {
    let exe = std::env::current_exe().context("locating jobq-bench")?;
    let mut workers = Vec::with_capacity(procs);
    for _ in 0..procs {
        let mut child = Command::new(&exe)
            .arg("worker")
            .arg("--database")
            .arg(&db.name)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--kind")
            .arg(
                clap::ValueEnum::to_possible_value(&kind)
                    .context("every kind has a name")?
                    .get_name(),
            )
            .args(prometheus.then_some("--prometheus"))
            .env("DATABASE_URL", &ctx.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        anyhow::ensure!(
            matches!(&ready, Ok(Ok(Some(l))) if l == "ready"),
            "a worker process did not get ready: {ready:?}"
        );
        workers.push(WorkerProc { child, stdin });
    }
    Ok(workers)
}

/// One `jobq-bench worker` process, concurrency 16, told to start and left
/// idle: its producer sleeps on the `bench` queue's wake lock, so enqueues
/// notify it. For the single-enqueue figure with a listening worker.
pub struct IdleWorker(Vec<WorkerProc>);

impl IdleWorker {
    /// Starts the worker and waits until it sleeps on the queue.
    pub async fn start(ctx: &Ctx, db: &FigureDb) -> anyhow::Result<IdleWorker> {
        let mut workers = spawn_workers(ctx, db, 1, 16, Kind::Noop, false).await?;
        for w in &mut workers {
            w.stdin.write_all(b"go\n").await?;
            w.stdin.flush().await?;
        }
        let start = Instant::now();
        loop {
            let sleeping: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'advisory' AND classid = $1::oid AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .bind(jobq::__private::WAKE_LOCK_CLASS)
            .fetch_one(&db.pool)
            .await?;
            if sleeping > 0 {
                return Ok(IdleWorker(workers));
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "the worker did not go to sleep on its queue within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the worker gracefully.
    pub async fn stop(self) -> anyhow::Result<()> {
        stop_workers(self.0).await
    }
}

/// Stops worker processes gracefully (closing their stdin) and waits.
async fn stop_workers(workers: Vec<WorkerProc>) -> anyhow::Result<()> {
    let mut children = Vec::with_capacity(workers.len());
    for WorkerProc { child, stdin } in workers {
        drop(stdin);
        children.push(child);
    }
    for mut child in children {
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .context("a worker process did not stop within 60 s")??;
        anyhow::ensure!(status.success(), "a worker process failed: {status}");
    }
    Ok(())
}

/// The raw-SQL cycle on `clients` connections until no job is left; returns
/// how many jobs it finished.
async fn raw_drain(db: &FigureDb, batch: i64, clients: usize) -> anyhow::Result<u64> {
    let pool = db.pool(clients as u32).await?;
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in 0..clients {
        let pool = pool.clone();
        set.spawn(async move {
            let mut done = 0u64;
            loop {
                let rows: Vec<(i64, String)> = sqlx::query_as(sql::CLAIM)
                    .bind(batch)
                    .bind(c as i64)
                    .fetch_all(&pool)
                    .await?;
                if rows.is_empty() {
                    return anyhow::Ok(done);
                }
                let ids: Vec<i64> = rows.into_iter().map(|(id, _args)| id).collect();
                sqlx::query(sql::COMPLETE).bind(&ids).execute(&pool).await?;
                done += ids.len() as u64;
            }
        });
    }
    let mut done = 0;
    while let Some(n) = set.join_next().await {
        done += n??;
    }
    let _ = start;
    pool.close().await;
    Ok(done)
}

/// Finishes the `n` jobs above id `after` with `runner`, timed from the
/// runner's start until no job waits or runs; checks all `n` completed.
pub async fn drain(
    ctx: &Ctx,
    db: &FigureDb,
    runner: Runner,
    n: u64,
    after: i64,
) -> anyhow::Result<Run> {
    db::settle(&db.pool).await?;
    let wal0 = db::wal_lsn(&db.pool).await?;
    let cpu0 = db::busy_cpu();
    let secs = match runner {
        Runner::Jobq {
            procs,
            concurrency,
            kind,
            prometheus,
        } => {
            // The queue is paused while the workers start (register, open
            // their services, find nothing and sleep), so the clock times
            // finishing jobs, not starting 16 processes on 2 cores.
            jobq::pause_queue(&db.pool, QUEUE).await?;
            let mut workers = spawn_workers(ctx, db, procs, concurrency, kind, prometheus).await?;
            let starting = Instant::now();
            for w in &mut workers {
                w.stdin.write_all(b"go\n").await?;
                w.stdin.flush().await?;
            }
            let pids: Vec<i32> = workers
                .iter()
                .map(|w| w.child.id().context("a worker process's pid"))
                .map(|pid| pid.map(|p| p as i32))
                .collect::<anyhow::Result<_>>()?;
            db::wait_started(&db.pool, &pids, Duration::from_secs(60)).await?;
            progress(
                ctx,
                format!(
                    "  {procs} worker process(es) started in {:.2}s",
                    starting.elapsed().as_secs_f64()
                ),
            );
            let start = Instant::now();
            jobq::resume_queue(&db.pool, QUEUE).await?;
            db::wait_drained(
                &db.pool,
                Duration::from_millis(20),
                Duration::from_secs(600),
            )
            .await?;
            let secs = start.elapsed().as_secs_f64();
            stop_workers(workers).await?;
            secs
        }
        Runner::Raw { batch, clients } => {
            let start = Instant::now();
            let done = raw_drain(db, batch, clients).await?;
            anyhow::ensure!(done == n, "raw cycle finished {done} jobs, expected {n}");
            start.elapsed().as_secs_f64()
        }
    };
    let cpu = db::busy_cpu().zip(cpu0).map(|(c1, c0)| c1 - c0);
    let wal1 = db::wal_lsn(&db.pool).await?;
    let completed = db::completed_after(&db.pool, after).await?;
    anyhow::ensure!(
        completed as u64 == n,
        "{}: {completed} of {n} jobs completed",
        runner.name()
    );
    if let Runner::Jobq { .. } = runner {
        // Each job claimed once: every one completed at its first attempt.
        let again: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobq_jobs WHERE id > $1 AND attempt <> 1")
                .bind(after)
                .fetch_one(&db.pool)
                .await?;
        anyhow::ensure!(
            again == 0,
            "{}: {again} jobs were claimed more than once",
            runner.name()
        );
    }
    Ok(Run {
        per_s: n as f64 / secs,
        wal_per_job: (wal1 - wal0) as f64 / n as f64,
        cpu_us_per_job: cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e6 / n as f64),
    })
}

/// Adds a drain's figures to `rounds`, under `prefix` + the runner's name.
pub fn add(rounds: &mut Rounds, prefix: &str, runner: Runner, run: Run) {
    let name = format!("{prefix}{}", runner.name());
    rounds.add(format!("{name}_per_s"), run.per_s, "jobs/s");
    rounds.add(format!("{name}_wal_per_job"), run.wal_per_job, "bytes");
    if run.cpu_us_per_job.is_finite() {
        rounds.add(format!("{name}_cpu_per_job"), run.cpu_us_per_job, "us");
    }
}

/// Records a drain's figures under `prefix` + the runner's name.
pub fn record(ctx: &mut Ctx, prefix: &str, runner: Runner, run: Run) {
    let mut rounds = Rounds::default();
    add(&mut rounds, prefix, runner, run);
    rounds.record(&mut ctx.report);
}

/// One process figure on a fresh database: enqueue `jobs`, drain with
/// `runner`. With `claim_probe`, first times jobq's claim statement (see
/// [`claim_cost`]), returns that too and prints its plan.
pub async fn figure(
    ctx: &Ctx,
    runner: Runner,
    claim_probe: bool,
) -> anyhow::Result<(Option<f64>, Run)> {
    let n = ctx.opts.jobs;
    progress(ctx, format!("process: {} over {n} jobs", runner.name()));
    let db = db::fresh(ctx, &runner.name()).await?;
    let kind = match runner {
        Runner::Jobq { kind, .. } => kind,
        Runner::Raw { .. } => Kind::Noop,
    };
    let after = prepare(ctx, &db, n, kind).await?;
    let claim_ms = if claim_probe {
        let ms = claim_cost(&db, 16).await?;
        print_claim_plan(&db, "claim_ms", 16).await?;
        Some(ms)
    } else {
        None
    };
    let run = drain(ctx, &db, runner, n, after).await?;
    db::finish(ctx, db, n).await?;
    Ok((claim_ms, run))
}

/// Times jobq's own claim statement (`jobq::__private::CLAIM_SQL`) taking
/// `limit` jobs, 200 times, each in a transaction rolled back so nothing is
/// consumed; returns the median in milliseconds.
pub async fn claim_cost(db: &FigureDb, limit: i64) -> anyhow::Result<f64> {
    db::settle(&db.pool).await?;
    let kinds = vec!["noop".to_owned()];
    // The claim takes jobs only for a worker that has a row (left in place
    // for `print_claim_plan`; a rescuer removes it after a lease).
    sqlx::query(
        "INSERT INTO jobq_workers (id, host, pid, queues) OVERRIDING SYSTEM VALUE
         VALUES (-1, 'bench', 0, '{bench}') ON CONFLICT (id) DO NOTHING",
    )
    .execute(&db.pool)
    .await?;
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let mut tx = db.pool.begin().await?;
        let start = Instant::now();
        let rows = sqlx::query(jobq::__private::CLAIM_SQL)
            .bind("bench")
            .bind(&kinds)
            .bind(limit)
            .bind(-1i64)
            .bind(chrono::Utc::now())
            .bind(false)
            .fetch_all(&mut *tx)
            .await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(rows.len() as i64 == limit, "claim took {} jobs", rows.len());
        tx.rollback().await?;
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Prints the plan of jobq's claim statement taking `limit` jobs (rolled
/// back), under the heading `name`.
pub async fn print_claim_plan(db: &FigureDb, name: &str, limit: i64) -> anyhow::Result<()> {
    let explain = format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}",
        jobq::__private::CLAIM_SQL
            .replace("$1", "'bench'")
            .replace("$2", "ARRAY['noop']")
            .replace("$3", &limit.to_string())
            .replace("$4", "-1")
            .replace("$5", "now()")
            .replace("$6", "false")
    );
    let mut tx = db.pool.begin().await?;
    let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(explain))
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    println!("# {name}: plan of jobq's claim of {limit}:");
    for line in plan {
        println!("#   {line}");
    }
    Ok(())
}
