//! `jobq::testing` against a real PostgreSQL: each helper passes when it
//! should, and fails, with a message that says why, when it should.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobq::testing::{TestDatabase, assert_enqueued, drain, enqueued, perform, refute_enqueued};
use jobq::{Control, JobContext, JobState, Outcome, State, job};
use jobq_tests::state_of;
use sqlx::PgPool;

/// Counts handler calls; its clones share the count.
#[derive(Debug, Default, Clone)]
struct Calls(Arc<AtomicUsize>);

/// The cron tick a job last ran for; its clones share it.
#[derive(Debug, Default, Clone)]
struct Tick(Arc<Mutex<Option<DateTime<Utc>>>>);

impl Calls {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[job(queue = "mail")]
async fn t_welcome(calls: State<Calls>, to: String) -> Result<(), std::io::Error> {
    let _ = to;
    calls.0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[job(queue = "work", retries = 1)]
async fn t_flaky(ctx: JobContext, fail_until: i32) -> anyhow::Result<()> {
    if ctx.attempt() <= fail_until {
        anyhow::bail!("attempt {} failed on purpose", ctx.attempt());
    }
    Ok(())
}

#[job(queue = "work")]
async fn t_refuse(reason: String) -> Result<(), Control> {
    Err(Control::discard(reason))
}

#[job(queue = "work")]
async fn t_nap() -> Result<(), Control> {
    Err(Control::snooze(Duration::from_secs(3600)))
}

#[job(queue = "work", retries = 1)]
async fn t_explode() -> Result<(), std::io::Error> {
    panic!("boom")
}

#[job(queue = "work")]
async fn t_parent(ctx: JobContext, children: u32) -> anyhow::Result<()> {
    for _ in 0..children {
        t_child::enqueue(ctx.pool(), t_child::Args {}).await?;
    }
    Ok(())
}

#[job(queue = "work")]
async fn t_child(calls: State<Calls>) -> Result<(), std::io::Error> {
    calls.0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[job(queue = "work")]
async fn t_forever(ctx: JobContext) -> anyhow::Result<()> {
    t_forever::enqueue(ctx.pool(), t_forever::Args {}).await?;
    Ok(())
}

#[job(queue = "work", retries = 2)]
async fn t_last_chance(ctx: JobContext) -> anyhow::Result<()> {
    anyhow::ensure!(ctx.is_last_attempt(), "not the last attempt yet");
    Ok(())
}

#[job(cron = "0 * * * *")]
async fn t_hourly(seen: State<Tick>, ctx: JobContext) -> anyhow::Result<()> {
    *seen.0.lock().unwrap() = ctx.cron_tick();
    Ok(())
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Words {
    count: usize,
}

#[job(queue = "work")]
async fn t_count_words(text: String) -> anyhow::Result<Words> {
    anyhow::ensure!(!text.is_empty(), "no text");
    Ok(Words {
        count: text.split_whitespace().count(),
    })
}

#[job(queue = "work")]
async fn t_uses_pool(ctx: JobContext) -> anyhow::Result<()> {
    sqlx::query("SELECT 1").execute(ctx.pool()).await?;
    Ok(())
}

/// Asks for its own cancellation, as code it calls might, and stops when its
/// token fires.
#[job(queue = "halt")]
async fn t_cancels_itself(ctx: JobContext) -> anyhow::Result<()> {
    jobq::cancel(ctx.pool(), ctx.id()).await?;
    ctx.cancellation().cancelled().await;
    anyhow::bail!("stopped: its cancellation was asked")
}

fn welcome(to: &str) -> t_welcome::Args {
    t_welcome::Args { to: to.into() }
}

/// The message `fut` panics with; fails the test when it does not panic.
async fn panic_of<F>(fut: F) -> String
where
    F: Future<Output = ()> + Send + 'static,
{
    let error = tokio::spawn(fut).await.expect_err("expected a panic");
    let panic = error.into_panic();
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .expect("a text panic")
}

#[tokio::test]
async fn test_database_is_fresh_migrated_and_dropped_with_its_guard() {
    let db = TestDatabase::new().await;
    let name = db.name().to_owned();
    assert!(name.starts_with("jobq_test_"), "{name}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobq_jobs")
        .fetch_one(db.pool())
        .await
        .expect("jobq's schema is there");
    assert_eq!(jobs, 0);
    let other = TestDatabase::new().await;
    assert_ne!(other.name(), name, "each test gets its own database");

    let server = PgPool::connect(&std::env::var("DATABASE_URL").unwrap())
        .await
        .unwrap();
    let exists = |name: String| {
        let server = server.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            )
            .bind(name)
            .fetch_one(&server)
            .await
            .unwrap()
        }
    };
    assert!(exists(name.clone()).await);
    // Dropped while its pool still holds a connection.
    drop(db);
    assert!(!exists(name).await, "dropping the guard drops the database");
    let other_name = other.name().to_owned();
    other.close().await;
    assert!(!exists(other_name).await, "close drops the database");
}

#[tokio::test]
async fn assert_enqueued_sees_the_open_transaction_and_the_pool_only_after_commit() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    let mut tx = pool.begin().await.unwrap();
    t_welcome::enqueue(&mut *tx, welcome("ada@example.com"))
        .await
        .unwrap();

    let seen = assert_enqueued::<t_welcome::Job>(&mut *tx, |a| a.to == "ada@example.com")
        .queue("mail")
        .state(JobState::Available)
        .await;
    assert_eq!(seen.len(), 1);
    // The transaction itself works as well as a connection of it.
    assert_eq!(enqueued::<t_welcome::Job>(&mut tx).await.len(), 1);
    refute_enqueued::<t_welcome::Job>(&pool, |_| true).await;
    let outside = pool.clone();
    let message = panic_of(async move {
        assert_enqueued::<t_welcome::Job>(&outside, |_| true).await;
    })
    .await;
    assert!(message.contains("no job matched"), "{message}");
    assert!(message.contains("no job is stored at all"), "{message}");

    tx.commit().await.unwrap();
    assert_enqueued::<t_welcome::Job>(&pool, |a| a.to == "ada@example.com").await;
    // And a plain connection of the pool.
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(enqueued::<t_welcome::Job>(&mut *conn).await.len(), 1);
    refute_enqueued::<t_welcome::Job>(&mut *conn, |a| a.to == "bob@example.com").await;
    drop(conn);
    drop(db);
}

#[tokio::test]
async fn drain_hears_a_cancellation_asked_while_a_job_runs() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    let id = t_cancels_itself::enqueue(&pool, t_cancels_itself::Args {})
        .await
        .unwrap();
    // Without the token firing, the job would wait for ever.
    let drained = tokio::time::timeout(Duration::from_secs(60), drain(&pool).queue("halt"))
        .await
        .expect("the drain never fired the job's token");
    assert_eq!(
        (drained.cancelled, drained.failed, drained.completed),
        (1, 0, 0),
        "{drained}"
    );
    assert_eq!(state_of(&pool, id).await, "cancelled");
    drop(db);
}

