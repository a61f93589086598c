//! How to test an application's jobs with `jobq::testing`: copy this file.
//!
//! Each test gets a fresh database on the server of `DATABASE_URL`, with
//! jobq's schema, dropped when the test ends. The helpers need jobq's
//! `testing` feature, for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! jobq = { version = "0.1", features = ["testing"] }
//! ```

use std::sync::Arc;
use std::time::Duration;

use jobq::Outcome;
use jobq::testing::{TestDatabase, assert_enqueued, drain, enqueued, perform, refute_enqueued};
use jobq_examples::{
    Mailer, USERS_TABLE, charge_card, hourly_digest, make_thumbnail, send_welcome_email, sign_up,
};

/// A database of the test's own, with the application's table too.
async fn database() -> TestDatabase {
    let db = TestDatabase::new().await;
    sqlx::raw_sql(USERS_TABLE).execute(db.pool()).await.unwrap();
    db
}

/// "My request handler enqueued the right job": checked inside the
/// handler's transaction before it commits, and after.
#[tokio::test]
async fn sign_up_enqueues_the_welcome_email_in_its_transaction() {
    let db = database().await;
    let mut tx = db.pool().begin().await.unwrap();
    sign_up(&mut tx, "ada@example.com", "Ada").await.unwrap();

    // Inside the transaction the job is there; outside, not yet.
    assert_enqueued::<send_welcome_email::Job>(&mut *tx, |args| {
        args.to == "ada@example.com" && args.name == "Ada"
    })
    .await;
    refute_enqueued::<send_welcome_email::Job>(db.pool(), |_| true).await;

    tx.commit().await.unwrap();
    assert_enqueued::<send_welcome_email::Job>(db.pool(), |args| args.to == "ada@example.com")
        .queue("email")
        .count(1)
        .await;

    // Rolled back, a sign-up leaves no job behind.
    let mut tx = db.pool().begin().await.unwrap();
    sign_up(&mut tx, "bob@example.com", "Bob").await.unwrap();
    tx.rollback().await.unwrap();
    refute_enqueued::<send_welcome_email::Job>(db.pool(), |args| args.to == "bob@example.com")
        .await;
    // Typed arguments, to check anything an assertion does not.
    let jobs = enqueued::<send_welcome_email::Job>(db.pool()).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1.name, "Ada");
}

/// A delayed job: checked for when it is due, then run early.
#[tokio::test]
async fn a_delayed_charge_is_due_in_an_hour_and_runs_when_drained_with_scheduled() {
    let db = database().await;
    let hour = Duration::from_secs(3600);
    charge_card::builder(charge_card::Args {
        card: "4242424242424242".into(),
        cents: 1999,
    })
    .delay(hour)
    .enqueue(db.pool())
    .await
    .unwrap();
    assert_enqueued::<charge_card::Job>(db.pool(), |args| args.cents == 1999)
        .state(jobq::JobState::Scheduled)
        .scheduled_in(hour, Duration::from_secs(30))
        .await;

    // Not due: a plain drain leaves it.
    assert_eq!(drain(db.pool()).await.ran(), 0);
    // jobq has no clock to move: run the jobs due later now instead.
    let drained = drain(db.pool()).with_scheduled(true).await;
    assert_eq!(drained.completed, 1, "{drained}");
}

/// Every job enqueued runs with its real handler; failures are retried and
/// recorded as a worker does it.
#[tokio::test]
async fn draining_runs_every_job_to_its_end() {
    let db = database().await;
    let mut tx = db.pool().begin().await.unwrap();
    sign_up(&mut tx, "ada@example.com", "Ada").await.unwrap();
    tx.commit().await.unwrap();
    // Fails its first attempt, completes its second.
    make_thumbnail::enqueue(
        db.pool(),
        make_thumbnail::Args {
            path: "avatars/ada.png".into(),
            width: 128,
        },
    )
    .await
    .unwrap();
    // Refused on each of its 2 attempts: discarded.
    charge_card::enqueue(
        db.pool(),
        charge_card::Args {
            card: "not-a-card".into(),
            cents: 500,
        },
    )
    .await
    .unwrap();

    let mailer = Arc::new(Mailer::default());
    let drained = drain(db.pool())
        .state_arc(mailer.clone())
        // Retries are due later: run them now, and again, to the end.
        .with_scheduled(true)
        .recursive(true)
        .await;

    assert_eq!(
        (drained.completed, drained.failed, drained.discarded),
        (2, 2, 1),
        "{drained}"
    );
    assert_eq!(mailer.sent(), 1);
    // Each failed attempt's error, queue by queue (billing, email, media).
    let errors: Vec<(&str, i32, &str)> = drained
        .errors
        .iter()
        .map(|e| (e.kind.as_str(), e.attempt, e.error.as_str()))
        .collect();
    let refused = "payment refused: card \"not-a-card\" is not a card number";
    assert_eq!(
        errors,
        [
            ("charge_card", 1, refused),
            ("make_thumbnail", 1, "image service unavailable (attempt 1)"),
            ("charge_card", 2, refused),
        ],
        "{drained}"
    );
    refute_enqueued::<charge_card::Job>(db.pool(), |_| true).await;
    assert_enqueued::<charge_card::Job>(db.pool(), |args| args.card == "not-a-card")
        .state(jobq::JobState::Discarded)
        .await;
}

/// "My job does the right thing": its handler run on the spot, with a fake
/// of what it needs, without a database.
#[tokio::test]
async fn jobs_tested_one_by_one_with_perform() {
    let mailer = Arc::new(Mailer::default());
    let outcome = perform::<send_welcome_email::Job>(send_welcome_email::Args {
        to: "ada@example.com".into(),
        name: "Ada".into(),
    })
    .state_arc(mailer.clone())
    .await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(mailer.sent(), 1);

    let args = make_thumbnail::Args {
        path: "avatars/ada.png".into(),
        width: 128,
    };
    let first = perform::<make_thumbnail::Job>(args.clone()).await;
    assert!(
        matches!(&first, Outcome::Failed { error, .. } if error.contains("image service unavailable")),
        "{first:?}"
    );
    let second = perform::<make_thumbnail::Job>(args).attempt(2).await;
    assert_eq!(second, Outcome::Completed);

    // A cron job, for the tick of our choosing.
    let tick = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
        .unwrap()
        .to_utc();
    let outcome = perform::<hourly_digest::Job>(hourly_digest::Args {})
        .scheduled_at(tick)
        .await;
    assert_eq!(outcome, Outcome::Completed);
}
