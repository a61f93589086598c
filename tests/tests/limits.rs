//! Concurrency and rate limits across worker processes: each property is
//! read from what the jobs themselves recorded (`limit_runs`), never from
//! jobq's own bookkeeping.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use jobq::{Limit, Rate};
use jobq_tests::limited::{
    create_limit_runs, five_at_once, hundred_a_second, in_limited_queue, one_per_user, two_at_once,
};
use jobq_tests::{
    InProcess, TestDb, buffers_touched, explain_buffers, keep_statistics,
    spawn_worker_process_with_lease, state_of, test_worker, wait_for_listeners, wait_until,
};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_test-worker");
const DEADLINE: Duration = Duration::from_secs(180);

/// Taken for reading by every test and for writing by the one that restarts
/// the PostgreSQL server, so that restart never cuts another test's
/// connections (the tests of one binary run in parallel).
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Worker processes that are killed when the test ends, pass or fail.
struct Workers(Vec<Child>);

impl Workers {
    fn start(db: &TestDb, n: usize, concurrency: usize, lease: Duration, queue: &str) -> Workers {
        Workers(
            (0..n)
                .map(|_| {
                    spawn_worker_process_with_lease(WORKER_BIN, &db.url, concurrency, lease, queue)
                })
                .collect(),
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn finished(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM limit_runs").await
}

async fn wait_finished(db: &TestDb, n: i64) {
    wait_until(
        &format!("{n} jobs to record their runs"),
        DEADLINE,
        || async { finished(db).await >= n },
    )
    .await;
}

/// The most recorded runs that overlapped at any moment, per partition (the
/// highest over all partitions). At equal times a start counts before an
/// end, which can only overstate the overlap.
async fn max_overlap(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(max(running), 0)::int8 FROM (
            SELECT sum(d) OVER (PARTITION BY part ORDER BY t, d DESC
                                ROWS UNBOUNDED PRECEDING) AS running
            FROM (SELECT part, began_at AS t, 1 AS d FROM limit_runs
                  UNION ALL
                  SELECT part, ended_at, -1 FROM limit_runs) AS e) AS x",
    )
    .fetch_one(&db.pool)
    .await
    .expect("max overlap")
}

/// The most recorded starts (claims, `attempted_at`) in any window of one
/// second, `[t, t + 1 s)`: counted over the windows that begin at a recorded
/// start, since the busiest window begins at one.
async fn busiest_second(db: &TestDb) -> i64 {
    db.count(
        "SELECT max(c)::int8 FROM (
            SELECT count(*) OVER (ORDER BY claimed_at RANGE BETWEEN CURRENT ROW
                                  AND interval '999999 microseconds' FOLLOWING) AS c
            FROM limit_runs) AS w",
    )
    .await
}

/// Jobs not completed yet.
async fn unfinished(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM jobq_jobs WHERE state <> 'completed'")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_5_holds_across_three_workers_and_is_reached() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_c5").await;
    create_limit_runs(&db.pool).await;
    let n = 2_000;
    jobq::enqueue_many::<five_at_once::Job, _, _>(
        &db.pool,
        (0..n).map(|_| five_at_once::Args { millis: 10 }),
    )
    .await
    .unwrap();
    // Each worker could run 8 at once: only the limit keeps them to 5.
    let workers = Workers::start(&db, 3, 8, Duration::from_secs(30), "limit_c5");
    let started = Instant::now();
    wait_finished(&db, n).await;
    let elapsed = started.elapsed();
    let overlap = max_overlap(&db).await;
    eprintln!("concurrency 5: {n} jobs in {elapsed:?}, at most {overlap} at once");
    assert_eq!(overlap, 5, "the limit is 5, and 2,000 jobs reach it");
    // Every worker took part: the limit is shared, not one worker's.
    let claimers: i64 = db
        .count("SELECT count(DISTINCT attempted_by) FROM jobq_jobs")
        .await;
    assert_eq!(claimers, 3);
    assert_eq!(unfinished(&db).await, 0);
    drop(workers);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_100_per_second_holds_in_every_window_and_is_sustained() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_rate").await;
    create_limit_runs(&db.pool).await;
    let n = 1_500;
    jobq::enqueue_many::<hundred_a_second::Job, _, _>(
        &db.pool,
        (0..n).map(|_| hundred_a_second::Args { millis: 5 }),
    )
    .await
    .unwrap();
    let workers = Workers::start(&db, 3, 20, Duration::from_secs(30), "limit_rate");
    wait_finished(&db, n).await;
    let busiest = busiest_second(&db).await;
    let span: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(claimed_at) - min(claimed_at))::float8 FROM limit_runs",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // The first window's 100 start at once; the other 1,400 take at least
    // 14 more seconds at 100 a second.
    let sustained = (n - 100) as f64 / span;
    eprintln!(
        "rate 100/1s: busiest 1 s window {busiest} starts, sustained {sustained:.1}/s over {span:.2} s"
    );
    assert!(busiest <= 100, "a 1 s window holds {busiest} starts");
    assert!(
        busiest >= 90,
        "the limit is reached: busiest window {busiest}"
    );
    assert!(sustained >= 90.0, "sustained {sustained:.1}/s");
    // Every attempt's start is a recorded run's: none ran twice.
    let runs: i64 = db
        .count("SELECT count(DISTINCT job_id) FROM limit_runs")
        .await;
    assert_eq!(runs, n);
    drop(workers);
    db.cleanup().await;
}

