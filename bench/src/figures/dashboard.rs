//! `jobq-bench dashboard`: how long each dashboard page takes with millions
//! of jobs in the table.
//!
//! The table is filled once into a database that is kept
//! (`jobq_bench_dashboard`): the fill takes minutes, a measurement seconds.
//! A later run reuses it when it holds the number of rows asked (and
//! applies any newer migration to it, as an upgrade would), or fills it
//! again with `--refill`. Pages are requested through `jobq_web::router`
//! in-process (no socket): the time of a request is what a user waits for,
//! apart from the network: the handler, every query it runs, and the
//! rendering.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use tower::ServiceExt as _;

use crate::{Ctx, db, progress};

/// The kept database.
const DATABASE: &str = "jobq_bench_dashboard";

/// Rows per fill statement.
const CHUNK: u64 = 1_000_000;

/// Rows `first..=last` of a history of `rows` jobs ending at `anchor`: see
/// the file for what they hold.
const FILL_SQL: &str = include_str!("../../sql/dashboard_fill.sql");

/// The measured pages: a name, and the path (with `{..}` placeholders
/// filled from the table, see [`Sample`]).
const PAGES: &[(&str, &str)] = &[
    ("overview", "/"),
    ("queues", "/queues"),
    ("queue", "/queues/email"),
    ("jobs", "/jobs"),
    ("jobs_next_page", "/jobs?after={deep}"),
    ("jobs_state_discarded", "/jobs?state=discarded"),
    ("jobs_state_available", "/jobs?state=available"),
    ("jobs_queue_email", "/jobs?queue=email"),
    ("jobs_queue_exports", "/jobs?queue=exports"),
    ("jobs_kind", "/jobs?kind=refund_payment"),
    (
        "jobs_kind_state",
        "/jobs?kind=refund_payment&state=discarded",
    ),
    ("jobs_queue_next_page", "/jobs?queue=email&after={deep}"),
    ("jobs_since_1h", "/jobs?since={hour_ago}"),
    (
        "jobs_since_until",
        "/jobs?since={day_ago}&until={day_ago_plus_1h}",
    ),
    ("jobs_args", "/jobs?args={args}"),
    ("jobs_args_queue", "/jobs?queue=billing&args={args}"),
    ("jobs_id", "/jobs?id={job}"),
    ("job_detail", "/jobs/{job}"),
    ("api_jobs_completed", "/api/jobs?state=completed"),
    ("workers", "/workers"),
    ("cron", "/cron"),
];

/// Values from the filled table that the paths use.
struct Sample {
    /// A discarded job, some way back.
    job: i64,
    /// An id 5 million jobs back (or half-way at fewer rows).
    deep: i64,
    /// `{"user_id": N}` for a user of a recent job.
    args: String,
    /// The newest job's creation time, less an hour and less a day.
    hour_ago: DateTime<Utc>,
    day_ago: DateTime<Utc>,
}

