//! Scheduling: cron exactly once across worker processes, catch-up policies,
//! delayed jobs, priorities, unique jobs, pausing queues, stats.

use std::time::Duration;

use jobq::{JobId, JobState};
use jobq_tests::{
    InProcess, TestDb, dedup, record, sigterm, spawn_worker_process_with_lease, state_of,
    test_worker, wait_exit, wait_for_listeners, wait_until,
};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_test-worker");
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_second_cron_runs_once_per_tick_across_three_processes() {
    let db = TestDb::new("cron_three").await;
    let mut workers: Vec<_> = (0..3)
        .map(|_| {
            spawn_worker_process_with_lease(
                WORKER_BIN,
                &db.url,
                4,
                Duration::from_secs(30),
                "default,cron",
            )
        })
        .collect();
    wait_until("ten ticks to run", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs WHERE kind = 'tick'")
            .await
            >= 10
    })
    .await;
    for w in &workers {
        sigterm(w);
    }
    for w in &mut workers {
        assert!(wait_exit(w, DEADLINE).await.success());
    }
    let (jobs, ticks, span_s, runs, runs_of_distinct_ticks): (i64, i64, f64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM jobq_jobs WHERE kind = 'tick'),
                    (SELECT count(DISTINCT scheduled_at) FROM jobq_jobs WHERE kind = 'tick'),
                    (SELECT extract(epoch FROM max(scheduled_at) - min(scheduled_at))::float8
                       FROM jobq_jobs WHERE kind = 'tick'),
                    (SELECT count(*) FROM test_runs WHERE kind = 'tick'),
                    (SELECT count(DISTINCT payload->>'tick') FROM test_runs WHERE kind = 'tick')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, ticks, "no tick enqueued twice");
    assert_eq!(
        ticks as f64,
        span_s + 1.0,
        "no tick skipped between the first and last"
    );
    assert_eq!(runs, runs_of_distinct_ticks, "no tick ran twice");
    assert!(runs >= 10);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_cron_ticks_follow_the_catch_up_policy() {
    let db = TestDb::new("catch_up").await;
    // Stay clear of a minute boundary, so "now" is one minute throughout.
    wait_until("a minute with time to spare", DEADLINE, || async {
        let second: f64 = sqlx::query_scalar("SELECT extract(second FROM now())::float8")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        second < 45.0
    })
    .await;
    // The last ticks enqueued 5 minutes and 1 second before this minute began:
    // six ticks were missed (each of the last five minutes, and this one).
    sqlx::query(
        "INSERT INTO jobq_cron (name, last_tick)
         SELECT name, date_trunc('minute', now()) - interval '5 minutes 1 second'
         FROM unnest(ARRAY['catch_none', 'catch_latest', 'catch_all']) AS name",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let worker = InProcess::start(test_worker(&db.pool).queue("catchup", 4));
    wait_until("caught-up ticks to run", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs WHERE kind IN ('catch_latest', 'catch_all')")
            .await
            >= 7
    })
    .await;
    worker.stop().await.unwrap();
    let missed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM jobq_jobs
         WHERE scheduled_at > (SELECT min(last_tick) FROM jobq_cron) - interval '1 second'
           AND scheduled_at <= date_trunc('minute', (SELECT min(created_at) FROM jobq_jobs))
         GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        missed,
        vec![("catch_all".to_owned(), 6), ("catch_latest".to_owned(), 1)]
    );
    let latest_is_newest: bool = sqlx::query_scalar(
        "SELECT min(scheduled_at) FILTER (WHERE kind = 'catch_latest')
              = max(scheduled_at) FILTER (WHERE kind = 'catch_all'
                    AND scheduled_at <= date_trunc('minute', created_at))
         FROM jobq_jobs",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        latest_is_newest,
        "`latest` runs the most recent missed tick"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_that_never_ran_does_not_catch_up() {
    let db = TestDb::new("cron_first").await;
    let worker = InProcess::start(test_worker(&db.pool).queue("catchup", 4));
    wait_until("the cron jobs to be known", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_cron").await == 3
    })
    .await;
    worker.stop().await.unwrap();
    let past: i64 = db
        .count("SELECT count(*) FROM jobq_jobs WHERE scheduled_at < (SELECT min(last_tick) FROM jobq_cron)")
        .await;
    assert_eq!(past, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_runs_when_due_without_polling() {
    let db = TestDb::new("delayed").await;
    let worker = InProcess::start(test_worker(&db.pool).poll_interval(Duration::from_secs(3600)));
    wait_for_listeners(&db, 1).await;
    let id = record::builder(record::Args { n: 1 })
        .delay(Duration::from_millis(700))
        .enqueue(&db.pool)
        .await
        .unwrap();
    assert_eq!(state_of(&db.pool, id).await, "scheduled");
    wait_until("the delayed job to complete", DEADLINE, || async {
        state_of(&db.pool, id).await == "completed"
    })
    .await;
    worker.stop().await.unwrap();
    let early: bool =
        sqlx::query_scalar("SELECT attempted_at < scheduled_at FROM jobq_jobs WHERE id = $1")
            .bind(id.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(!early, "a delayed job never starts before it is due");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_job_is_not_starved_by_a_flood() {
    let db = TestDb::new("priority").await;
    record::enqueue_many(&db.pool, (0..10_000).map(|n| record::Args { n }))
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool).queue("default", 4));
    wait_until("the flood to be under way", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs").await >= 100
    })
    .await;
    let urgent = record::builder(record::Args { n: -1 })
        .priority(-1)
        .enqueue(&db.pool)
        .await
        .unwrap();
    let enqueued_after: i64 = db.count("SELECT count(*) FROM test_runs").await;
    wait_until("the urgent job to complete", DEADLINE, || async {
        state_of(&db.pool, urgent).await == "completed"
    })
    .await;
    let ran_before_it: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM test_runs
         WHERE seq < (SELECT seq FROM test_runs WHERE job_id = $1)",
    )
    .bind(urgent.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    worker.stop().await.unwrap();
    let overtaken = ran_before_it - enqueued_after;
    let waiting = 10_000 - enqueued_after;
    // Only jobs this worker had already claimed when it arrived may finish
    // before it: those running (4) and those in its prefetch buffer (at most
    // 1,000, about 20 ms of work), never the thousands still waiting.
    println!("{overtaken} low-priority jobs overtook the urgent one; {waiting} were waiting");
    assert!(
        overtaken <= 4 + 1000 && overtaken < waiting / 2,
        "{overtaken} ran first"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_enqueues_of_one_unique_key_make_one_job() {
    let db = TestDb::new("unique").await;
    let calls = (0..50)
        .map(|_| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                let inserted = dedup::builder(dedup::Args { key: "k1".into() })
                    .insert(&mut tx)
                    .await
                    .unwrap();
                // The transaction is still usable after a duplicate.
                sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
                inserted
            })
        })
        .collect::<Vec<_>>();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let first = results[0].id;
    assert!(results.iter().all(|r| r.id == first), "one id for all");
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1);
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 1);

    // Another key is another job; the same key again, in a transaction, is
    // a duplicate reported without error.
    let other = dedup::enqueue(&db.pool, dedup::Args { key: "k2".into() })
        .await
        .unwrap();
    assert_ne!(other, first);
    let again = dedup::enqueue(&db.pool, dedup::Args { key: "k1".into() })
        .await
        .unwrap();
    assert_eq!(again, first);

    // Once the job has finished, the key is free again.
    let worker = InProcess::start(test_worker(&db.pool).queue("unique", 2));
    wait_until("both unique jobs to complete", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == 2
    })
    .await;
    worker.stop().await.unwrap();
    let later = dedup::builder(dedup::Args { key: "k1".into() })
        .insert(&db.pool)
        .await
        .unwrap();
    assert!(!later.duplicate && later.id != first);

    // "Once, ever": a key that holds in every state.
    let ever = |key: &str| {
        record::builder(record::Args { n: 0 })
            .unique_key(key.to_owned())
            .unique_states(&JobState::ALL)
            .insert(&db.pool)
    };
    let a = ever("report-2026-11").await.unwrap();
    sqlx::query("UPDATE jobq_jobs SET state = 'completed' WHERE id = $1")
        .bind(a.id.0)
        .execute(&db.pool)
        .await
        .unwrap();
    let b = ever("report-2026-11").await.unwrap();
    assert!(b.duplicate && b.id == a.id);
    db.cleanup().await;
}

