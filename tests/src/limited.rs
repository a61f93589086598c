//! Jobs with limits, each in a queue of its own, for the limits tests. Each
//! records its own run in `limit_runs` (created by [`create_limit_runs`]):
//! when it began and ended on the database's clock, and the start its
//! attempt counts against a rate limit (its `attempted_at`).

use std::time::Duration;

use jobq::{JobContext, Limit, Rate, State, job};
use sqlx::PgPool;

use crate::{InProcess, TestDb, test_worker, wait_until};

/// Creates the table the limited jobs record their runs in.
pub async fn create_limit_runs(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE limit_runs (
            job_id     bigint      NOT NULL,
            part       text        NOT NULL,
            claimed_at timestamptz NOT NULL,
            began_at   timestamptz NOT NULL,
            ended_at   timestamptz NOT NULL
        )",
    )
    .execute(pool)
    .await
    .expect("create limit_runs");
}

/// Runs for `millis`, recording when it began and ended: the time is read
/// from the database once the handler runs, and again before it returns,
/// so the recorded span lies inside the time its row was `running`.
async fn run_and_record(
    db: &PgPool,
    ctx: &JobContext,
    part: String,
    millis: u64,
) -> Result<(), sqlx::Error> {
    let (claimed_at, began_at): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT attempted_at, clock_timestamp() FROM jobq_jobs WHERE id = $1")
            .bind(ctx.id().0)
            .fetch_one(db)
            .await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    sqlx::query(
        "INSERT INTO limit_runs (job_id, part, claimed_at, began_at, ended_at)
         VALUES ($1, $2, $3, $4, clock_timestamp())",
    )
    .bind(ctx.id().0)
    .bind(part)
    .bind(claimed_at)
    .bind(began_at)
    .execute(db)
    .await?;
    Ok(())
}

/// At most 5 at once, across every worker.
#[job(queue = "limit_c5", concurrency = 5)]
pub async fn five_at_once(db: State<PgPool>, ctx: JobContext, millis: u64) -> anyhow::Result<()> {
    Ok(run_and_record(&db, &ctx, String::new(), millis).await?)
}

/// At most 100 started in any second, across every worker.
#[job(queue = "limit_rate", rate = "100/1s")]
pub async fn hundred_a_second(
    db: State<PgPool>,
    ctx: JobContext,
    millis: u64,
) -> anyhow::Result<()> {
    Ok(run_and_record(&db, &ctx, String::new(), millis).await?)
}

/// One at a time per user, across every worker.
#[job(queue = "limit_user", concurrency = 1, partition = "user")]
pub async fn one_per_user(
    db: State<PgPool>,
    ctx: JobContext,
    user: i64,
    millis: u64,
) -> anyhow::Result<()> {
    Ok(run_and_record(&db, &ctx, user.to_string(), millis).await?)
}

/// Two at once, for the crash test.
#[job(queue = "limit_crash", concurrency = 2, retries = 5)]
pub async fn two_at_once(db: State<PgPool>, ctx: JobContext, millis: u64) -> anyhow::Result<()> {
    Ok(run_and_record(&db, &ctx, String::new(), millis).await?)
}

/// No limit of its own, for the queue limit test.
#[job(queue = "limit_queue")]
pub async fn in_limited_queue(
    db: State<PgPool>,
    ctx: JobContext,
    millis: u64,
) -> anyhow::Result<()> {
    Ok(run_and_record(&db, &ctx, String::new(), millis).await?)
}

/// Runs until cancelled (a worker's shutdown past its grace), two at once
/// per tenant: jobs holding their limits' slots, for the tests that show
/// limits in use.
#[job(queue = "limit_show", concurrency = 2, partition = "tenant")]
pub async fn held_per_tenant(ctx: JobContext, tenant: String) -> anyhow::Result<()> {
    ctx.cancellation().cancelled().await;
    tracing::debug!(%tenant, "held_per_tenant cancelled");
    Ok(())
}

/// Runs until cancelled; at most 3 started an hour.
#[job(queue = "limit_show", rate = "3/1h")]
pub async fn held_rated(ctx: JobContext) -> anyhow::Result<()> {
    ctx.cancellation().cancelled().await;
    Ok(())
}

/// Runs until cancelled; no limit of its own, in a queue the tests limit.
#[job(queue = "limit_show_q")]
pub async fn held_in_limited_queue(ctx: JobContext) -> anyhow::Result<()> {
    ctx.cancellation().cancelled().await;
    Ok(())
}

/// What [`hold_limits`] leaves running.
pub const HELD_RUNNING: i64 = 10;

/// Fills limits with running jobs and returns the worker running them
/// (stop it with [`InProcess::stop`]): queue `limit_show_q` limited to 2
/// at once and 10 started an hour, 4 jobs waiting, 2 running; in queue
/// `limit_show`, `held_per_tenant` for tenants a (3 jobs), b (2) and c
/// (1), 2 at once per tenant: 5 running, a and b at their limit; and 5
/// `held_rated` jobs, 3 started an hour: 3 running. Returns once those 10
/// run, which nothing changes while the worker runs.
pub async fn hold_limits(db: &TestDb) -> InProcess {
    let pool = &db.pool;
    jobq::set_queue_limit(
        pool,
        "limit_show_q",
        Limit::concurrency(2).and_rate(Rate::per_hour(10)),
    )
    .await
    .expect("set the queue limit");
    let tenants = ["a", "a", "a", "b", "b", "c"];
    jobq::enqueue_many::<held_per_tenant::Job, _, _>(
        pool,
        tenants.iter().map(|t| held_per_tenant::Args {
            tenant: (*t).to_owned(),
        }),
    )
    .await
    .expect("enqueue held_per_tenant");
    jobq::enqueue_many::<held_rated::Job, _, _>(pool, (0..5).map(|_| held_rated::Args {}))
        .await
        .expect("enqueue held_rated");
    jobq::enqueue_many::<held_in_limited_queue::Job, _, _>(
        pool,
        (0..4).map(|_| held_in_limited_queue::Args {}),
    )
    .await
    .expect("enqueue held_in_limited_queue");
    let worker = InProcess::start(
        test_worker(pool)
            .queue("limit_show", 20)
            .queue("limit_show_q", 20)
            .shutdown_grace(Duration::from_millis(50)),
    );
    wait_until(
        "the held jobs to fill their limits",
        Duration::from_secs(60),
        || async {
            db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'running'")
                .await
                >= HELD_RUNNING
        },
    )
    .await;
    worker
}