/// Fills (or reuses) the table of `rows` jobs, then requests each page
/// `runs` times and prints the median and the slowest (the first, with
/// cold caches) of each.
pub async fn dashboard(ctx: &mut Ctx, rows: u64, refill: bool, runs: usize) -> anyhow::Result<()> {
    let options = ctx
        .base
        .clone()
        .database(DATABASE)
        .application_name("jobq-bench");
    let reuse = !refill && filled_rows(ctx, &options).await? == Some(rows);
    if !reuse {
        fill(ctx, &options, rows).await?;
    } else {
        progress(ctx, format!("dashboard: reusing {DATABASE} ({rows} jobs)"));
    }
    let pool = db::pool(&options, 8).await?;
    jobq::migrate(&pool).await?;
    sqlx::query("ANALYZE jobq_jobs").execute(&pool).await?;
    live_workers(&pool).await?;
    let sample = sample(&pool).await?;
    let filled_at: DateTime<Utc> = sqlx::query_scalar("SELECT filled_at FROM jobq_bench_fill")
        .fetch_one(&pool)
        .await?;
    println!(
        "# dashboard: {rows} jobs, filled {} ago (the overview's last-hour figures and charts \
         see the jobs of the hour before the fill only while it is recent)",
        humanize(Utc::now() - filled_at)
    );
    let router = jobq_web::router(pool.clone(), jobq_web::Options::default());
    let mut table = Vec::new();
    for (name, path) in PAGES {
        let path = sample.fill(path);
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs.max(1) {
            let request = Request::get(&path).body(Body::empty())?;
            let start = Instant::now();
            let response = router.clone().oneshot(request).await?;
            let status = response.status();
            let body = to_bytes(response.into_body(), 64 * 1024 * 1024).await?;
            times.push(start.elapsed());
            if status != StatusCode::OK {
                bail!(
                    "{path}: HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(2000)])
                );
            }
            size = body.len();
        }
        let slowest = *times.iter().max().expect("one run at least");
        times.sort();
        let median = times[times.len() / 2];
        ctx.report.record(
            format!("dashboard_{name}_ms"),
            median.as_secs_f64() * 1000.0,
            "ms",
        );
        table.push((name, path, median, slowest, size));
    }
    live_workers_gone(&pool).await?;
    println!();
    println!(
        "{:<24} {:>9} {:>9} {:>8}  path",
        "page", "median", "slowest", "bytes"
    );
    for (name, path, median, slowest, size) in table {
        println!(
            "{name:<24} {:>7.1}ms {:>7.1}ms {size:>8}  {path}",
            median.as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0,
        );
    }
    progress(ctx, "done");
    Ok(())
}

/// How many rows the kept database was filled with, if it exists and the
/// fill ended.
async fn filled_rows(
    ctx: &Ctx,
    options: &sqlx::postgres::PgConnectOptions,
) -> anyhow::Result<Option<u64>> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&ctx.admin)
            .await?;
    if !exists {
        return Ok(None);
    }
    let pool = db::pool(options, 1).await?;
    let rows: Option<i64> = sqlx::query_scalar(
        "SELECT CASE WHEN to_regclass('jobq_bench_fill') IS NOT NULL
                     THEN (SELECT max(rows) FROM jobq_bench_fill) END",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(rows.map(|r| r as u64))
}