/// Enqueues `per_user` jobs for each of `users`, interleaved.
async fn enqueue_users(db: &TestDb, users: std::ops::Range<i64>, per_user: usize, millis: u64) {
    let args: Vec<one_per_user::Args> = (0..per_user)
        .flat_map(|_| {
            users
                .clone()
                .map(move |user| one_per_user::Args { user, millis })
        })
        .collect();
    jobq::enqueue_many::<one_per_user::Job, _, _>(&db.pool, args)
        .await
        .unwrap();
}

/// Index entries of `jobq_jobs_ready` read so far (the statistics of
/// backends that have ended, or flushed).
async fn ready_index_reads(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'jobq_jobs_ready'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("index statistics")
}

/// The limited claim reads each partition through its own index, whatever
/// the statistics say. With the table analyzed before a backlog of 10,000
/// jobs of one user was enqueued, the claim function's cached plans once
/// read `jobq_jobs_ready` instead, every waiting job of the kind per
/// partition: 137 million index entries for 330 claims, and the other
/// users' jobs ran 2-7 times slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_list_reads_one_entry_per_partition_under_stale_statistics() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_stale").await;
    create_limit_runs(&db.pool).await;
    // Statistics from a table where 2,000 jobs of the kind ran, kept as
    // they are while the backlog is enqueued.
    enqueue_users(&db, 0..50, 40, 0).await;
    sqlx::query(
        "UPDATE jobq_jobs SET state = 'completed', attempt = 1, finalized_at = now(),
             limit_key = NULL",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    keep_statistics(&db.pool).await;
    enqueue_users(&db, 1_000..1_001, 10_000, 10).await;
    enqueue_users(&db, 0..49, 40, 10).await;
    let before = ready_index_reads(&db).await;
    let workers = Workers::start(&db, 3, 8, Duration::from_secs(30), "limit_user");
    wait_until("the other users' 1,960 jobs to run", DEADLINE, || async {
        db.count("SELECT count(*) FROM limit_runs WHERE part <> '1000'")
            .await
            >= 1_960
    })
    .await;
    drop(workers);
    let claims: i64 = db
        .count("SELECT count(DISTINCT attempted_at) FROM jobq_jobs WHERE attempt > 0")
        .await;
    // What the workers' sessions flushed (each does at least once a second
    // while it works, and when it ends): a lower bound, enough to see a
    // plan that reads every waiting job per partition.
    let read = ready_index_reads(&db).await - before;
    // Each claim reads at most 4 x room + 16 (at most 48 here) entries of
    // jobq_jobs_ready at the head, plus its own jobs: 130 a claim when this
    // was written. Reading every waiting job per partition cost 416,000.
    assert!(
        read < claims * 1_000,
        "{read} entries of jobq_jobs_ready read by {claims} claims"
    );
    db.cleanup().await;
}

