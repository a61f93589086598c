//! Retention: the pruner deletes finished jobs past their state's retention,
//! and nothing else. Finished rows are put in place with plain SQL and an old
//! `finalized_at`; the worker runs with a short pruning interval.

use std::time::Duration;

use jobq::{Error, JobState, Keep, Retention};
use jobq_tests::{
    InProcess, TestDb, buffers_touched, keep_statistics, record, test_worker, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(60);
const MINUTE: Duration = Duration::from_secs(60);

/// Inserts a job in `state`, finalized `ago` (an SQL interval, or never),
/// with an optional unique key and the states it holds in. It sits in a queue
/// no test worker runs, so only the pruner and the rescuer look at it.
async fn insert_job(db: &TestDb, state: &str, ago: Option<&str>, key: Option<(&str, i32)>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, state, max_attempts, attempt, finalized_at,
                               unique_key, unique_states)
         VALUES ('record', 'parked', '{\"n\": 0}', $1::jobq_state, 5, 1,
                 now() - $2::interval, $3, $4)
         RETURNING id",
    )
    .bind(state)
    .bind(ago)
    .bind(key.map(|k| k.0))
    .bind(key.map(|k| k.1))
    .fetch_one(&db.pool)
    .await
    .expect("insert a job")
}

async fn ids_left(db: &TestDb, ids: &[i64]) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM jobq_jobs WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(&db.pool)
        .await
        .expect("ids left")
}

/// Waits until every job of `ids` is gone.
async fn wait_pruned(db: &TestDb, ids: &[i64]) {
    wait_until("old finished jobs to be pruned", DEADLINE, || async {
        ids_left(db, ids).await.is_empty()
    })
    .await;
}