/// The arguments of a `dedup` job with key `k{n}`.
fn dedup_key(n: i32) -> dedup::Args {
    dedup::Args {
        key: format!("k{n}"),
    }
}

fn dedup_keys(range: std::ops::Range<i32>) -> impl Iterator<Item = dedup::Args> {
    range.map(dedup_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_of_unique_jobs_is_one_statement_and_keeps_keys_unique() {
    let db = TestDb::new("unique_many").await;
    let held = dedup::enqueue(&db.pool, dedup_key(0)).await.unwrap();
    // 1,000 arguments over 500 keys: k0 is held already, and every key
    // comes twice.
    let batch: Vec<i32> = (0..500).chain((0..500).rev()).collect();
    // A plain connection: were this a loop of inserts, each would commit on
    // its own, with its own transaction id.
    let mut conn = db.connection().await;
    let ids = dedup::enqueue_many(&mut conn, batch.iter().map(|&n| dedup_key(n)))
        .await
        .unwrap();
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids[0], held, "a held key gives its job");
    for (i, &n) in batch.iter().enumerate() {
        let first = batch.iter().position(|&m| m == n).unwrap();
        assert_eq!(ids[i], ids[first], "k{n} twice is one job");
    }
    let (rows, transactions, right_ids): (i64, i64, bool) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT j.xmin::text), bool_and(j.id = ids.id)
         FROM jobq_jobs j
         JOIN unnest($1::bigint[], $2::text[]) AS ids(id, key) ON j.args->>'key' = ids.key
         WHERE j.id <> $3",
    )
    .bind(ids.iter().map(|id| id.0).collect::<Vec<_>>())
    .bind(batch.iter().map(|n| format!("k{n}")).collect::<Vec<_>>())
    .bind(held.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // 499 new jobs, each matched by both of its arguments.
    assert_eq!((rows, transactions, right_ids), (998, 1, true));
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 500);

    // In a transaction, after a single enqueue of the same key: the batch
    // sees the transaction's own job.
    let mut tx = db.pool.begin().await.unwrap();
    let own = dedup::enqueue(&mut *tx, dedup_key(1000)).await.unwrap();
    let again = dedup::enqueue_many(&mut *tx, [dedup_key(1000), dedup_key(1001)])
        .await
        .unwrap();
    assert_eq!(again[0], own);
    assert_ne!(again[1], own);
    tx.commit().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 502);
    let empty = dedup::enqueue_many(&db.pool, std::iter::empty())
        .await
        .unwrap();
    assert!(empty.is_empty());
    db.cleanup().await;
}