/// Creates the database afresh, migrates it, fills `rows` jobs a million
/// per statement, vacuums and analyzes, and records the fill.
async fn fill(
    ctx: &Ctx,
    options: &sqlx::postgres::PgConnectOptions,
    rows: u64,
) -> anyhow::Result<()> {
    progress(
        ctx,
        format!("dashboard: filling {DATABASE} with {rows} jobs"),
    );
    for statement in [
        format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        // The name is ours, not user input.
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&ctx.admin)
            .await?;
    }
    let pool = db::pool(options, 1).await?;
    jobq::migrate(&pool).await?;
    let anchor: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
    let mut first = 1;
    while first <= rows {
        let last = (first + CHUNK - 1).min(rows);
        sqlx::query(FILL_SQL)
            .bind(first as i64)
            .bind(last as i64)
            .bind(rows as i64)
            .bind(anchor)
            .execute(&pool)
            .await
            .with_context(|| format!("filling rows {first}..{last}"))?;
        progress(ctx, format!("dashboard: {last} of {rows} jobs"));
        first = last + 1;
    }
    sqlx::query("VACUUM (ANALYZE) jobq_jobs")
        .execute(&pool)
        .await?;
    sqlx::query(
        "CREATE TABLE jobq_bench_fill (rows bigint NOT NULL, filled_at timestamptz NOT NULL)",
    )
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO jobq_bench_fill VALUES ($1, $2)")
        .bind(rows as i64)
        .bind(anchor)
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Two live workers, as a deployment has: they run every queue but
/// `exports` and know every kind but `export_csv` and `refund_payment`
/// (which the overview then warns about), `nightly_rollup` as a cron job.
async fn live_workers(pool: &PgPool) -> anyhow::Result<()> {
    live_workers_gone(pool).await?;
    let queues = ["default", "email", "webhooks", "reports", "billing"];
    let kinds = [
        ("process_order", "default"),
        ("sync_inventory", "default"),
        ("resize_image", "default"),
        ("send_welcome_email", "email"),
        ("send_receipt", "email"),
        ("send_digest", "email"),
        ("deliver_webhook", "webhooks"),
        ("build_report", "reports"),
        ("nightly_rollup", "reports"),
        ("charge_card", "billing"),
    ];
    for host in ["bench-a", "bench-b"] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobq_workers (host, pid, queues, lease_ms) VALUES ($1, 1, $2, 3600000)
             RETURNING id",
        )
        .bind(host)
        .bind(&queues[..])
        .fetch_one(pool)
        .await?;
        for queue in queues {
            sqlx::query(
                "INSERT INTO jobq_worker_queues (worker_id, queue, concurrency) VALUES ($1, $2, 10)",
            )
            .bind(id)
            .bind(queue)
            .execute(pool)
            .await?;
        }
        for (kind, queue) in kinds {
            let cron = (kind == "nightly_rollup").then_some("0 * * * *");
            sqlx::query(
                "INSERT INTO jobq_worker_kinds (worker_id, kind, queue, priority, max_attempts,
                                                cron, source)
                 VALUES ($1, $2, $3, 0, 3, $4, 'bench')",
            )
            .bind(id)
            .bind(kind)
            .bind(queue)
            .bind(cron)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Removes the workers [`live_workers`] added (their published rows go
/// with them).
async fn live_workers_gone(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM jobq_workers WHERE host IN ('bench-a', 'bench-b')")
        .execute(pool)
        .await?;
    Ok(())
}

async fn sample(pool: &PgPool) -> anyhow::Result<Sample> {
    let (max, newest): (i64, DateTime<Utc>) =
        sqlx::query_as("SELECT id, created_at FROM jobq_jobs ORDER BY id DESC LIMIT 1")
            .fetch_one(pool)
            .await
            .context("the table is empty")?;
    let deep = (max - 5_000_000).max(max / 2);
    let job: i64 = sqlx::query_scalar(
        "SELECT id FROM jobq_jobs WHERE id <= $1 AND state = 'discarded' ORDER BY id DESC LIMIT 1",
    )
    .bind(max - 100_000)
    .fetch_optional(pool)
    .await?
    .unwrap_or(max);
    let user: i64 = sqlx::query_scalar(
        "SELECT (args ->> 'user_id')::bigint FROM jobq_jobs WHERE id <= $1
         ORDER BY id DESC LIMIT 1",
    )
    .bind(max - 1_000)
    .fetch_one(pool)
    .await?;
    Ok(Sample {
        job,
        deep,
        args: format!("{{\"user_id\": {user}}}"),
        hour_ago: newest - chrono::Duration::hours(1),
        day_ago: newest - chrono::Duration::days(1),
    })
}

impl Sample {
    /// `path` with its placeholders filled, query values percent-encoded.
    fn fill(&self, path: &str) -> String {
        let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let encode = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        path.replace("{job}", &self.job.to_string())
            .replace("{deep}", &self.deep.to_string())
            .replace("{args}", &encode(&self.args))
            .replace("{hour_ago}", &encode(&time(self.hour_ago)))
            .replace("{day_ago}", &encode(&time(self.day_ago)))
            .replace(
                "{day_ago_plus_1h}",
                &encode(&time(self.day_ago + chrono::Duration::hours(1))),
            )
    }
}

/// `3h 5m`, for the fill's age.
fn humanize(d: chrono::Duration) -> String {
    let d = d.to_std().unwrap_or(Duration::ZERO).as_secs();
    match d {
        0..60 => format!("{d}s"),
        60..3600 => format!("{}m", d / 60),
        3600..86_400 => format!("{}h {}m", d / 3600, d / 60 % 60),
        _ => format!("{}d {}h", d / 86_400, d / 3600 % 24),
    }
}
