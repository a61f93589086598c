//! The admin queries (`jobq::admin`) behind the command line and the
//! dashboard: what workers publish, the overview and its warnings, lists,
//! detail, bulk actions, cron and prune previews.

use std::time::Duration;

use jobq::admin::{self, Action, JobFilter, Target, Warning};
use jobq::{JobState, Keep, Retention};
use jobq_tests::{InProcess, TestDb, always_fails, test_worker, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// Inserts `n` jobs of `kind` in `queue` and `state`, finished (when the
/// state is) `age_s` seconds ago; returns their ids.
async fn insert_jobs(
    db: &TestDb,
    n: i64,
    kind: &str,
    queue: &str,
    state: &str,
    age_s: i64,
) -> Vec<i64> {
    sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, state, max_attempts, attempt, scheduled_at,
                                attempted_at, finalized_at, errors)
         SELECT $2, $3, jsonb_build_object('n', i, 'user_id', i % 7), $4::jobq_state, 3,
                CASE WHEN $4 IN ('available', 'scheduled') THEN 0 ELSE 3 END,
                CASE WHEN $4 = 'scheduled' THEN now() + interval '1 hour'
                     ELSE now() - $5 * interval '1 second' END,
                CASE WHEN $4 NOT IN ('available', 'scheduled') THEN now() - $5 * interval '1 second' END,
                CASE WHEN $4 IN ('completed', 'discarded', 'cancelled')
                     THEN now() - $5 * interval '1 second' END,
                CASE WHEN $4 = 'discarded'
                     THEN '[{\"attempt\": 3, \"kind\": \"error\", \"error\": \"boom\"}]'::jsonb
                     ELSE '[]' END
         FROM generate_series(1, $1) AS i RETURNING id",
    )
    .bind(n)
    .bind(kind)
    .bind(queue)
    .bind(state)
    .bind(age_s)
    .fetch_all(&db.pool)
    .await
    .expect("insert jobs")
}