#[tokio::test]
async fn a_failed_assert_enqueued_says_what_it_expected_and_lists_every_job() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    t_welcome::enqueue(&pool, welcome("bob@example.com"))
        .await
        .unwrap();
    t_welcome::builder(welcome("ada@example.com"))
        .queue("other")
        .enqueue(&pool)
        .await
        .unwrap();
    t_refuse::enqueue(
        &pool,
        t_refuse::Args {
            reason: "no".into(),
        },
    )
    .await
    .unwrap();

    let p = pool.clone();
    let message = panic_of(async move {
        assert_enqueued::<t_welcome::Job>(&p, |a| a.to == "ada@example.com")
            .queue("mail")
            .await;
    })
    .await;
    println!("--- the message ---\n{message}\n---");
    for expected in [
        "assert_enqueued::<",
        "\nexpected: a `t_welcome` job (available or scheduled or running or retryable; \
         queue `mail`) whose args match\n",
        "tests/testing.rs:",
        "no job matched",
        "jobs stored (3, by id):",
        r#"t_welcome {"to": "bob@example.com"} (queue `mail`, available"#,
        "no match, its args do not match",
        r#"t_welcome {"to": "ada@example.com"} (queue `other`"#,
        "no match, its queue is `other`",
        r#"t_refuse {"reason": "no"} (queue `work`"#,
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    drop(db);
}

