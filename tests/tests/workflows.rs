//! Dependencies and workflows: jobs that wait for other jobs, released by
//! the end of the last one, cancelled when one fails.

use std::time::{Duration, Instant};

use jobq::{JobId, JobState, WaitError, Workflow};
use jobq_tests::{
    InProcess, TestDb, chain_link, doubles, fails_with, flow_join, flow_step, spawn_worker_process,
    spawn_worker_process_with_lease, test_worker, wait_exit, wait_until,
};

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

fn step(value: i64) -> jobq::Enqueue<flow_step::Job> {
    flow_step::builder(flow_step::Args {
        value,
        millis: 0,
        fail: false,
    })
}

async fn state_of(db: &TestDb, id: JobId) -> JobState {
    sqlx::query_scalar("SELECT state FROM jobq_jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(&db.pool)
        .await
        .expect("read the state")
}

/// The last error entry of job `id`.
async fn last_error(db: &TestDb, id: JobId) -> serde_json::Value {
    sqlx::query_scalar("SELECT errors -> -1 FROM jobq_jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(&db.pool)
        .await
        .expect("read the errors")
}

/// How many rows `sql` (a `SELECT count(*) ...` of `$1`) counts.
async fn count_for(db: &TestDb, sql: &'static str, id: i64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("count query")
}

/// A diamond a -> (b, c) -> d; returns the ids of a, b, c, d.
fn diamond(w: &mut Workflow, n: i64, b_fails: bool, d_any: bool) -> [jobq::Step; 4] {
    let a = w.add(step(n));
    let b = w.add(
        flow_step::builder(flow_step::Args {
            value: 10 * n,
            millis: 0,
            fail: b_fails,
        })
        .max_attempts(1)
        .after(&[a]),
    );
    let c = w.add(step(100 * n).after(&[a]));
    let join = flow_join::builder(flow_join::Args {});
    let d = w.add(if d_any {
        join.after_any_outcome(&[b, c])
    } else {
        join.after(&[b, c])
    });
    [a, b, c, d]
}

#[tokio::test]
async fn a_thousand_diamonds_run_each_join_once_after_both_branches() {
    let db = TestDb::new("wf_diamonds").await;
    let mut tx = db.pool.begin().await.unwrap();
    let mut joins = Vec::new();
    for n in 1..=1000 {
        let mut w = Workflow::new();
        let [_, b, c, d] = diamond(&mut w, n, false, false);
        let ids = w.insert(&mut *tx).await.unwrap();
        joins.push((n, ids.job(b), ids.job(c), ids.job(d)));
    }
    tx.commit().await.unwrap();
    let pending = db
        .count("SELECT count(*) FROM jobq_jobs WHERE state = 'pending'")
        .await;
    assert_eq!(pending, 3000, "b, c and d wait for their dependencies");
    let mut workers: Vec<_> = (0..3)
        .map(|_| spawn_worker_process(WORKER, &db.url, 8))
        .collect();
    wait_until(
        "every job to complete",
        Duration::from_secs(300),
        || async {
            db.count("SELECT count(*) FROM jobq_jobs WHERE state <> 'completed'")
                .await
                == 0
        },
    )
    .await;
    for w in &mut workers {
        jobq_tests::sigterm(w);
        wait_exit(w, Duration::from_secs(30)).await;
    }
    // Each d started once, saw both results, and started after both ended.
    let rows: Vec<(i64, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT job_id, count(*) FILTER (WHERE event = 'started'),
                (array_agg(payload) FILTER (WHERE event = 'joined'))[1]
         FROM test_runs WHERE kind = 'flow_join' GROUP BY job_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1000);
    for (n, b, c, d) in &joins {
        let (_, starts, joined) = rows.iter().find(|r| r.0 == d.0).expect("d ran");
        assert_eq!(*starts, 1, "d of diamond {n} started {starts} times");
        let mut expected = vec![(b.0, 10 * n), (c.0, 100 * n)];
        expected.sort();
        let expected: Vec<i64> = expected.into_iter().map(|(_, v)| v).collect();
        assert_eq!(joined["seen"], serde_json::json!(expected), "diamond {n}");
        assert_eq!(
            flow_join::result(&db.pool, *d).await.unwrap(),
            Some(110 * n)
        );
    }
    let early = db
        .count(
            "SELECT count(*) FROM jobq_jobs d
             JOIN test_runs r ON r.job_id = d.id AND r.event = 'started'
             JOIN jobq_jobs p ON p.id = ANY (d.depends_on)
             WHERE d.kind = 'flow_join' AND (p.state <> 'completed' OR r.at < p.finalized_at)",
        )
        .await;
    assert_eq!(early, 0, "a d started before one of its dependencies ended");
    assert_eq!(db.count("SELECT count(*) FROM jobq_deps").await, 0);
    db.cleanup().await;
}

#[tokio::test]
async fn a_discarded_dependency_cancels_its_dependents_unless_they_take_any_outcome() {
    let db = TestDb::new("wf_discarded").await;
    let mut w = Workflow::new();
    let [_, b, _, d] = diamond(&mut w, 1, true, false);
    let [_, b2, _, d2] = diamond(&mut w, 2, true, true);
    let after_d = w.add(step(7).after(&[d]));
    let ids = w.insert(&db.pool).await.unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    let (b, d, after_d) = (ids.job(b), ids.job(d), ids.job(after_d));
    let err = flow_join::wait(&db.pool, d, Duration::from_secs(60))
        .await
        .unwrap_err();
    let WaitError::Cancelled { last_error, .. } = err else {
        panic!("d should be cancelled, got {err:?}");
    };
    assert_eq!(
        last_error.as_deref(),
        Some(format!("cancelled: its dependency {b} ended discarded").as_str())
    );
    assert_eq!(last_error_kind(&db, d).await, "dependency");
    // Down the graph too, naming its own dependency.
    let err = flow_step::wait(&db.pool, after_d, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("its dependency {d} ended cancelled")),
        "{err}"
    );
    // With `after_any_outcome`, d runs, and sees b's missing result.
    let sum = flow_join::wait(&db.pool, ids.job(d2), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(sum, 200, "only c's result");
    assert_eq!(state_of(&db, ids.job(b2)).await, JobState::Discarded);
    let started = db
        .count("SELECT count(*) FROM test_runs WHERE kind = 'flow_join' AND event = 'started'")
        .await;
    assert_eq!(started, 1, "only the any-outcome join ran");
    worker.stop().await.unwrap();
    db.cleanup().await;
}

async fn last_error_kind(db: &TestDb, id: JobId) -> String {
    last_error(db, id).await["kind"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_enqueue_after_finished_jobs_starts_as_they_ended() {
    let db = TestDb::new("wf_finished_deps").await;
    let worker = InProcess::start(test_worker(&db.pool));
    let ok = doubles::enqueue(&db.pool, doubles::Args { n: 1 })
        .await
        .unwrap();
    let bad = fails_with::builder(fails_with::Args {
        message: "no".into(),
    })
    .max_attempts(1)
    .enqueue(&db.pool)
    .await
    .unwrap();
    doubles::wait(&db.pool, ok, Duration::from_secs(30))
        .await
        .unwrap();
    fails_with::wait(&db.pool, bad, Duration::from_secs(30))
        .await
        .unwrap_err();
    worker.stop().await.unwrap();
    // Completed: available at once.
    let a = step(1).after(&[ok]).enqueue(&db.pool).await.unwrap();
    assert_eq!(state_of(&db, a).await, JobState::Available);
    // Discarded: cancelled at once, naming it; or available with any outcome.
    let c = step(1).after(&[ok, bad]).enqueue(&db.pool).await.unwrap();
    assert_eq!(state_of(&db, c).await, JobState::Cancelled);
    assert_eq!(
        last_error(&db, c).await["error"],
        serde_json::json!(format!("cancelled: its dependency {bad} ended discarded"))
    );
    let any = step(1)
        .after_any_outcome(&[bad])
        .after(&[ok])
        .enqueue(&db.pool)
        .await
        .unwrap();
    assert_eq!(state_of(&db, any).await, JobState::Available);
    // One that does not exist: a clear error, nothing written, and the
    // caller's transaction still usable.
    let mut tx = db.pool.begin().await.unwrap();
    let before = db.count("SELECT count(*) FROM jobq_jobs").await;
    let err = step(1)
        .after(&[JobId(i64::MAX)])
        .enqueue(&mut *tx)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("named in `.after(..)`, does not exist"),
        "{err}"
    );
    let x = step(2).after(&[ok]).enqueue(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, before + 1);
    assert_eq!(state_of(&db, x).await, JobState::Available);
    // A job enqueued earlier in the same transaction, and a running one.
    let mut tx = db.pool.begin().await.unwrap();
    let first = step(3).enqueue(&mut *tx).await.unwrap();
    let second = step(4).after(&[first]).enqueue(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(state_of(&db, second).await, JobState::Pending);
    let worker = InProcess::start(test_worker(&db.pool));
    assert_eq!(
        flow_step::wait(&db.pool, second, Duration::from_secs(30))
            .await
            .unwrap(),
        4
    );
    worker.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn cancelling_a_workflow_cancels_every_unfinished_job() {
    let db = TestDb::new("wf_cancel").await;
    let mut w = Workflow::new();
    let a = w.add(step(1).delay(Duration::from_secs(3600)));
    let b = w.add(step(2).after(&[a]));
    let c = w.add(flow_join::builder(flow_join::Args {}).after(&[a, b]));
    let ids = w.insert(&db.pool).await.unwrap();
    let other = step(3)
        .delay(Duration::from_secs(3600))
        .enqueue(&db.pool)
        .await
        .unwrap();
    let touched = Workflow::cancel(&db.pool, ids.id).await.unwrap();
    assert_eq!(touched, 3);
    for s in [a, b, c] {
        assert_eq!(state_of(&db, ids.job(s)).await, JobState::Cancelled);
    }
    assert_eq!(state_of(&db, other).await, JobState::Scheduled);
    assert_eq!(
        last_error(&db, ids.job(c)).await["error"],
        serde_json::json!("its workflow was cancelled")
    );
    assert_eq!(db.count("SELECT count(*) FROM jobq_deps").await, 0);
    db.cleanup().await;
}

#[tokio::test]
async fn a_killed_workers_dependency_is_rescued_and_its_dependent_runs_once_after_it() {
    let db = TestDb::new("wf_kill").await;
    let lease = Duration::from_secs(2);
    let mut workers: Vec<_> = (0..3)
        .map(|_| spawn_worker_process_with_lease(WORKER, &db.url, 4, lease, "default"))
        .collect();
    let mut w = Workflow::new();
    let a = w.add(step(1));
    let b = w.add(
        flow_step::builder(flow_step::Args {
            value: 20,
            millis: 1500,
            fail: false,
        })
        .after(&[a]),
    );
    let c = w.add(step(300).after(&[a]));
    let d = w.add(flow_join::builder(flow_join::Args {}).after(&[b, c]));
    let ids = w.insert(&db.pool).await.unwrap();
    let b = ids.job(b);
    // Kill -9 the worker running b's first attempt.
    wait_until("b to start", Duration::from_secs(60), || async {
        count_for(
            &db,
            "SELECT count(*) FROM test_runs WHERE job_id = $1 AND event = 'started'",
            b.0,
        )
        .await
            == 1
    })
    .await;
    let pid: i32 = sqlx::query_scalar(
        "SELECT w.pid FROM jobq_jobs j JOIN jobq_workers w ON w.id = j.attempted_by
         WHERE j.id = $1",
    )
    .bind(b.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let victim = workers
        .iter()
        .position(|c| c.id() as i32 == pid)
        .expect("b runs in one of our workers");
    let mut killed = workers.remove(victim);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let sum = flow_join::wait(&db.pool, ids.job(d), Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(sum, 320);
    let b_starts = count_for(
        &db,
        "SELECT count(*) FROM test_runs WHERE job_id = $1 AND event = 'started'",
        b.0,
    )
    .await;
    assert_eq!(b_starts, 2, "b ran again after its worker died");
    let b_lost = last_error_kind_any(&db, b).await;
    assert!(b_lost.contains(&"lost".to_owned()), "{b_lost:?}");
    let d_starts = count_for(
        &db,
        "SELECT count(*) FROM test_runs WHERE job_id = $1 AND event = 'started'",
        ids.job(d).0,
    )
    .await;
    assert_eq!(d_starts, 1);
    let after: bool = sqlx::query_scalar(
        "SELECT r.at >= b.finalized_at FROM test_runs r, jobq_jobs b
         WHERE r.job_id = $1 AND r.event = 'started' AND b.id = $2",
    )
    .bind(ids.job(d).0)
    .bind(b.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(after, "d started before b's second attempt ended");
    for w in &mut workers {
        jobq_tests::sigterm(w);
        wait_exit(w, Duration::from_secs(30)).await;
    }
    db.cleanup().await;
}

async fn last_error_kind_any(db: &TestDb, id: JobId) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT e ->> 'kind' FROM jobq_jobs, jsonb_array_elements(errors) AS e WHERE id = $1",
    )
    .bind(id.0)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// 10,000 jobs, each after the one before: they run in order, and the time
/// from one's end to the next one's start is printed (p50/p99).
#[tokio::test]
async fn a_chain_of_ten_thousand_jobs_runs_in_order() {
    let db = TestDb::new("wf_chain").await;
    let n = 10_000;
    let mut w = Workflow::new();
    let mut prev = w.add(chain_link::builder(chain_link::Args { n: 0 }));
    for i in 1..n {
        prev = w.add(chain_link::builder(chain_link::Args { n: i }).after(&[prev]));
    }
    let start = Instant::now();
    let ids = w.insert(&db.pool).await.unwrap();
    println!("inserted a chain of {n} in {:?}", start.elapsed());
    let mut workers: Vec<_> = (0..3)
        .map(|_| spawn_worker_process(WORKER, &db.url, 8))
        .collect();
    let start = Instant::now();
    chain_link::wait(
        &db.pool,
        *ids.jobs.last().unwrap(),
        Duration::from_secs(900),
    )
    .await
    .unwrap();
    println!("ran a chain of {n} in {:?}", start.elapsed());
    for w in &mut workers {
        jobq_tests::sigterm(w);
        wait_exit(w, Duration::from_secs(30)).await;
    }
    let order: Vec<i64> = sqlx::query_scalar(
        "SELECT (payload ->> 'n')::bigint FROM test_runs WHERE event = 'started' ORDER BY seq",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(order, (0..n).collect::<Vec<_>>(), "in order, each once");
    // From one's end (its completion's write) to the next one's start.
    let mut gaps: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM r.at - p.finalized_at)::float8 * 1000
         FROM jobq_jobs p
         JOIN jobq_jobs c ON c.depends_on = ARRAY[p.id]
         JOIN test_runs r ON r.job_id = c.id AND r.event = 'started'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(gaps.len(), n as usize - 1);
    gaps.sort_by(f64::total_cmp);
    let p = |q: f64| gaps[((gaps.len() - 1) as f64 * q) as usize];
    println!(
        "chain: from one job's completion to the next one's start: p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert!(
        p(0.0) >= 0.0,
        "a link started before the one before it ended"
    );
    db.cleanup().await;
}

/// A job that waits an hour, so that it is still there to delete.
async fn parked(db: &TestDb, value: i64) -> JobId {
    step(value)
        .delay(Duration::from_secs(3600))
        .enqueue(&db.pool)
        .await
        .unwrap()
}

async fn error_of(db: &TestDb, id: JobId) -> String {
    last_error(db, id).await["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A dependency deleted by hand, by id or by a bulk delete over a filter,
/// is one that did not complete: its dependents are cancelled naming it, or
/// run if they take any outcome, and so on down the graph. Cancelling a
/// pending job does the same to its own dependents. Nothing is left pending.
#[tokio::test]
async fn deleting_or_cancelling_a_dependency_settles_its_dependents() {
    use jobq::admin::{Action, JobFilter, Target, apply};
    let db = TestDb::new("wf_delete").await;
    // No worker runs: every job stays where the test puts it.
    let a = parked(&db, 1).await;
    let strict = step(2).after(&[a]).enqueue(&db.pool).await.unwrap();
    let loose = step(3)
        .after_any_outcome(&[a])
        .enqueue(&db.pool)
        .await
        .unwrap();
    let below = step(4).after(&[strict]).enqueue(&db.pool).await.unwrap();
    assert_eq!(state_of(&db, strict).await, JobState::Pending);
    let out = apply(&db.pool, Action::Delete, Target::Ids(&[a.0]), 100, |_| {})
        .await
        .unwrap();
    assert_eq!(out.progress.changed, 1);
    assert_eq!(state_of(&db, strict).await, JobState::Cancelled);
    assert_eq!(
        error_of(&db, strict).await,
        format!("cancelled: its dependency {a} was deleted")
    );
    assert_eq!(state_of(&db, below).await, JobState::Cancelled);
    assert_eq!(
        error_of(&db, below).await,
        format!("cancelled: its dependency {strict} ended cancelled")
    );
    assert_eq!(state_of(&db, loose).await, JobState::Available);

    // A pending job deleted by a bulk delete over a filter of states.
    let p = parked(&db, 5).await;
    let q = step(6).after(&[p]).enqueue(&db.pool).await.unwrap();
    let r = step(7).after(&[q]).enqueue(&db.pool).await.unwrap();
    let filter = JobFilter {
        ids: vec![q.0],
        states: vec![JobState::Pending],
        ..JobFilter::default()
    };
    let out = apply(
        &db.pool,
        Action::Delete,
        Target::Filter(&filter),
        100,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(out.progress.changed, 1, "the pending job is deleted");
    assert_eq!(state_of(&db, r).await, JobState::Cancelled);
    assert_eq!(
        error_of(&db, r).await,
        format!("cancelled: its dependency {q} was deleted")
    );
    assert_eq!(state_of(&db, p).await, JobState::Scheduled);

    // Cancelling a pending job, alone or in bulk, reaches its dependents.
    let s = parked(&db, 8).await;
    let t = step(9).after(&[s]).enqueue(&db.pool).await.unwrap();
    let u = step(10).after(&[t]).enqueue(&db.pool).await.unwrap();
    let v = step(11)
        .after_any_outcome(&[t])
        .enqueue(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        jobq::cancel(&db.pool, t).await.unwrap(),
        jobq::Cancellation::Cancelled
    );
    assert_eq!(state_of(&db, u).await, JobState::Cancelled);
    assert_eq!(
        error_of(&db, u).await,
        format!("cancelled: its dependency {t} ended cancelled")
    );
    assert_eq!(state_of(&db, v).await, JobState::Available);
    let x = step(12).after(&[s]).enqueue(&db.pool).await.unwrap();
    let y = step(13).after(&[x]).enqueue(&db.pool).await.unwrap();
    apply(&db.pool, Action::Cancel, Target::Ids(&[x.0]), 100, |_| {})
        .await
        .unwrap();
    assert_eq!(state_of(&db, y).await, JobState::Cancelled);
    // Run-now leaves a pending job waiting.
    let z = step(14).after(&[s]).enqueue(&db.pool).await.unwrap();
    let out = apply(&db.pool, Action::RunNow, Target::Ids(&[z.0]), 100, |_| {})
        .await
        .unwrap();
    assert_eq!(out.progress.changed, 0);
    assert_eq!(state_of(&db, z).await, JobState::Pending);

    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'pending' AND id <> ALL (SELECT child FROM jobq_deps WHERE parent IN (SELECT id FROM jobq_jobs))")
            .await,
        0,
        "a pending job waits for a job that no longer exists"
    );
    db.cleanup().await;
}

/// 200 jobs, each after the same 50, enqueued from 20 transactions at once
/// (each naming the 50 in another order) while 3 worker processes end
/// those 50 with results, many at once: every dependent runs once, after
/// all 50; no enqueue fails, no attempt fails, and PostgreSQL detected no
/// deadlock in the test's database.
#[tokio::test]
async fn many_dependencies_ending_while_dependents_are_enqueued_never_deadlock() {
    let db = TestDb::new("wf_lock_order").await;
    let parents = jobq::enqueue_many::<flow_step::Job, _, _>(
        &db.pool,
        (0..50).map(|i| flow_step::Args {
            value: i,
            millis: (i as u64 % 5) * 20,
            fail: false,
        }),
    )
    .await
    .unwrap();
    let mut workers: Vec<_> = (0..3)
        .map(|_| spawn_worker_process(WORKER, &db.url, 8))
        .collect();
    let enqueues: Vec<_> = (0..20)
        .map(|t| {
            let pool = db.pool.clone();
            let mut deps = parents.clone();
            fastrand::shuffle(&mut deps);
            tokio::spawn(async move {
                for i in 0..10 {
                    let mut tx = pool.begin().await?;
                    chain_link::builder(chain_link::Args { n: t * 10 + i })
                        .after(&deps)
                        .enqueue(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Ok::<_, jobq::Error>(())
            })
        })
        .collect();
    for e in enqueues {
        e.await.unwrap().expect("no enqueue fails");
    }
    wait_until(
        "every job to complete",
        Duration::from_secs(300),
        || async {
            db.count("SELECT count(*) FROM jobq_jobs WHERE state <> 'completed'")
                .await
                == 0
        },
    )
    .await;
    for w in &mut workers {
        jobq_tests::sigterm(w);
        wait_exit(w, Duration::from_secs(30)).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 250);
    let runs: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM test_runs WHERE kind = 'chain_link' AND event = 'started'
         GROUP BY job_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(runs.len(), 200, "every dependent ran");
    assert!(runs.iter().all(|&n| n == 1), "each once: {runs:?}");
    let early = db
        .count(
            "SELECT count(*) FROM jobq_jobs d
             JOIN test_runs r ON r.job_id = d.id AND r.event = 'started'
             JOIN jobq_jobs p ON p.id = ANY (d.depends_on)
             WHERE d.kind = 'chain_link' AND r.at < p.finalized_at",
        )
        .await;
    assert_eq!(early, 0, "a dependent started before a dependency ended");
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE errors <> '[]'")
            .await,
        0,
        "no attempt failed"
    );
    // Deadlocks are counted by the backend that detects them, and flushed
    // to the statistics at the latest as it exits: wait for every other
    // connection to the database to end, then read the count.
    db.pool.close().await;
    let mut conn = db.connection().await;
    let start = Instant::now();
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "connections linger"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut conn)
        .await
        .unwrap();
    let deadlocks: i64 = sqlx::query_scalar(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(deadlocks, 0, "PostgreSQL detected deadlocks");
    drop(conn);
    db.cleanup().await;
}
