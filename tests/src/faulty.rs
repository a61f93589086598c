//! Jobs that behave badly in ways real handlers do, for the hardening tests:
//! a decoder that panics, a handler that holds pooled connections, a job
//! with no retries to lose.

use std::time::Duration;

use jobq::{JobContext, State, job};
use serde::Deserialize;
use sqlx::PgPool;

use crate::record_run;

/// Sleeps `millis`, then records that it ran; no retries, so an attempt it
/// loses for nothing would discard it.
#[job(retries = 0)]
pub async fn once(db: State<PgPool>, ctx: JobContext, millis: u64) -> Result<(), sqlx::Error> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await
}

/// Holds one of the worker's pooled connections (`ctx.pool()`) for `millis`,
/// recording its start and end through the test's own pool (`State`).
#[job(retries = 0)]
pub async fn hogs_a_connection(
    db: State<PgPool>,
    ctx: JobContext,
    millis: u64,
) -> Result<(), sqlx::Error> {
    let held = ctx.pool().acquire().await?;
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    drop(held);
    record_run(&db, &ctx, "finished", serde_json::Value::Null).await
}

fn panicking_decoder<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if n == 13 {
        panic!("the decoder panicked on 13");
    }
    Ok(n)
}

/// Records its argument; decoding `n = 13` panics.
#[job(retries = 1)]
pub async fn decodes_badly(
    db: State<PgPool>,
    ctx: JobContext,
    #[serde(deserialize_with = "panicking_decoder")] n: u64,
) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "ran", serde_json::json!({ "n": n })).await
}

/// Records that it started, then takes its whole process down after
/// `millis`, as a segfaulting library or an out-of-memory kill would.
#[job(retries = 3, queue = "abortq")]
pub async fn aborts(db: State<PgPool>, ctx: JobContext, millis: u64) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    std::process::abort();
}

/// Records its start, sleeps `millis`, records its end: a job that happens
/// to share its worker with [`aborts`].
#[job(retries = 5, queue = "abortq")]
pub async fn bystander(db: State<PgPool>, ctx: JobContext, millis: u64) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    record_run(&db, &ctx, "finished", serde_json::Value::Null).await
}

/// Records its start, then blocks its runtime thread for `millis` (sync I/O
/// or CPU work in an `async fn`), then records its end.
#[job(retries = 3, queue = "blocking")]
pub async fn blocks(db: State<PgPool>, ctx: JobContext, millis: u64) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    std::thread::sleep(Duration::from_millis(millis));
    record_run(&db, &ctx, "finished", serde_json::Value::Null).await
}

async fn count_events(db: &PgPool, id: i64, event: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM test_runs WHERE job_id = $1 AND event = $2")
        .bind(id)
        .bind(event)
        .fetch_one(db)
        .await
}

/// Two overlapping runs of one job, for the fencing test. The first run
/// waits until a second one started (its worker was taken for dead), then
/// fails; the second waits until the first failed, and half a second more
/// for that failure to reach the database (or be refused), then completes.
#[job(retries = 3)]
pub async fn overtaken(db: State<PgPool>, ctx: JobContext) -> anyhow::Result<()> {
    let id = ctx.id().0;
    let earlier = count_events(&db, id, "started").await?;
    record_run(
        &db,
        &ctx,
        "started",
        serde_json::json!({ "run": earlier + 1 }),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    if earlier == 0 {
        while count_events(&db, id, "started").await? < 2 {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "no second run");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        record_run(&db, &ctx, "failed", serde_json::Value::Null).await?;
        anyhow::bail!("the first run fails once a second one started");
    }
    while count_events(&db, id, "failed").await? < 1 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the first run never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    record_run(&db, &ctx, "finished", serde_json::Value::Null).await?;
    Ok(())
}