#[tokio::test]
async fn filters_on_queue_state_priority_and_due_time_narrow_the_match() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    t_welcome::builder(welcome("later@example.com"))
        .delay(Duration::from_secs(3600))
        .priority(3)
        .enqueue(&pool)
        .await
        .unwrap();
    t_welcome::enqueue(&pool, welcome("now@example.com"))
        .await
        .unwrap();

    let later = |a: &t_welcome::Args| a.to == "later@example.com";
    let tolerance = Duration::from_secs(60);
    assert_enqueued::<t_welcome::Job>(&pool, later)
        .state(JobState::Scheduled)
        .priority(3)
        .scheduled_in(Duration::from_secs(3600), tolerance)
        .await;
    assert_enqueued::<t_welcome::Job>(&pool, |_| true)
        .count(2)
        .await;
    let both = enqueued::<t_welcome::Job>(&pool).await;
    let tos: Vec<&str> = both.iter().map(|(_, a)| a.to.as_str()).collect();
    assert_eq!(tos, ["later@example.com", "now@example.com"], "in id order");
    assert_eq!(
        enqueued::<t_welcome::Job>(&pool)
            .state(JobState::Available)
            .await
            .len(),
        1
    );
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    assert_enqueued::<t_welcome::Job>(&pool, later)
        .scheduled_at(in_an_hour, tolerance)
        .await;

    type Check = fn(PgPool) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
    let failing: [(&str, Check); 5] = [
        ("it is scheduled", |p| {
            Box::pin(async move {
                assert_enqueued::<t_welcome::Job>(&p, |a| a.to == "later@example.com")
                    .state(JobState::Available)
                    .await;
            })
        }),
        ("its priority is 3", |p| {
            Box::pin(async move {
                assert_enqueued::<t_welcome::Job>(&p, |a| a.to == "later@example.com")
                    .priority(0)
                    .await;
            })
        }),
        ("it is due 1800", |p| {
            Box::pin(async move {
                assert_enqueued::<t_welcome::Job>(&p, |a| a.to == "later@example.com")
                    .scheduled_in(Duration::from_secs(1800), Duration::from_secs(60))
                    .await;
            })
        }),
        ("expected 1 matching job, found 2", |p| {
            Box::pin(async move {
                assert_enqueued::<t_welcome::Job>(&p, |_| true)
                    .count(1)
                    .await;
            })
        }),
        ("2 jobs matched", |p| {
            Box::pin(async move {
                refute_enqueued::<t_welcome::Job>(&p, |_| true).await;
            })
        }),
    ];
    for (why, check) in failing {
        let message = panic_of(check(pool.clone())).await;
        assert!(message.contains(why), "missing {why:?} in:\n{message}");
    }
    drop(db);
}

#[tokio::test]
async fn finished_jobs_are_not_enqueued_unless_asked_for() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    t_welcome::enqueue(&pool, welcome("ada@example.com"))
        .await
        .unwrap();
    let drained = drain(&pool).state(Calls::default()).await;
    assert_eq!(drained.completed, 1, "{drained}");
    refute_enqueued::<t_welcome::Job>(&pool, |_| true).await;
    assert_enqueued::<t_welcome::Job>(&pool, |_| true)
        .state(JobState::Completed)
        .await;
    assert_enqueued::<t_welcome::Job>(&pool, |_| true)
        .any_state()
        .await;
    drop(db);
}