/// Waits until `n` sessions of the test database wait for a lock.
async fn wait_lock_waiters(db: &TestDb, n: i64, what: &str) {
    wait_until(what, DEADLINE, || async {
        db.count(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
            == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_batch_that_waits_on_another_transactions_keys_gets_their_jobs() {
    let db = TestDb::new("unique_many_wait").await;
    let mut first = db.pool.begin().await.unwrap();
    let first_ids = dedup::enqueue_many(&mut *first, dedup_keys(0..100))
        .await
        .unwrap();
    let old = dedup::enqueue(&db.pool, dedup_key(120)).await.unwrap();
    // Half of the second batch's keys are the open transaction's: its
    // insert waits for that transaction, whose jobs it cannot see afterwards.
    let pool = db.pool.clone();
    let second = tokio::spawn(async move {
        dedup::enqueue_many(&pool, dedup_keys(50..150))
            .await
            .unwrap()
    });
    wait_lock_waiters(&db, 1, "the second batch to wait for the first").await;
    // Meanwhile k120's job finishes and another takes the key: the batch
    // must give the new holder, not the one it saw when it began.
    sqlx::query("UPDATE jobq_jobs SET state = 'completed' WHERE id = $1")
        .bind(old.0)
        .execute(&db.pool)
        .await
        .unwrap();
    let new = dedup::enqueue(&db.pool, dedup_key(120)).await.unwrap();
    assert_ne!(new, old);
    first.commit().await.unwrap();
    let second_ids = second.await.unwrap();
    assert_eq!(second_ids[..50], first_ids[50..], "the shared keys' jobs");
    assert_eq!(second_ids[70], new, "k120's current holder");
    assert!(
        second_ids[50..]
            .iter()
            .all(|id| !first_ids.contains(id) && *id != old),
        "new keys, new jobs"
    );
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 151);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_batch_outside_a_transaction_survives_a_deadlock() {
    let db = TestDb::new("unique_many_deadlock").await;
    // A transaction takes k2; a batch through the pool takes k1 and waits
    // for k2; then the transaction wants k1. PostgreSQL aborts the batch,
    // which waited first; the batch then goes one job at a time.
    let mut tx = db.pool.begin().await.unwrap();
    let k2 = dedup::enqueue(&mut *tx, dedup_key(2)).await.unwrap();
    let pool = db.pool.clone();
    let batch = tokio::spawn(async move { dedup::enqueue_many(&pool, dedup_keys(1..3)).await });
    wait_lock_waiters(&db, 1, "the batch to wait for k2").await;
    let k1 = dedup::enqueue(&mut *tx, dedup_key(1))
        .await
        .expect("the transaction is not the one aborted");
    tx.commit().await.unwrap();
    let ids = batch.await.unwrap().expect("the batch settles one by one");
    assert_eq!(ids, vec![k1, k2]);
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 2);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unique_batches_make_one_job_per_key_without_deadlock() {
    let db = TestDb::new("unique_many_race").await;
    // Eight batches of the same 500 keys at once, each in its own
    // transaction, half of them in reverse order: were the keys inserted in
    // input order, two batches could each wait on a key the other holds.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let calls = (0..8)
        .map(|i| {
            let pool = db.pool.clone();
            let start = start.clone();
            tokio::spawn(async move {
                let mut keys: Vec<i32> = (0..500).collect();
                if i % 2 == 1 {
                    keys.reverse();
                }
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
                start.wait().await;
                let args = keys.iter().map(|&n| dedup_key(n));
                let ids = dedup::enqueue_many(&mut *tx, args).await.unwrap();
                tx.commit().await.unwrap();
                let mut by_key: Vec<(i32, JobId)> = keys.into_iter().zip(ids).collect();
                by_key.sort();
                by_key
            })
        })
        .collect::<Vec<_>>();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    assert!(results.iter().all(|r| *r == results[0]), "one id per key");
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 500);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_queue_stops_claiming_and_resuming_restarts_it() {
    let db = TestDb::new("pause").await;
    let worker = InProcess::start(test_worker(&db.pool));
    jobq::pause_queue(&db.pool, "default").await.unwrap();
    let id = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    // A control job in another queue proves the worker is alive and claiming.
    let control = record::builder(record::Args { n: 2 })
        .queue("other")
        .enqueue(&db.pool)
        .await
        .unwrap();
    let other = InProcess::start(test_worker(&db.pool).queue("other", 1));
    wait_until("the control job to complete", DEADLINE, || async {
        state_of(&db.pool, control).await == "completed"
    })
    .await;
    // Every claim checks the pause, and both workers have claimed since it.
    assert_eq!(state_of(&db.pool, id).await, "available");
    let stats = jobq::stats(&db.pool).await.unwrap();
    let default = &stats.queues["default"];
    assert!(default.paused);
    assert_eq!(default.count(JobState::Available), 1);
    assert!(default.oldest_available_age.is_some());
    assert_eq!(stats.queues["other"].count(JobState::Completed), 1);

    jobq::resume_queue(&db.pool, "default").await.unwrap();
    wait_until("the job to run after resume", DEADLINE, || async {
        state_of(&db.pool, id).await == "completed"
    })
    .await;
    other.stop().await.unwrap();
    worker.stop().await.unwrap();
    let stats = jobq::stats(&db.pool).await.unwrap();
    assert!(!stats.queues["default"].paused);
    assert_eq!(stats.queues["default"].oldest_available_age, None);
    assert!(jobq::pause_queue(&db.pool, "bad queue!").await.is_err());
    db.cleanup().await;
}
