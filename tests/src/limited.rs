//! Jobs with limits, each in a queue of its own, for the limits tests. Each
//! records its own run in `limit_runs` (created by [`create_limit_runs`]):
//! when it began and ended on the database's clock, and the start its
//! attempt counts against a rate limit (its `attempted_at`).

use std::time::Duration;

use jobq::{JobContext, State, job};
use sqlx::PgPool;

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