#[tokio::test]
async fn drain_runs_due_jobs_with_their_handlers_and_writes_their_states() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    let ok = t_flaky::enqueue(&pool, t_flaky::Args { fail_until: 0 })
        .await
        .unwrap();
    let flaky = t_flaky::enqueue(&pool, t_flaky::Args { fail_until: 1 })
        .await
        .unwrap();
    let refused = t_refuse::enqueue(
        &pool,
        t_refuse::Args {
            reason: "bad input".into(),
        },
    )
    .await
    .unwrap();
    let nap = t_nap::enqueue(&pool, t_nap::Args {}).await.unwrap();
    let boom = t_explode::enqueue(&pool, t_explode::Args {}).await.unwrap();
    let later = t_flaky::builder(t_flaky::Args { fail_until: 0 })
        .delay(Duration::from_secs(3600))
        .enqueue(&pool)
        .await
        .unwrap();

    let drained = drain(&pool).queue("work").await;
    println!("{drained}");
    assert_eq!(
        (
            drained.completed,
            drained.failed,
            drained.discarded,
            drained.snoozed,
            drained.cancelled
        ),
        (1, 2, 1, 1, 0),
        "{drained}"
    );
    assert!(!drained.limit_reached);
    assert_eq!(state_of(&pool, ok).await, "completed");
    assert_eq!(state_of(&pool, flaky).await, "retryable");
    assert_eq!(state_of(&pool, refused).await, "discarded");
    assert_eq!(state_of(&pool, nap).await, "scheduled");
    assert_eq!(state_of(&pool, boom).await, "retryable", "1 attempt of 2");
    assert_eq!(
        state_of(&pool, later).await,
        "scheduled",
        "not due: not run"
    );
    let errors: Vec<(jobq::JobId, &str, JobState)> = drained
        .errors
        .iter()
        .map(|e| (e.id, e.error.as_str(), e.state))
        .collect();
    assert_eq!(
        errors,
        [
            (flaky, "attempt 1 failed on purpose", JobState::Retryable),
            (refused, "bad input", JobState::Discarded),
            (boom, "panicked: boom", JobState::Retryable),
        ]
    );
    // The errors are in the jobs' histories too, as a worker writes them.
    let history: i64 = sqlx::query_scalar(
        "SELECT jsonb_array_length(errors)::bigint FROM jobq_jobs WHERE id = $1",
    )
    .bind(flaky.0)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(history, 1);

    // with_scheduled and recursive: the retries and the delayed job run
    // now; the flaky job's second attempt completes, the explosive one is
    // out of attempts; the napping one snoozes until the limit.
    let drained = drain(&pool)
        .queue("work")
        .with_scheduled(true)
        .recursive(true)
        .limit(20)
        .await;
    assert_eq!(state_of(&pool, flaky).await, "completed", "{drained}");
    assert_eq!(state_of(&pool, later).await, "completed", "{drained}");
    assert_eq!(state_of(&pool, boom).await, "discarded", "{drained}");
    assert!(drained.limit_reached, "{drained}");
    assert_eq!(drained.ran(), 20, "{drained}");
    assert_eq!(drained.snoozed, 17, "{drained}");
    drop(db);
}

#[tokio::test]
async fn drain_recurses_into_enqueued_jobs_only_when_asked() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    t_parent::enqueue(&pool, t_parent::Args { children: 3 })
        .await
        .unwrap();
    let drained = drain(&pool).state(Calls::default()).await;
    assert_eq!(drained.completed, 1, "{drained}");
    assert_enqueued::<t_child::Job>(&pool, |_| true)
        .count(3)
        .state(JobState::Available)
        .await;

    t_parent::enqueue(&pool, t_parent::Args { children: 2 })
        .await
        .unwrap();
    let calls = Calls::default();
    let drained = drain(&pool).state(calls.clone()).recursive(true).await;
    assert_eq!(drained.completed, 1 + 3 + 2, "{drained}");
    assert_eq!(calls.get(), 3 + 2, "the handlers ran");
    refute_enqueued::<t_child::Job>(&pool, |_| true).await;

    // A job that enqueues itself forever stops at the limit.
    t_forever::enqueue(&pool, t_forever::Args {}).await.unwrap();
    let drained = drain(&pool).recursive(true).limit(7).await;
    assert_eq!(drained.completed, 7, "{drained}");
    assert!(drained.limit_reached);
    drop(db);
}

#[tokio::test]
async fn drain_runs_jobs_due_within_its_horizon_only() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    let soon = t_flaky::builder(t_flaky::Args { fail_until: 0 })
        .delay(Duration::from_secs(600))
        .enqueue(&pool)
        .await
        .unwrap();
    let late = t_flaky::builder(t_flaky::Args { fail_until: 0 })
        .delay(Duration::from_secs(7200))
        .enqueue(&pool)
        .await
        .unwrap();
    let drained = drain(&pool)
        .scheduled_within(Duration::from_secs(3600))
        .await;
    assert_eq!(drained.completed, 1, "{drained}");
    assert_eq!(state_of(&pool, soon).await, "completed");
    assert_eq!(state_of(&pool, late).await, "scheduled");
    drop(db);
}

#[tokio::test]
async fn drain_refuses_to_run_a_job_without_its_state() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    let id = t_welcome::enqueue(&pool, welcome("ada@example.com"))
        .await
        .unwrap();
    let p = pool.clone();
    let message = panic_of(async move {
        drain(&p).await;
    })
    .await;
    assert!(
        message.contains("job `t_welcome`, waiting in queue `mail`, takes `State<")
            && message.contains("Calls>`")
            && message.contains("add `.state(value)`"),
        "{message}"
    );
    assert_eq!(state_of(&pool, id).await, "available", "nothing ran");
    // A drain of another queue does not need it.
    let drained = drain(&pool).queue("work").await;
    assert_eq!(drained.ran(), 0);
    drop(db);
}

