//! Throwaway databases, one per figure, and the small queries every figure
//! shares: the machine line, waiting for the queue to drain, WAL position.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, PgPool};

use crate::{Ctx, progress};

/// One figure's database.
pub struct FigureDb {
    /// `jobq_bench_<figure>`.
    pub name: String,
    /// Connection options for it.
    pub options: PgConnectOptions,
    /// A pool for the figure's own statements (setup, polling, checks).
    pub pool: PgPool,
}

impl FigureDb {
    /// A new pool on this database with up to `max` connections.
    pub async fn pool(&self, max: u32) -> anyhow::Result<PgPool> {
        pool(&self.options, max).await
    }
}

/// A pool on `options` with up to `max` connections, connected eagerly.
pub async fn pool(options: &PgConnectOptions, max: u32) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .min_connections(max)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options.clone())
        .await
        .context("connecting to the figure's database")?;
    // Open every connection now, so no figure times a connect.
    let mut held = Vec::with_capacity(max as usize);
    for _ in 0..max {
        held.push(pool.acquire().await?);
    }
    drop(held);
    Ok(pool)
}

/// Creates `jobq_bench_<figure>` (dropping a leftover one) and migrates it.
pub async fn fresh(ctx: &Ctx, figure: &str) -> anyhow::Result<FigureDb> {
    let name = format!("jobq_bench_{figure}");
    // The names are ours (`jobq_bench_` and a figure name), not user input.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&ctx.admin)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&ctx.admin)
        .await
        .with_context(|| format!("creating database {name}"))?;
    let options = ctx
        .base
        .clone()
        .database(&name)
        .application_name("jobq-bench");
    let pool = pool(&options, 4).await?;
    jobq::migrate(&pool).await?;
    Ok(FigureDb {
        name,
        options,
        pool,
    })
}

/// Ends a figure: prints its statements when `--pgss` asked for them, then
/// drops its database unless `--keep`. `jobs` divides the call counts.
pub async fn finish(ctx: &Ctx, db: FigureDb, jobs: u64) -> anyhow::Result<()> {
    if ctx.opts.pgss
        && let Err(e) = print_statements(ctx, &db.name, jobs).await
    {
        progress(ctx, format!("pg_stat_statements unavailable: {e:#}"));
    }
    db.pool.close().await;
    if !ctx.opts.keep {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db.name
        )))
        .execute(&ctx.admin)
        .await?;
    }
    Ok(())
}

/// Resets `pg_stat_statements`, so each figure's database starts from zero.
pub async fn reset_statements(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.admin
        .execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await?;
    ctx.admin
        .execute("SELECT pg_stat_statements_reset()")
        .await?;
    Ok(())
}

/// Prints the statements run in database `name`, most expensive first, with
/// calls and rows per job.
async fn print_statements(ctx: &Ctx, name: &str, jobs: u64) -> anyhow::Result<()> {
    let rows: Vec<(i64, i64, f64, f64, String)> = sqlx::query_as(
        "SELECT s.calls, s.rows, s.total_exec_time, s.mean_exec_time,
                left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110)
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = $1 AND s.calls >= 10
         ORDER BY s.total_exec_time DESC
         LIMIT 12",
    )
    .bind(name)
    .fetch_all(&ctx.admin)
    .await?;
    println!("# pg_stat_statements for {name} ({jobs} jobs):");
    println!(
        "#   {:>9} {:>10} {:>9} {:>9} {:>9}  statement",
        "calls", "rows", "calls/job", "mean ms", "total s"
    );
    for (calls, nrows, total, mean, query) in rows {
        println!(
            "#   {calls:>9} {nrows:>10} {:>9.4} {mean:>9.3} {:>9.2}  {query}",
            calls as f64 / jobs.max(1) as f64,
            total / 1000.0,
        );
    }
    Ok(())
}

/// The machine line's fields: cores, CPU, memory, the 1-minute load average
/// when the run began (other work on the machine skews every figure),
/// PostgreSQL's version and its durability settings.
pub async fn machine(admin: &PgPool) -> anyhow::Result<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let show = |name: &'static str| async move {
        sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(admin)
            .await
    };
    let version = show("server_version").await?;
    let version = version.split_whitespace().next().unwrap_or("?").to_owned();
    let mut line = format!(
        "cores={cores} cpu={} mem_gib={mem_gib:.0} load1={load} postgres={version}",
        cpu.replace(' ', "_")
    );
    for setting in [
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "shared_buffers",
        "max_wal_size",
    ] {
        line.push_str(&format!(" {setting}={}", show(setting).await?));
    }
    Ok(line)
}