/// A worker row as a live worker of a jobq that publishes writes it:
/// running `queues`, knowing `kinds` (each in the first queue).
async fn fake_worker(db: &TestDb, queues: &[&str], kinds: &[&str], heartbeat_age_s: i64) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_workers (host, pid, queues, lease_ms, heartbeat_at)
         VALUES ('fake', 1, $1, 30000, now() - $2 * interval '1 second') RETURNING id",
    )
    .bind(queues)
    .bind(heartbeat_age_s)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    for kind in kinds {
        sqlx::query(
            "INSERT INTO jobq_worker_kinds (worker_id, kind, queue, priority, max_attempts, source)
             VALUES ($1, $2, $3, 0, 3, 'fake (fake.rs:1)')",
        )
        .bind(id)
        .bind(kind)
        .bind(queues[0])
        .execute(&db.pool)
        .await
        .unwrap();
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_publishes_its_queues_and_kinds_and_they_go_with_it() {
    let db = TestDb::new("admin_publish").await;
    // A dead worker's publication, which the rescuer of the next worker
    // removes with its row.
    let dead = fake_worker(&db, &["default"], &["ghost"], 3600).await;
    let worker = InProcess::start(test_worker(&db.pool).queue("other", 3));
    wait_until(
        "the worker to publish and the dead one to go",
        DEADLINE,
        || async {
            let workers = admin::workers(&db.pool).await.unwrap();
            workers.len() == 1 && workers[0].id != dead
        },
    )
    .await;
    let w = &admin::workers(&db.pool).await.unwrap()[0];
    assert!(!w.stale);
    assert_eq!(w.lease, Some(Duration::from_secs(30)));
    let queues: Vec<(&str, Option<i32>)> = w
        .queues
        .iter()
        .map(|q| (q.queue.as_str(), q.concurrency))
        .collect();
    assert_eq!(queues, [("default", Some(8)), ("other", Some(3))]);

    let kinds = admin::kinds(&db.pool).await.unwrap();
    let rec = kinds.iter().find(|k| k.kind == "record").expect("record");
    assert_eq!((rec.queue.as_str(), rec.max_attempts), ("default", 4));
    assert!(
        rec.source.contains("tests/src/lib.rs:"),
        "source: {}",
        rec.source
    );
    let typed = kinds.iter().find(|k| k.kind == "typed").expect("typed");
    assert_eq!(typed.aliases, ["typed_v0"]);
    let overrun = kinds.iter().find(|k| k.kind == "overruns").unwrap();
    assert_eq!(overrun.timeout, Some(Duration::from_millis(300)));
    let tick = kinds.iter().find(|k| k.kind == "tick").unwrap();
    assert_eq!(tick.cron.as_deref(), Some("* * * * * *"));
    assert!(!kinds.iter().any(|k| k.kind == "ghost"));

    // `tick` runs in the queue `cron`, which this worker does not run.
    let overview = admin::overview(&db.pool).await.unwrap();
    assert!(overview.warnings.contains(&Warning::CronNotServed {
        kind: "tick".into(),
        queue: "cron".into(),
    }));
    let cron = admin::cron_jobs(&db.pool).await.unwrap();
    let tick = cron.iter().find(|c| c.kind == "tick").unwrap();
    assert!(!tick.served && tick.next_tick.is_none());

    worker.stop().await.unwrap();
    assert!(admin::workers(&db.pool).await.unwrap().is_empty());
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_worker_kinds").await
            + db.count("SELECT count(*) FROM jobq_worker_queues").await,
        0,
        "a stopped worker's publication goes with its row"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn the_overview_counts_each_queue_and_warns_of_what_nobody_runs() {
    let db = TestDb::new("admin_overview").await;
    insert_jobs(&db, 5, "record", "mail", "available", 120).await;
    insert_jobs(&db, 2, "record", "mail", "scheduled", 0).await;
    insert_jobs(&db, 3, "record", "mail", "discarded", 30).await;
    insert_jobs(&db, 4, "record", "mail", "completed", 10).await;
    insert_jobs(&db, 6, "record", "mail", "completed", 600).await;
    insert_jobs(&db, 9, "record", "mail", "completed", 7200).await;
    insert_jobs(&db, 1, "renamed", "served", "available", 5).await;
    insert_jobs(&db, 1, "record", "served", "available", 5).await;
    // A kind renamed with `aliases`: its jobs under the old name are known.
    insert_jobs(&db, 1, "record_v0", "served", "available", 5).await;
    let w = fake_worker(&db, &["served"], &["record"], 0).await;
    sqlx::query("UPDATE jobq_worker_kinds SET aliases = '{record_v0}' WHERE worker_id = $1")
        .bind(w)
        .execute(&db.pool)
        .await
        .unwrap();
    jobq::pause_queue(&db.pool, "paused").await.unwrap();

    let o = admin::overview(&db.pool).await.unwrap();
    assert_eq!(o.workers, 1);
    let mail = o.queues.iter().find(|q| q.queue == "mail").unwrap();
    assert_eq!(
        (mail.available, mail.scheduled, mail.discarded, mail.running),
        (5, 2, 3, 0)
    );
    assert_eq!(
        (mail.completed_last_minute, mail.completed_last_hour),
        (4, 10)
    );
    assert_eq!((mail.failed_last_minute, mail.failed_last_hour), (3, 3));
    let lag = mail.lag.expect("jobs wait");
    assert!(
        lag >= Duration::from_secs(119) && lag < Duration::from_secs(600),
        "{lag:?}"
    );
    assert_eq!(mail.workers, 0);
    let served = o.queues.iter().find(|q| q.queue == "served").unwrap();
    assert_eq!((served.workers, served.available), (1, 3));
    assert!(o.queues.iter().any(|q| q.queue == "paused" && q.paused));
    assert_eq!(
        o.warnings,
        [
            Warning::QueueNotServed {
                queue: "mail".into(),
                waiting: 7
            },
            Warning::UnknownKind {
                kind: "renamed".into(),
                queue: "served".into(),
                waiting: 1
            },
        ]
    );
    assert!(
        o.warnings[1]
            .to_string()
            .contains("aliases = [\"renamed\"]")
    );
    // JSON, as the command line prints it.
    let json = serde_json::to_value(&o).unwrap();
    assert_eq!(json["warnings"][0]["warning"], "queue_not_served");
    assert!(json["queues"][0]["lag_seconds"].is_number());
    db.cleanup().await;
}

#[tokio::test]
async fn a_filtered_list_pages_through_every_match_once() {
    let db = TestDb::new("admin_list").await;
    let discarded = insert_jobs(&db, 23, "record", "default", "discarded", 60).await;
    insert_jobs(&db, 10, "record", "default", "completed", 60).await;
    insert_jobs(&db, 5, "other", "default", "discarded", 60).await;
    let filter = JobFilter {
        states: vec![JobState::Discarded],
        kinds: vec!["record".into()],
        ..JobFilter::default()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = admin::list_jobs(&db.pool, &filter, after, 10, admin::SEARCH_WINDOW)
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id));
        assert!(
            page.jobs
                .iter()
                .all(|j| j.state == JobState::Discarded && j.kind == "record")
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut expected = discarded.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once");

    let by_args = JobFilter {
        args: Some(serde_json::json!({ "user_id": 3 })),
        ..filter.clone()
    };
    let page = admin::list_jobs(&db.pool, &by_args, None, 100, admin::SEARCH_WINDOW)
        .await
        .unwrap();
    assert!(!page.jobs.is_empty());
    assert!(
        page.jobs
            .iter()
            .all(|j| j.args_preview.contains("\"user_id\": 3"))
    );
    assert_eq!(
        admin::count_matching(&db.pool, &filter, 100, admin::SEARCH_WINDOW)
            .await
            .unwrap(),
        admin::Count::exactly(23)
    );
    // Discarded jobs by queue are counted through their index, whatever
    // the window.
    let failed = JobFilter {
        states: vec![JobState::Discarded],
        queues: vec!["default".into()],
        ..JobFilter::default()
    };
    assert_eq!(
        admin::count_matching(&db.pool, &failed, 100, 1)
            .await
            .unwrap(),
        admin::Count::exactly(28)
    );
    let capped = admin::count_matching(&db.pool, &filter, 5, admin::SEARCH_WINDOW)
        .await
        .unwrap();
    assert!(!capped.exact && capped.count >= 6);
    let by_state = admin::count_by_state(
        &db.pool,
        &JobFilter {
            kinds: vec!["record".into()],
            ..JobFilter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_state.get(&JobState::Discarded), Some(&23));
    assert_eq!(by_state.get(&JobState::Completed), Some(&10));
    let future = JobFilter {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..JobFilter::default()
    };
    assert!(
        admin::list_jobs(&db.pool, &future, None, 10, admin::SEARCH_WINDOW)
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_time_range_finds_exactly_the_jobs_enqueued_in_it() {
    let db = TestDb::new("admin_time_range").await;
    // One job an hour over the last 100 hours, oldest first (ids grow with
    // the time, as when they are enqueued).
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, created_at)
         SELECT 'record', 'default', '{}', 1, now() - (100 - i) * interval '1 hour'
         FROM generate_series(1, 100) AS i ORDER BY i RETURNING id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let now = chrono::Utc::now();
    let filter = JobFilter {
        since: Some(now - chrono::Duration::minutes(50 * 60 + 30)),
        until: Some(now - chrono::Duration::minutes(20 * 60 + 30)),
        ..JobFilter::default()
    };
    // Hours 50 to 21 back: jobs 50 to 79.
    let mut expected: Vec<i64> = ids[49..79].to_vec();
    expected.reverse();
    let page = admin::list_jobs(&db.pool, &filter, None, 1000, admin::SEARCH_WINDOW)
        .await
        .unwrap();
    let found: Vec<i64> = page.jobs.iter().map(|j| j.id).collect();
    assert_eq!(found, expected);
    assert_eq!(
        admin::count_matching(&db.pool, &filter, 1000, admin::SEARCH_WINDOW)
            .await
            .unwrap(),
        admin::Count::exactly(30)
    );
    // A bulk action by time range acts on the same jobs.
    let done = admin::apply(
        &db.pool,
        admin::Action::Cancel,
        admin::Target::Filter(&filter),
        7,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(done.progress.changed, 30);
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'cancelled'")
            .await,
        30
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_shows_each_attempt_with_its_error_worker_and_duration() {
    let db = TestDb::new("admin_detail").await;
    let worker = InProcess::start(test_worker(&db.pool));
    let id = always_fails::enqueue(&db.pool, always_fails::Args {})
        .await
        .unwrap();
    wait_until("the job to be discarded", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'discarded'")
            .await
            == 1
    })
    .await;
    worker.stop().await.unwrap();
    let job = admin::job(&db.pool, id.0).await.unwrap().expect("the job");
    assert_eq!(job.summary.state, JobState::Discarded);
    assert_eq!(job.attempts.len(), 3);
    for (i, a) in job.attempts.iter().enumerate() {
        assert_eq!(a.attempt, i as i32 + 1);
        assert_eq!(a.outcome, "error");
        assert!(a.worker.is_some(), "{a:?}");
        assert!(a.duration.is_some(), "{a:?}");
        assert!(a.error.is_some());
    }
    let what: Vec<&str> = job.timeline.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(what.first(), Some(&"enqueued"));
    assert_eq!(what.last(), Some(&"discarded"));
    assert!(what.contains(&"attempt 3 failed (error)"));
    assert!(admin::job(&db.pool, id.0 + 1000).await.unwrap().is_none());
    db.cleanup().await;
}

#[tokio::test]
async fn a_bulk_retry_by_filter_goes_in_bounded_batches() {
    let db = TestDb::new("admin_bulk").await;
    insert_jobs(&db, 2500, "record", "default", "discarded", 60).await;
    let kept = insert_jobs(&db, 10, "other", "default", "discarded", 60).await;
    let filter = JobFilter {
        states: vec![JobState::Discarded],
        kinds: vec!["record".into()],
        ..JobFilter::default()
    };
    let mut reports = Vec::new();
    let done = admin::apply(
        &db.pool,
        Action::Retry,
        Target::Filter(&filter),
        1000,
        |p| reports.push(*p),
    )
    .await
    .unwrap();
    assert_eq!(done.progress.changed, 2500);
    assert_eq!(done.progress.batches, 3);
    assert_eq!(done.progress.largest_batch, 1000);
    assert_eq!(
        reports.iter().map(|p| p.changed).collect::<Vec<_>>(),
        [1000, 2000, 2500]
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM jobq_jobs
             WHERE kind = 'record' AND state = 'available' AND finalized_at IS NULL
               AND max_attempts = 4 AND scheduled_at <= now()"
        )
        .await,
        2500
    );
    let other: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobq_jobs WHERE id = ANY($1) AND state = 'discarded'",
    )
    .bind(&kept)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(other, 10, "jobs outside the filter are left alone");
    // A cancel by kind walks the jobs it may cancel, not the history.
    insert_jobs(&db, 50, "archive", "default", "completed", 60).await;
    insert_jobs(&db, 3, "archive", "default", "available", 0).await;
    let by_kind = JobFilter {
        kinds: vec!["archive".into()],
        ..JobFilter::default()
    };
    let cancelled = admin::apply(
        &db.pool,
        Action::Cancel,
        Target::Filter(&by_kind),
        10,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (cancelled.progress.changed, cancelled.progress.examined),
        (3, 3)
    );
    let empty = admin::apply(
        &db.pool,
        Action::Retry,
        Target::Filter(&JobFilter::default()),
        10,
        |_| {},
    )
    .await;
    assert!(empty.is_err(), "an empty filter is refused");
    db.cleanup().await;
}

#[tokio::test]
async fn actions_by_id_change_what_they_may_and_say_what_they_left() {
    let db = TestDb::new("admin_ids").await;
    let scheduled = insert_jobs(&db, 2, "record", "default", "scheduled", 0).await;
    let running = insert_jobs(&db, 1, "record", "default", "running", 0).await;
    let done = insert_jobs(&db, 1, "record", "default", "completed", 0).await;

    let run_now = admin::apply(
        &db.pool,
        Action::RunNow,
        Target::Ids(&scheduled),
        100,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(run_now.progress.changed, 2);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM jobq_jobs WHERE state = 'available' AND scheduled_at <= now()"
        )
        .await,
        2
    );

    let ids = [running[0], done[0], 999_999];
    let deleted = admin::apply(&db.pool, Action::Delete, Target::Ids(&ids), 100, |_| {})
        .await
        .unwrap();
    assert_eq!(deleted.progress.changed, 1);
    assert_eq!(deleted.missing, [999_999]);
    assert_eq!(deleted.unchanged.len(), 1);
    assert_eq!(deleted.unchanged[0].state, JobState::Running);

    let cancelled = admin::apply(
        &db.pool,
        Action::Cancel,
        Target::Ids(&[scheduled[0], running[0]]),
        100,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(cancelled.progress.changed, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'cancelled'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'running' AND cancel_requested_at IS NOT NULL")
            .await,
        1,
        "a running job is asked to stop"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_retry_leaves_a_job_whose_unique_key_another_holds() {
    let db = TestDb::new("admin_unique").await;
    let old = insert_jobs(&db, 2, "record", "default", "discarded", 60).await;
    let live = insert_jobs(&db, 1, "record", "default", "available", 0).await;
    // Two discarded jobs and an available one share a key that holds in
    // unfinished states: the available one holds it now.
    sqlx::query("UPDATE jobq_jobs SET unique_key = 'k', unique_states = 15 WHERE id = ANY($1)")
        .bind([old.clone(), live.clone()].concat())
        .execute(&db.pool)
        .await
        .unwrap();
    let filter = JobFilter {
        states: vec![JobState::Discarded],
        ..JobFilter::default()
    };
    let done = admin::apply(&db.pool, Action::Retry, Target::Filter(&filter), 10, |_| {})
        .await
        .unwrap();
    assert_eq!((done.progress.changed, done.skipped), (0, 2));
    sqlx::query("DELETE FROM jobq_jobs WHERE id = $1")
        .bind(live[0])
        .execute(&db.pool)
        .await
        .unwrap();
    // Free now: of the two sharing it, one is retried.
    let done = admin::apply(&db.pool, Action::Retry, Target::Filter(&filter), 10, |_| {})
        .await
        .unwrap();
    assert_eq!((done.progress.changed, done.skipped), (1, 1));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_jobs_show_their_next_tick_and_latest_runs() {
    let db = TestDb::new("admin_cron").await;
    let worker = InProcess::start(test_worker(&db.pool).queue("cron", 2));
    wait_until("a tick to complete", DEADLINE, || async {
        admin::cron_jobs(&db.pool).await.unwrap().iter().any(|c| {
            c.kind == "tick"
                && c.last_run
                    .as_ref()
                    .is_some_and(|r| r.state == JobState::Completed)
        })
    })
    .await;
    let cron = admin::cron_jobs(&db.pool).await.unwrap();
    let tick = cron.iter().find(|c| c.kind == "tick").unwrap();
    assert!(tick.served);
    assert_eq!(tick.schedule.as_deref(), Some("* * * * * *"));
    let next = tick.next_tick.expect("a next tick");
    assert!(next > chrono::Utc::now() - chrono::Duration::seconds(1));
    assert!(next <= chrono::Utc::now() + chrono::Duration::seconds(2));

    // Its latest runs: the ticks of its schedule up to the latest, newest
    // first, each its own job, the first the latest run.
    wait_until("three ticks to run", DEADLINE, || async {
        admin::cron_jobs(&db.pool)
            .await
            .unwrap()
            .iter()
            .any(|c| c.kind == "tick" && c.recent_runs.len() >= 3)
    })
    .await;
    worker.stop().await.unwrap();
    let cron = admin::cron_jobs(&db.pool).await.unwrap();
    let tick = cron.iter().find(|c| c.kind == "tick").unwrap();
    let runs = &tick.recent_runs;
    assert!(runs.len() <= admin::RECENT_CRON_RUNS, "{runs:?}");
    assert_eq!(Some(runs[0].tick), tick.last_tick);
    assert_eq!(runs[0].id, tick.last_run.as_ref().unwrap().id);
    for pair in runs.windows(2) {
        // Every second: one tick apart, or more where a tick's job is gone.
        assert!(pair[0].tick > pair[1].tick, "{runs:?}");
        assert_ne!(pair[0].id, pair[1].id);
    }
    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, unique_key FROM jobq_jobs WHERE id = ANY($1)")
            .bind(runs.iter().map(|r| r.id).collect::<Vec<_>>())
            .fetch_all(&db.pool)
            .await
            .unwrap();
    for run in runs {
        let (_, key) = stored.iter().find(|(id, _)| *id == run.id).unwrap();
        assert!(
            key.ends_with(&run.tick.to_rfc3339()),
            "job {} is tick {key}, listed as {}",
            run.id,
            run.tick
        );
    }
    db.cleanup().await;
}

#[tokio::test]
async fn the_prune_preview_counts_what_retention_would_delete() {
    let db = TestDb::new("admin_prune").await;
    insert_jobs(&db, 4, "record", "default", "completed", 2 * 86400).await;
    insert_jobs(&db, 3, "record", "default", "completed", 60).await;
    insert_jobs(&db, 2, "record", "default", "discarded", 2 * 86400).await;
    let retention = Retention {
        discarded: Keep::Forever,
        ..Retention::default()
    };
    let preview = admin::prune_preview(&db.pool, &retention).await.unwrap();
    let counts: Vec<(JobState, i64)> = preview
        .iter()
        .map(|p| (p.state, p.prunable.count))
        .collect();
    assert_eq!(
        counts,
        [
            (JobState::Completed, 4),
            (JobState::Discarded, 0),
            (JobState::Cancelled, 0)
        ]
    );
    assert!(preview[0].oldest.is_some());
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs").await,
        9,
        "nothing deleted"
    );
    db.cleanup().await;
}