/// A claim reads one entry for its queue's next due time, whatever the
/// statistics say. With the table analyzed before jobs were scheduled for
/// later, the limited claim read `min(scheduled_at)` by aggregating every
/// future job of the queue: 200,000 of them cost every claim 4,400 buffers
/// and 55 ms, for the one it needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_due_time_reads_one_entry_under_stale_statistics() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_next_due").await;
    let worker: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_workers (host, pid, queues, lease_ms)
         VALUES ('me', 1, '{later}', 3600000) RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Statistics from a queue where 2,000 jobs of a limited kind wait, none
    // for a future time; then 50,000 more are scheduled for later.
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, limit_key)
         SELECT 'capped', 'later', '{}', 3, 'capped ' FROM generate_series(1, 2000)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    keep_statistics(&db.pool).await;
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, limit_key, state, scheduled_at)
         SELECT 'capped', 'later', '{}', 3, 'capped ', 'scheduled',
                now() + interval '1 hour' + i * interval '1 second'
         FROM generate_series(1, 50000) AS i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // A claim of 8 jobs of the kind (5 at once at most), as a worker whose
    // queue has only limited kinds makes it: it reads the next due time
    // itself. Measured on one session, the second time, so that planning
    // the function's statements (catalog reads) is not counted.
    let session = db.session().await;
    let claim = || {
        explain_buffers(
            "SELECT * FROM jobq_claim_limited($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), false)",
        )
        .bind("later")
        .bind(vec!["capped"])
        .bind(vec![Some("capped")])
        .bind(vec![None::<&str>])
        .bind(vec![Some(5i32)])
        .bind(vec![None::<i32>])
        .bind(vec![None::<i64>])
        .bind(8i32)
        .bind(worker)
    };
    buffers_touched(&session, claim()).await;
    let limited = buffers_touched(&session, claim()).await;
    let plain = buffers_touched(
        &session,
        explain_buffers(jobq::__private::CLAIM_SQL)
            .bind("later")
            .bind(vec!["other"])
            .bind(8i64)
            .bind(worker)
            .bind(chrono::Utc::now())
            .bind(false),
    )
    .await;
    session.close().await;
    // About 100 buffers for the limited claim's own work (its locks'
    // counts, a partition, 5 jobs) and 10 for the plain claim's; reading
    // the future jobs costs over 1,000.
    assert!(
        limited < 400 && plain < 100,
        "the limited claim read {limited} buffers, the plain claim {plain}"
    );
    // The same answer: the first future job is due in about an hour.
    let next: f64 = sqlx::query_scalar(
        "SELECT next_due_ms FROM jobq_claim_limited('later', '{capped}', '{capped}', '{NULL}',
                '{5}', '{NULL}', '{NULL}', 8, $1, now(), false) LIMIT 1",
    )
    .bind(worker)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        (3_600_000.0..3_700_000.0).contains(&next),
        "next due in {next} ms"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_at_its_limit_does_not_hold_up_the_others() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_part").await;
    create_limit_runs(&db.pool).await;
    let workers = Workers::start(&db, 3, 8, Duration::from_secs(30), "limit_user");

    // 50 users x 40 jobs, one at a time per user.
    enqueue_users(&db, 0..50, 40, 10).await;
    let started = Instant::now();
    wait_finished(&db, 2_000).await;
    let alone = started.elapsed();
    assert_eq!(
        max_overlap(&db).await,
        1,
        "two jobs of one user ran at once"
    );
    let users_at_once: i64 = db
        .count(
            "SELECT max(c)::int8 FROM (
                SELECT count(DISTINCT b.part) AS c FROM limit_runs a
                JOIN limit_runs b ON b.began_at <= a.began_at AND b.ended_at >= a.began_at
                GROUP BY a.job_id) AS x",
        )
        .await;
    assert!(
        users_at_once > 10,
        "users ran side by side: at most {users_at_once} at once"
    );

    // Now a queue whose first 10,000 jobs belong to user 1000, then 49
    // other users' 40 jobs each: those run at full speed beside user 1000.
    sqlx::query("TRUNCATE limit_runs")
        .execute(&db.pool)
        .await
        .unwrap();
    enqueue_users(&db, 1_000..1_001, 10_000, 10).await;
    enqueue_users(&db, 0..49, 40, 10).await;
    let started = Instant::now();
    wait_until("the other users' 1,960 jobs to run", DEADLINE, || async {
        db.count("SELECT count(*) FROM limit_runs WHERE part <> '1000'")
            .await
            >= 1_960
    })
    .await;
    let beside_hog = started.elapsed();
    let hog_done = db
        .count("SELECT count(*) FROM limit_runs WHERE part = '1000'")
        .await;
    eprintln!(
        "partitioned: 2,000 jobs of 50 users in {alone:?}; 1,960 jobs of 49 users behind \
         10,000 of one user in {beside_hog:?} (that user ran {hog_done} meanwhile)"
    );
    assert_eq!(
        max_overlap(&db).await,
        1,
        "two jobs of one user ran at once"
    );
    assert!(
        hog_done < 2_000,
        "the other users waited for user 1000's backlog ({hog_done} of its jobs ran first)"
    );
    // Full speed: within a loose factor of the same work without the hog
    // (the machine is shared; a blocked queue would take minutes).
    assert!(
        beside_hog < alone * 3 + Duration::from_secs(2),
        "{beside_hog:?} beside the hog against {alone:?} alone"
    );
    drop(workers);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_slots_come_back_within_a_lease() {
    // Restarts the server (under scripts/test): alone, not next to the others.
    let _server = SERVER.write().await;
    let db = TestDb::new("limit_crash").await;
    create_limit_runs(&db.pool).await;
    let lease = Duration::from_secs(2);
    // Two long jobs take the limit's two slots on the first worker.
    let long = jobq::enqueue_many::<two_at_once::Job, _, _>(
        &db.pool,
        (0..2).map(|_| two_at_once::Args { millis: 600_000 }),
    )
    .await
    .unwrap();
    let mut first = Workers::start(&db, 1, 8, lease, "limit_crash");
    wait_until("the long jobs to run", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'running'")
            .await
            == 2
    })
    .await;
    let short = jobq::enqueue_many::<two_at_once::Job, _, _>(
        &db.pool,
        (0..6).map(|_| two_at_once::Args { millis: 200 }),
    )
    .await
    .unwrap();
    // Their second attempt is short.
    sqlx::query("UPDATE jobq_jobs SET args = '{\"millis\": 200}' WHERE id = ANY($1)")
        .bind(long.iter().map(|id| id.0).collect::<Vec<_>>())
        .execute(&db.pool)
        .await
        .unwrap();

    // Killed with both slots held; a second worker takes over.
    let mut victim = first.0.remove(0);
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed_at = chrono::Utc::now();
    let second = Workers::start(&db, 1, 8, lease, "limit_crash");
    // Registered before the restart: a worker process that meets a server
    // going down while it connects exits at start (as a user's would,
    // for its supervisor to start again), and this test has no supervisor.
    let second_pid = second.0[0].id() as i32;
    wait_until("the second worker to register", DEADLINE, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobq_workers WHERE pid = $1")
            .bind(second_pid)
            .fetch_one(&db.pool)
            .await
            .unwrap()
            == 1
    })
    .await;

    // A server restart changes nothing: every limit lives in tables. The
    // time it takes (a shutdown checkpoint on a busy machine: seconds) is
    // the outage's, not the rescue's: the bound below allows for it.
    let mut outage = Duration::ZERO;
    if let Ok(restart) = std::env::var("JOBQ_PG_RESTART") {
        let began = Instant::now();
        let status = Command::new(restart).status().expect("run pg-restart");
        assert!(status.success(), "pg-restart failed: {status}");
        outage = began.elapsed();
    } else {
        eprintln!("JOBQ_PG_RESTART unset (DATABASE_URL given): not restarting the server");
    }

    wait_finished(&db, 8).await;
    let first_start: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT min(began_at) FROM limit_runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let freed_after = (first_start - killed_at).to_std().unwrap_or_default();
    eprintln!(
        "a killed worker's 2 slots: the next job started {freed_after:?} after the kill \
         (the server restart took {outage:?})"
    );
    // Nothing ran while the dead worker's jobs held the slots, and they
    // came back with the rescue, a lease after its last heartbeat (plus
    // the restart, the services' back-off after it (at most 3 s each for
    // the rescuer and the claim), and a start-up on a busy machine).
    assert!(
        freed_after >= lease / 2,
        "started {freed_after:?} after the kill"
    );
    // Generous: a busy machine runs this beside other tests' workers.
    assert!(
        freed_after < lease + outage + Duration::from_secs(10),
        "started {freed_after:?} after the kill, the restart took {outage:?}"
    );
    let overlap = max_overlap(&db).await;
    assert!(overlap <= 2, "{overlap} ran at once under a limit of 2");
    assert_eq!(unfinished(&db).await, 0);
    let ids: Vec<i64> = short.iter().chain(&long).map(|id| id.0).collect();
    let done: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT job_id) FROM limit_runs WHERE job_id = ANY($1)")
            .bind(&ids)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(done, 8);
    drop((first, second));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_limit_set_at_run_time_holds_until_cleared() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_queue").await;
    create_limit_runs(&db.pool).await;
    jobq::set_queue_limit(&db.pool, "limit_queue", Limit::concurrency(3))
        .await
        .unwrap();
    jobq::enqueue_many::<in_limited_queue::Job, _, _>(
        &db.pool,
        (0..300).map(|_| in_limited_queue::Args { millis: 10 }),
    )
    .await
    .unwrap();
    let workers = Workers::start(&db, 3, 8, Duration::from_secs(30), "limit_queue");
    wait_finished(&db, 300).await;
    assert_eq!(max_overlap(&db).await, 3);

    // Cleared: the workers' own concurrency is the only cap again.
    jobq::clear_queue_limit(&db.pool, "limit_queue")
        .await
        .unwrap();
    sqlx::query("TRUNCATE limit_runs")
        .execute(&db.pool)
        .await
        .unwrap();
    jobq::enqueue_many::<in_limited_queue::Job, _, _>(
        &db.pool,
        (0..300).map(|_| in_limited_queue::Args { millis: 50 }),
    )
    .await
    .unwrap();
    wait_finished(&db, 300).await;
    let overlap = max_overlap(&db).await;
    assert!(
        overlap > 3,
        "at most {overlap} at once after the limit was cleared"
    );
    drop(workers);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_rate_limit_counts_every_kind() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_qrate").await;
    create_limit_runs(&db.pool).await;
    jobq::set_queue_limit(&db.pool, "limit_queue", Limit::rate(Rate::per_second(40)))
        .await
        .unwrap();
    let n = 200;
    jobq::enqueue_many::<in_limited_queue::Job, _, _>(
        &db.pool,
        (0..n).map(|_| in_limited_queue::Args { millis: 1 }),
    )
    .await
    .unwrap();
    let workers = Workers::start(&db, 2, 8, Duration::from_secs(30), "limit_queue");
    wait_finished(&db, n).await;
    let busiest = busiest_second(&db).await;
    assert!((30..=40).contains(&busiest), "busiest window: {busiest}");
    drop(workers);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_limits_are_refused() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_bad").await;
    let e = jobq::set_queue_limit(&db.pool, "no spaces", Limit::concurrency(3))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid queue name"), "{e}");
    let e = jobq::set_queue_limit(&db.pool, "q", Limit::concurrency(0))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let rows = db.count("SELECT count(*) FROM jobq_queues").await;
    assert_eq!(rows, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_enqueued_before_their_limit_run_under_it() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_adopt").await;
    create_limit_runs(&db.pool).await;
    jobq::enqueue_many::<five_at_once::Job, _, _>(
        &db.pool,
        (0..60).map(|_| five_at_once::Args { millis: 20 }),
    )
    .await
    .unwrap();
    // As if enqueued by a build whose job had no limit yet.
    sqlx::query("UPDATE jobq_jobs SET limit_key = NULL")
        .execute(&db.pool)
        .await
        .unwrap();
    let workers = Workers::start(&db, 2, 8, Duration::from_secs(30), "limit_c5");
    wait_finished(&db, 60).await;
    assert!(max_overlap(&db).await <= 5);
    drop(workers);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_limited_jobs_run_when_due_alone_or_beside_unlimited_kinds() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_delayed").await;
    create_limit_runs(&db.pool).await;
    // No polling: the claims alone must make the jobs available when due
    // and say when the next is. In `limit_c5` the worker claims limited
    // kinds alone; in `default`, the plain claim runs first in each round.
    let worker = InProcess::start(
        test_worker(&db.pool)
            .queue("limit_c5", 8)
            .poll_interval(Duration::from_secs(3600)),
    );
    wait_for_listeners(&db, 1).await;
    let mut ids = Vec::new();
    for queue in ["limit_c5", "default"] {
        let id = five_at_once::builder(five_at_once::Args { millis: 1 })
            .queue(queue)
            .delay(Duration::from_millis(700))
            .enqueue(&db.pool)
            .await
            .unwrap();
        ids.push(id);
    }
    // Due in 0.7 s: a producer that missed it would sleep for an hour.
    for id in ids {
        let deadline = Duration::from_secs(30);
        wait_until("the delayed limited job to complete", deadline, || async {
            state_of(&db.pool, id).await == "completed"
        })
        .await;
    }
    worker.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rate_starts_of_partitions_no_claim_takes_are_deleted() {
    let _server = SERVER.read().await;
    let db = TestDb::new("limit_starts_prune").await;
    // A `hundred_a_second` job (no partition: its key is the job's name and
    // a space), left waiting: the worker below does not run its queue.
    jobq::enqueue_many::<hundred_a_second::Job, _, _>(
        &db.pool,
        [hundred_a_second::Args { millis: 1 }],
    )
    .await
    .unwrap();
    let key: String = sqlx::query_scalar("SELECT limit_key FROM jobq_jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // Starts of the job's limit in other partitions: one an hour old, far
    // past its window of a second; one just now. And an hour-old start of a
    // limit the worker does not know, and of a queue's own rate.
    sqlx::query(
        "INSERT INTO jobq_limit_starts (key, at, n) VALUES
            ($1 || 'idle', now() - interval '1 hour', 3),
            ($1 || 'busy', now(), 2),
            ('someone_else idle', now() - interval '1 hour', 1),
            (' queue limit_rate', now() - interval '1 hour', 1)",
    )
    .bind(&key)
    .execute(&db.pool)
    .await
    .unwrap();
    let starts = || async {
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT key FROM jobq_limit_starts ORDER BY key")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        keys
    };
    // A worker of another queue that knows the job: its limit-key service
    // runs when it starts.
    let worker = InProcess::start(test_worker(&db.pool));
    wait_until("the idle partition's old start to go", DEADLINE, || async {
        !starts().await.contains(&format!("{key}idle"))
    })
    .await;
    let mut kept = vec![
        " queue limit_rate".to_owned(),
        format!("{key}busy"),
        "someone_else idle".to_owned(),
    ];
    kept.sort();
    assert_eq!(starts().await, kept);
    assert_eq!(unfinished(&db).await, 1, "the job was not run");
    worker.stop().await.unwrap();
    db.cleanup().await;
}
