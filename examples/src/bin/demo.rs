//! The end-to-end demo `scripts/demo` runs: migrate, enqueue in a transaction
//! (and roll one back), run the worker until every job has finished, print
//! what happened.

use std::time::{Duration, Instant};

use jobq_examples::{Mailer, charge_card, make_thumbnail, send_welcome_email};
use sqlx::PgPool;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "jobq=info".into()),
        )
        .init();
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("set DATABASE_URL, or run scripts/demo"))?;
    let pool = PgPool::connect(&url).await?;

    println!("1. jobq::migrate: applying jobq's schema (its own history table)");
    jobq::migrate(&pool).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS demo_users (id bigserial PRIMARY KEY, email text NOT NULL)",
    )
    .execute(&pool)
    .await?;

    println!("2. a sign-up: the user row and its jobs in ONE transaction, committed");
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO demo_users (email) VALUES ($1)")
        .bind("ada@example.com")
        .execute(&mut *tx)
        .await?;
    let mut ids = vec![
        send_welcome_email::enqueue(
            &mut tx,
            send_welcome_email::Args {
                to: "ada@example.com".into(),
                name: "Ada".into(),
            },
        )
        .await?,
        make_thumbnail::enqueue(
            &mut tx,
            make_thumbnail::Args {
                path: "avatars/ada.png".into(),
                width: 128,
            },
        )
        .await?,
        charge_card::enqueue(
            &mut tx,
            charge_card::Args {
                card: "4242424242424242".into(),
                cents: 1999,
            },
        )
        .await?,
        charge_card::enqueue(
            &mut tx,
            charge_card::Args {
                card: "not-a-card".into(),
                cents: 500,
            },
        )
        .await?,
    ];
    tx.commit().await?;

    println!("3. another sign-up that fails: its transaction rolls back, taking its job with it");
    let mut tx = pool.begin().await?;
    let ghost = send_welcome_email::enqueue(
        &mut tx,
        send_welcome_email::Args {
            to: "ghost@example.com".into(),
            name: "Ghost".into(),
        },
    )
    .await?;
    tx.rollback().await?;

    println!("4. a newsletter: 3 emails with enqueue_many, one statement");
    ids.extend(
        send_welcome_email::enqueue_many(
            &pool,
            ["bob", "cy", "dee"].map(|n| send_welcome_email::Args {
                to: format!("{n}@example.com"),
                name: n.to_owned(),
            }),
        )
        .await?,
    );

    println!(
        "5. the worker runs the email, media and billing queues until all {} jobs are done:",
        ids.len()
    );
    let id_list: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let worker = jobq::Worker::new(pool.clone())
        .state(Mailer::default())
        .queue("email", 4)
        .queue("media", 2)
        .queue("billing", 2)
        .backoff(jobq::Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(1),
        });
    let watch = wait_until_final(pool.clone(), id_list.clone());
    let started = Instant::now();
    worker.run_until(watch).await?;
    println!("   worker stopped after {:.1?}", started.elapsed());

    println!("6. what happened:");
    let rows: Vec<(i64, String, String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT id, kind, queue, state::text, attempt, errors -> -1 ->> 'error'
         FROM jobq_jobs WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&id_list)
    .fetch_all(&pool)
    .await?;
    println!(
        "   {:>4}  {:<20} {:<8} {:<10} {:>8}  last error",
        "id", "job", "queue", "state", "attempts"
    );
    for (id, kind, queue, state, attempt, error) in rows {
        println!(
            "   {id:>4}  {kind:<20} {queue:<8} {state:<10} {attempt:>8}  {}",
            error.unwrap_or_default()
        );
    }
    let ghost_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobq_jobs WHERE id = $1)")
            .bind(ghost.0)
            .fetch_one(&pool)
            .await?;
    println!(
        "   rolled-back job {ghost}: {}",
        if ghost_exists {
            "EXISTS (bug!)"
        } else {
            "never existed"
        }
    );
    Ok(())
}

/// Completes once none of `ids` can run again.
async fn wait_until_final(pool: PgPool, ids: Vec<i64>) {
    loop {
        let open: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM jobq_jobs
             WHERE id = ANY($1) AND state NOT IN ('completed', 'discarded', 'cancelled')",
        )
        .bind(&ids)
        .fetch_one(&pool)
        .await;
        if matches!(open, Ok(0)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