#[tokio::test]
async fn perform_runs_the_handler_with_its_state_and_returns_the_outcome() {
    let calls = Calls::default();
    let outcome = perform::<t_welcome::Job>(welcome("ada@example.com"))
        .state(calls.clone())
        .await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(calls.get(), 1);

    let failed = perform::<t_flaky::Job>(t_flaky::Args { fail_until: 1 }).await;
    assert!(
        matches!(&failed, Outcome::Failed { error, kind: "error", .. } if error == "attempt 1 failed on purpose"),
        "{failed:?}"
    );
    let second = perform::<t_flaky::Job>(t_flaky::Args { fail_until: 1 })
        .attempt(2)
        .await;
    assert_eq!(second, Outcome::Completed);
    assert!(matches!(
        perform::<t_last_chance::Job>(t_last_chance::Args {}).await,
        Outcome::Failed { .. }
    ));
    assert_eq!(
        perform::<t_last_chance::Job>(t_last_chance::Args {})
            .attempt(3)
            .await,
        Outcome::Completed
    );
    let panicked = perform::<t_explode::Job>(t_explode::Args {}).await;
    assert!(
        matches!(&panicked, Outcome::Failed { error, kind: "panic", .. } if error == "panicked: boom"),
        "{panicked:?}"
    );
    assert_eq!(
        perform::<t_nap::Job>(t_nap::Args {}).await,
        Outcome::Snooze(Duration::from_secs(3600))
    );
    assert_eq!(
        perform::<t_refuse::Job>(t_refuse::Args {
            reason: "no".into()
        })
        .await,
        Outcome::Discard {
            error: "no".into(),
            kind: "discard"
        }
    );

    // A cron job, for a tick of the test's choosing.
    let tick = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
        .unwrap()
        .to_utc();
    let seen = Tick::default();
    let outcome = perform::<t_hourly::Job>(t_hourly::Args {})
        .state(seen.clone())
        .scheduled_at(tick)
        .await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(*seen.0.lock().unwrap(), Some(tick));
}

#[tokio::test]
async fn perform_returns_a_jobs_value_typed() {
    let args = |text: &str| t_count_words::Args { text: text.into() };
    let words = perform::<t_count_words::Job>(args("one two three"))
        .output()
        .await;
    assert_eq!(words, Words { count: 3 });
    assert_eq!(
        perform::<t_count_words::Job>(args("a b")).await,
        Outcome::CompletedWith(r#"{"count":2}"#.into())
    );
    let message = panic_of(async move {
        perform::<t_count_words::Job>(args("")).output().await;
    })
    .await;
    assert!(
        message.contains("the job did not complete: Failed") && message.contains("no text"),
        "{message}"
    );
}

#[tokio::test]
async fn perform_gives_the_job_a_pool_only_when_told() {
    let without = perform::<t_uses_pool::Job>(t_uses_pool::Args {}).await;
    assert!(
        matches!(&without, Outcome::Failed { error, .. } if error.contains("closed pool")),
        "{without:?}"
    );
    let db = TestDatabase::new().await;
    let with = perform::<t_uses_pool::Job>(t_uses_pool::Args {})
        .pool(db.pool())
        .await;
    assert_eq!(with, Outcome::Completed);
    drop(db);
}

#[tokio::test]
async fn perform_refuses_to_run_a_job_without_its_state() {
    let message = panic_of(async {
        perform::<t_welcome::Job>(welcome("ada@example.com")).await;
    })
    .await;
    assert!(
        message.contains("perform::<t_welcome>")
            && message.contains("takes `State<")
            && message.contains("add `.state(value)`"),
        "{message}"
    );
}

#[tokio::test]
async fn enqueued_panics_on_arguments_that_do_not_decode() {
    let db = TestDatabase::new().await;
    let pool = db.pool().clone();
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         VALUES ('t_welcome', 'mail', '{\"recipient\": 1}', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let p = pool.clone();
    let message = panic_of(async move {
        enqueued::<t_welcome::Job>(&p).await;
    })
    .await;
    assert!(
        message.contains("job 1: its args do not decode: missing field `to`"),
        "{message}"
    );
    // An assertion counts it as no match, and says why.
    let message = panic_of(async move {
        assert_enqueued::<t_welcome::Job>(&pool, |_| true).await;
    })
    .await;
    assert!(
        message.contains("no match, its args do not decode: missing field `to`"),
        "{message}"
    );
    drop(db);
}