/// A parked job of the pruning test: whether it should be pruned, its state,
/// how long ago it finished, and its unique key with the states it holds in.
type Case = (
    bool,
    &'static str,
    &'static str,
    Option<(&'static str, i32)>,
);

/// A `unique_states` mask, as the enqueue API builds it (`jobq_state_bit`
/// in SQL): `pending` has no bit, since a job with dependencies has no key.
fn mask(states: &[JobState]) -> i32 {
    states
        .iter()
        .map(|s| match s {
            JobState::Pending => 0,
            JobState::Available => 1,
            JobState::Scheduled => 2,
            JobState::Running => 4,
            JobState::Retryable => 8,
            JobState::Completed => 16,
            JobState::Discarded => 32,
            JobState::Cancelled => 64,
        })
        .fold(0, |m, b| m | b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_finished_jobs_are_pruned_and_everything_else_is_kept() {
    let db = TestDb::new("prune").await;
    let unfinished = mask(&JobState::UNFINISHED);
    let once_done = unfinished | mask(&[JobState::Completed]);
    let all = mask(&JobState::ALL);
    let cron = all | 128;
    let tick = |key| Some((key, cron));
    let jobs: &[Case] = &[
        // Each final state by its own retention.
        (true, "completed", "30 minutes", None),
        (false, "completed", "5 minutes", None),
        (true, "cancelled", "150 minutes", None),
        (false, "cancelled", "90 minutes", None),
        (true, "discarded", "10 days", None),
        (false, "discarded", "150 minutes", None),
        // Unfinished jobs, however old their finalized_at (a job retried by hand).
        (false, "available", "10 days", None),
        (false, "scheduled", "10 days", None),
        (false, "retryable", "10 days", None),
        (false, "running", "10 days", None),
        // Unique keys: kept while the key holds in the job's state.
        (false, "completed", "10 days", Some(("record:ever", all))),
        (true, "completed", "10 days", Some(("record:a", unfinished))),
        (false, "completed", "10 days", Some(("record:b", once_done))),
        (true, "discarded", "10 days", Some(("record:c", once_done))),
        // Cron ticks: their key is jobq's; kept an hour at least.
        (true, "completed", "90 minutes", tick("record:cron:1")),
        (false, "completed", "30 minutes", tick("record:cron:2")),
    ];
    let (mut gone, mut kept) = (Vec::new(), Vec::new());
    for &(pruned, state, ago, key) in jobs {
        let id = insert_job(&db, state, Some(ago), key).await;
        if pruned { gone.push(id) } else { kept.push(id) }
    }

    let worker = InProcess::start(test_worker(&db.pool).retention(Retention {
        completed: Keep::For(10 * MINUTE),
        cancelled: Keep::For(120 * MINUTE),
        discarded: Keep::For(180 * MINUTE),
        interval: Duration::from_millis(50),
    }));
    // Every state has a job to prune, and each state's jobs go in one
    // statement: once they are gone, every state has been pruned.
    wait_pruned(&db, &gone).await;
    kept.sort();
    assert_eq!(ids_left(&db, &kept).await, kept);

    // It goes on: a job that gets old later is pruned by a later pass.
    let later = insert_job(&db, "completed", Some("1 day"), None).await;
    wait_pruned(&db, &[later]).await;
    worker.stop().await.unwrap();
    assert_eq!(ids_left(&db, &kept).await, kept);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_for_ever_survives_pruning_and_still_refuses_duplicates() {
    let db = TestDb::new("prune_unique").await;
    let worker = InProcess::start(test_worker(&db.pool).retention(Retention {
        completed: Keep::For(MINUTE),
        interval: Duration::from_millis(50),
        ..Retention::default()
    }));
    let once = || {
        record::builder(record::Args { n: 1 })
            .unique_key("welcome")
            .unique_states(&JobState::ALL)
    };
    let first = once().insert(&db.pool).await.unwrap();
    wait_until("the unique job to complete", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == 1
    })
    .await;
    sqlx::query("UPDATE jobq_jobs SET finalized_at = now() - interval '30 days'")
        .execute(&db.pool)
        .await
        .unwrap();
    // A plain job as old: once it is gone, a pass has looked at both.
    let marker = insert_job(&db, "completed", Some("30 days"), None).await;
    wait_pruned(&db, &[marker]).await;
    assert_eq!(ids_left(&db, &[first.id.0]).await, vec![first.id.0]);
    let again = once().insert(&db.pool).await.unwrap();
    assert!(again.duplicate, "the key still holds");
    assert_eq!(again.id, first.id);
    worker.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_forever_keeps_that_state() {
    let db = TestDb::new("keep_forever").await;
    let completed = insert_job(&db, "completed", Some("1000 days"), None).await;
    let cancelled = insert_job(&db, "cancelled", Some("1000 days"), None).await;
    let discarded = insert_job(&db, "discarded", Some("2 hours"), None).await;
    let worker = InProcess::start(test_worker(&db.pool).retention(Retention {
        completed: Keep::Forever,
        cancelled: Keep::Forever,
        discarded: Keep::For(60 * MINUTE),
        interval: Duration::from_millis(50),
    }));
    wait_pruned(&db, &[discarded]).await;
    worker.stop().await.unwrap();
    assert_eq!(
        ids_left(&db, &[completed, cancelled]).await,
        vec![completed, cancelled]
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_at_start_prunes_batch_after_batch() {
    let db = TestDb::new("prune_batches").await;
    // Two and a half batches of 10,000.
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, state, max_attempts, attempt, finalized_at)
         SELECT 'record', 'parked', '{\"n\": 0}', 'completed', 1, 1, now() - interval '2 days'
         FROM generate_series(1, 25000)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let recent = insert_job(&db, "completed", Some("1 hour"), None).await;
    // The defaults (24 hours) with an interval no test waits for: only the
    // pass the worker makes when it starts can prune.
    let worker = InProcess::start(test_worker(&db.pool).retention(Retention {
        interval: Duration::from_secs(3600),
        ..Retention::default()
    }));
    wait_until("25,000 old jobs to be pruned", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs").await == 1
    })
    .await;
    worker.stop().await.unwrap();
    assert_eq!(ids_left(&db, &[recent]).await, vec![recent]);
    db.cleanup().await;
}

/// A batch reads the rows it deletes, however many wait to be pruned. Its
/// generic plan (which the pool's connections take after five runs when it
/// looks cheaper, as it did with fresh statistics too) once hashed the
/// batch and read every row past its retention to find it: 500,000 rows,
/// 270 ms, per batch of 10,000, and as much per batch of 10 after a
/// time-out. Run here as a generic plan, with statistics taken while few
/// jobs had finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_batch_reads_its_own_rows_whatever_the_backlog() {
    let db = TestDb::new("prune_generic").await;
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         SELECT 'record', 'parked', '{\"n\": 0}', 5 FROM generate_series(1, 2000)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    keep_statistics(&db.pool).await;
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, state, attempt, finalized_at)
         SELECT 'record', 'parked', '{\"n\": 0}', 5, 'completed', 1,
                now() - interval '2 days' + i * interval '1 ms'
         FROM generate_series(1, 100000) AS i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // One session, whose prepared statements run their generic plan.
    let session = db.session().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE prune (text, int8, int8, int8) AS {};",
        jobq::__private::DELETE_PRUNABLE
    )))
    .execute(&session)
    .await
    .unwrap();
    // The pruner's smallest batch, 10 rows: about 50 buffers (the index's
    // first entries, each row by its key). Reading the backlog costs
    // thousands.
    let small = buffers_touched(
        &session,
        sqlx::query_scalar(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
             EXECUTE prune('completed', 86400000, 3600000, 10)",
        ),
    )
    .await;
    assert!(small < 500, "a batch of 10 read {small} buffers");
    // And it deletes what it should: the 10 oldest.
    let deleted = sqlx::query("EXECUTE prune('completed', 86400000, 3600000, 10)")
        .execute(&session)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 10);
    session.close().await;
    // (Ids 1 to 2,000 wait; 2,001 on finished first.)
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed' AND id <= 2010")
            .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 101_990);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonsense_retention_is_refused_at_start() {
    let db = TestDb::new("retention_config").await;
    let err = test_worker(&db.pool)
        .retention(Retention {
            interval: Duration::ZERO,
            ..Retention::default()
        })
        .run_until(async {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(
        err.to_string()
            .contains("retention interval (how often finished jobs are pruned) must be longer"),
        "{err}"
    );

    let err = test_worker(&db.pool)
        .retention(Retention {
            discarded: Keep::For(Duration::MAX),
            ..Retention::default()
        })
        .run_until(async {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(
        err.to_string().contains("retention of discarded jobs")
            && err.to_string().contains("use `Keep::Forever`"),
        "{err}"
    );
    assert_eq!(db.count("SELECT count(*) FROM jobq_workers").await, 0);
    db.cleanup().await;
}

/// Inserts a completed job, finalized `ago`, whose key holds in every state
/// within a window that ended `window_ended` ago (an SQL interval; negative
/// while the window is still open).
async fn insert_windowed(db: &TestDb, key: &str, ago: &str, window_ended: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, state, max_attempts, attempt, finalized_at,
                               unique_key, unique_states, unique_until)
         VALUES ('record', 'parked', '{\"n\": 0}', 'completed', 5, 1, now() - $1::interval,
                 $2, $3, now() - $4::interval)
         RETURNING id",
    )
    .bind(ago)
    .bind(key)
    .bind(mask(&JobState::ALL))
    .bind(window_ended)
    .fetch_one(&db.pool)
    .await
    .expect("insert a windowed job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_a_window_is_pruned_an_hour_after_the_window_ended() {
    let db = TestDb::new("prune_window").await;
    // Enqueued for real: the row records the end of the current window.
    let hourly = || {
        record::builder(record::Args { n: 1 })
            .queue("parked")
            .unique_key("hourly")
            .unique_for(Duration::from_secs(3600))
            .unique_states(&JobState::ALL)
    };
    let first = hourly().insert(&db.pool).await.unwrap();
    assert!(hourly().insert(&db.pool).await.unwrap().duplicate);
    let (ends_ahead, on_the_hour): (bool, bool) = sqlx::query_as(
        "SELECT unique_until > now() AND unique_until <= now() + interval '1 hour',
                extract(epoch FROM unique_until)::bigint % 3600 = 0
         FROM jobq_jobs WHERE id = $1",
    )
    .bind(first.id.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        ends_ahead && on_the_hour,
        "the window ends at the next hour"
    );

    let gone = [
        insert_windowed(&db, "record:a@1", "10 days", "2 hours").await,
        insert_windowed(&db, "record:b@1", "3 hours", "61 minutes").await,
    ];
    let kept = [
        // Finished longer ago than its retention, but its window is open.
        insert_windowed(&db, "record:c@1", "10 days", "-1 hour").await,
        // The window ended, but not an hour ago.
        insert_windowed(&db, "record:d@1", "10 days", "30 minutes").await,
        // The window ended long ago, but the job is within its retention.
        insert_windowed(&db, "record:e@1", "5 minutes", "2 hours").await,
        first.id.0,
    ];
    let worker = InProcess::start(test_worker(&db.pool).retention(Retention {
        completed: Keep::For(10 * MINUTE),
        interval: Duration::from_millis(50),
        ..Retention::default()
    }));
    wait_pruned(&db, &gone).await;
    // A plain job as old, inserted after: once it is gone, a later pass has
    // looked at every row again.
    let marker = insert_job(&db, "completed", Some("30 days"), None).await;
    wait_pruned(&db, &[marker]).await;
    worker.stop().await.unwrap();
    let mut kept = kept.to_vec();
    kept.sort();
    assert_eq!(ids_left(&db, &kept).await, kept);
    db.cleanup().await;
}