/// True while a `noop` job waits or runs. Scalar subqueries with `ORDER BY`
/// (not `EXISTS`, whose `ORDER BY` the planner drops) keep both halves on a
/// partial index even when statistics say every row is waiting, so a poll
/// stays cheap however large the history.
const BUSY: &str = "SELECT (SELECT id FROM jobq_jobs
                        WHERE state = 'available' AND queue = 'bench' AND kind = 'noop'
                        ORDER BY queue, kind, priority, scheduled_at, id LIMIT 1) IS NOT NULL
                    OR EXISTS (SELECT 1 FROM jobq_jobs
                               WHERE state = 'available' AND queue = 'bench'
                                 AND kind IN ('noop_c50', 'noop_part'))
                    OR (SELECT id FROM jobq_jobs
                        WHERE state IN ('scheduled', 'retryable') AND queue = 'bench'
                        ORDER BY queue, scheduled_at LIMIT 1) IS NOT NULL
                    OR (SELECT id FROM jobq_jobs WHERE state = 'running'
                        ORDER BY attempted_by LIMIT 1) IS NOT NULL";

/// Waits until no job of the `bench` queue waits or runs, polling every
/// `every`; fails after `limit`.
pub async fn wait_drained(pool: &PgPool, every: Duration, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let busy: bool = sqlx::query_scalar(BUSY).fetch_one(pool).await?;
        if !busy {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("jobs still waiting or running after {limit:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until the worker processes `pids` are all registered and none of
/// the worker processes' sessions on this database (`jobq-bench-worker`) is
/// running a statement or still starting, seen on three polls 20 ms apart;
/// fails after `limit`. Their producers then sleep on the paused queue, and
/// the start-up reads (metrics sample, rescue pass) are done. Registered
/// rows are matched by pid: a figure may leave a row of its own (the claim
/// probe's worker) in the table.
pub async fn wait_started(pool: &PgPool, pids: &[i32], limit: Duration) -> anyhow::Result<()> {
    const QUIET: &str = "SELECT (SELECT count(DISTINCT pid) FROM jobq_workers
                                 WHERE pid = ANY($1)) = cardinality($1)
                           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity
                                           WHERE application_name = 'jobq-bench-worker'
                                             AND datname = current_database()
                                             AND state IS DISTINCT FROM 'idle')";
    let start = Instant::now();
    let mut quiet = 0;
    while quiet < 3 {
        let now: bool = sqlx::query_scalar(QUIET).bind(pids).fetch_one(pool).await?;
        quiet = if now { quiet + 1 } else { 0 };
        if start.elapsed() > limit {
            bail!(
                "{} worker processes did not start within {limit:?}",
                pids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The largest job id so far (0 for an empty table).
pub async fn max_id(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(id), 0)::bigint FROM jobq_jobs")
            .fetch_one(pool)
            .await?,
    )
}

/// How many jobs with an id above `after` are `completed`.
pub async fn completed_after(pool: &PgPool, after: i64) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM jobq_jobs WHERE id > $1 AND state = 'completed'")
            .bind(after)
            .fetch_one(pool)
            .await?,
    )
}

/// `VACUUM ANALYZE jobq_jobs`, then a `CHECKPOINT` (when allowed), so that a
/// measurement starts from settled statistics and no pending checkpoint.
pub async fn settle(pool: &PgPool) -> anyhow::Result<()> {
    pool.execute("VACUUM ANALYZE jobq_jobs").await?;
    // CHECKPOINT needs superuser (or pg_checkpoint): skip it where refused.
    let _ = pool.execute("CHECKPOINT").await;
    Ok(())
}

/// CPU time the machine has spent busy (user, nice, system, interrupts; not
/// idle, I/O wait or steal) since boot, summed over cores, from
/// `/proc/stat`; `None` where that file is missing. Measures every process,
/// so it is meaningful for a server on this machine only.
pub fn busy_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0))
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(busy * 10))
}

/// The server's current WAL position, in bytes.
pub async fn wal_lsn(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(pool)
            .await?,
    )
}
