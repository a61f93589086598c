//! A user's program, built by `scripts/check-package` outside the workspace
//! against the *packaged* jobq crates: if a file the build needs (a
//! migration, say) is missing from a package, this does not compile.
//!
//! It uses sqlx only through `jobq::sqlx`, applies the migrations to a
//! database of its own, enqueues a job in a transaction, runs a worker until
//! the job is completed, and exits 0; anything else exits non-zero. It also
//! builds the dashboard's router (`jobq-web`), so that crate's package is
//! compiled too.

use std::str::FromStr;
use std::time::{Duration, Instant};

use jobq::sqlx::{self, PgPool, postgres::PgConnectOptions};

/// How long the job may take to complete before the check fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// The job the check runs.
#[jobq::job(queue = "consumer_check")]
pub async fn greet(name: String) -> Result<(), std::io::Error> {
    println!("consumer check: hello, {name}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = PgConnectOptions::from_str(&std::env::var("DATABASE_URL")?)?;
    // A fresh database, so nothing else running against the server matters.
    let database = format!("jobq_consumer_check_{}", random_suffix());
    let admin = PgPool::connect_with(options.clone()).await?;
    // The name is ours, made of digits: safe to splice.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    let outcome = check(options.database(&database)).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {database} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    outcome
}

async fn check(options: PgConnectOptions) -> Result<(), Box<dyn std::error::Error>> {
    let pool = PgPool::connect_with(options).await?;
    jobq::migrate(&pool).await?;

    let mut tx = pool.begin().await?;
    let id = greet::enqueue(
        &mut tx,
        greet::Args {
            name: "user".into(),
        },
    )
    .await?;
    tx.commit().await?;

    let state_pool = pool.clone();
    let done = async move {
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            let state: String =
                sqlx::query_scalar("SELECT state::text FROM jobq_jobs WHERE id = $1")
                    .bind(id.0)
                    .fetch_one(&state_pool)
                    .await
                    .expect("reading the job's state");
            if state == "completed" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    jobq::Worker::new(pool.clone())
        .queue("consumer_check", 1)
        .run_until(done)
        .await?;

    let state: String = sqlx::query_scalar("SELECT state::text FROM jobq_jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(&pool)
        .await?;
    // The dashboard builds from its package too (its templates and assets
    // are compiled in).
    let _dashboard = jobq_web::router(pool.clone(), jobq_web::Options::default().read_only(true));
    pool.close().await;
    if state != "completed" {
        return Err(format!("job {id} is {state}, not completed, after {DEADLINE:?}").into());
    }
    println!("consumer check: job {id} completed");
    Ok(())
}

/// A random number for the database's name, without a dependency for it.
fn random_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}
