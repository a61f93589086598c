//! Metrics through the `metrics` facade: what a worker and an enqueue record
//! into the program's recorder. Each test installs a recorder of its own
//! (over `metrics-util`'s registry) for its thread, and runs on a
//! current-thread runtime, so the worker's tasks record into it and no other
//! test's do.

use std::collections::BTreeMap;
use std::time::Duration;

use jobq::{JobId, job};
use jobq_tests::{
    InProcess, TestDb, always_fails, controlled, dedup, panics, record, slow, test_worker,
    until_cancelled, wait_for_state, wait_until,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::MetricKind;
use metrics_util::registry::{AtomicStorage, Registry};

const DEADLINE: Duration = Duration::from_secs(60);

/// Times out after 200 ms, once with an attempt left, then for good.
#[job(timeout = "200ms", retries = 1)]
async fn times_out() -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

/// A recorder that keeps every value where the test can read it without
/// resetting it (`metrics-util`'s debugging recorder resets values as it
/// reads them).
#[derive(Clone)]
struct Recorded(Arc<Registry<Key, AtomicStorage>>);

impl Recorded {
    fn new() -> Self {
        Recorded(Arc::new(Registry::atomic()))
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// A value as the test reads it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// A metric's kind, name and labels (sorted).
type Series = (MetricKind, String, Vec<(String, String)>);

/// Every metric recorded so far, by series.
struct Seen(BTreeMap<Series, Value>);

impl Seen {
    fn take(recorded: &Recorded) -> Seen {
        let mut seen = BTreeMap::new();
        for (key, c) in recorded.0.get_counter_handles() {
            let n = c.load(Ordering::SeqCst);
            seen.insert(Self::key_of(MetricKind::Counter, &key), Value::Counter(n));
        }
        for (key, g) in recorded.0.get_gauge_handles() {
            let v = f64::from_bits(g.load(Ordering::SeqCst));
            seen.insert(Self::key_of(MetricKind::Gauge, &key), Value::Gauge(v));
        }
        for (key, h) in recorded.0.get_histogram_handles() {
            seen.insert(
                Self::key_of(MetricKind::Histogram, &key),
                Value::Histogram(h.data()),
            );
        }
        Seen(seen)
    }

    fn key_of(kind: MetricKind, key: &Key) -> Series {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        (kind, key.name().to_owned(), labels)
    }

    fn get(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&Value> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.0.get(&(kind, name.to_owned(), labels))
    }

    /// A counter's value; 0 when it was never registered.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(MetricKind::Counter, name, labels) {
            Some(Value::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} {labels:?} is no counter: {other:?}"),
        }
    }

    /// A gauge's value, if it was set.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.get(MetricKind::Gauge, name, labels) {
            Some(Value::Gauge(v)) => Some(*v),
            None => None,
            Some(other) => panic!("{name} {labels:?} is no gauge: {other:?}"),
        }
    }

    /// The values a histogram recorded since the last snapshot.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(MetricKind::Histogram, name, labels) {
            Some(Value::Histogram(v)) => v.clone(),
            None => Vec::new(),
            Some(other) => panic!("{name} {labels:?} is no histogram: {other:?}"),
        }
    }

    /// Every label name used by any metric.
    fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .keys()
            .flat_map(|(_, _, labels)| labels.iter().map(|(k, _)| k.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

async fn started(db: &TestDb, id: JobId) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM test_runs WHERE job_id = $1 AND event = 'started')",
    )
    .bind(id.0)
    .fetch_one(&db.pool)
    .await
    .expect("test_runs")
}

#[tokio::test]
async fn every_outcome_is_counted_with_its_queue_and_kind() {
    let recorded = Recorded::new();
    let _local = metrics::set_default_local_recorder(&recorded);
    let db = TestDb::new("metrics_outcomes").await;

    let completes = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    let fails = always_fails::enqueue(&db.pool, always_fails::Args {})
        .await
        .unwrap();
    let panicked = panics::enqueue(&db.pool, panics::Args {}).await.unwrap();
    let discards = controlled::enqueue(
        &db.pool,
        controlled::Args {
            action: "discard".into(),
        },
    )
    .await
    .unwrap();
    let snoozes = controlled::enqueue(
        &db.pool,
        controlled::Args {
            action: "snooze".into(),
        },
    )
    .await
    .unwrap();
    let overruns = times_out::enqueue(&db.pool, times_out::Args {})
        .await
        .unwrap();
    let cancelled = until_cancelled::enqueue(&db.pool, until_cancelled::Args {})
        .await
        .unwrap();
    let interrupted = slow::enqueue(&db.pool, slow::Args { millis: 600_000 })
        .await
        .unwrap();
    // A job its worker lost: running under a worker that has no row.
    let lost: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, state, attempt, max_attempts, attempted_at,
                                attempted_by)
         VALUES ('record', 'default', '{\"n\": 2}', 'running', 1, 4, now(), 999999)
         RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Enqueued, never run here: a batch, and a unique job twice.
    record::enqueue_many(&db.pool, (0..3).map(|n| record::Args { n }))
        .await
        .unwrap();
    record::builder(record::Args { n: 9 })
        .queue("idle")
        .enqueue(&db.pool)
        .await
        .unwrap();
    for _ in 0..2 {
        dedup::enqueue(&db.pool, dedup::Args { key: "k".into() })
            .await
            .unwrap();
    }
    // The batch went to `default`: out of the worker's way with it.
    sqlx::query(
        "UPDATE jobq_jobs SET queue = 'elsewhere'
         WHERE kind = 'record' AND queue = 'default' AND state = 'available' AND id <> $1",
    )
    .bind(completes.0)
    .execute(&db.pool)
    .await
    .unwrap();

    let worker = InProcess::start(
        test_worker(&db.pool)
            .lease_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(500))
            .shutdown_grace(Duration::from_millis(200)),
    );
    wait_until("the cancellable job to start", DEADLINE, || {
        started(&db, cancelled)
    })
    .await;
    jobq::cancel(&db.pool, cancelled).await.unwrap();
    for (id, state) in [
        (completes, "completed"),
        (fails, "discarded"),
        (panicked, "discarded"),
        (discards, "discarded"),
        (snoozes, "completed"),
        (overruns, "discarded"),
        (cancelled, "cancelled"),
        (JobId(lost), "completed"),
    ] {
        wait_for_state(&db.pool, id, state).await;
    }
    wait_until("the slow job to start", DEADLINE, || {
        started(&db, interrupted)
    })
    .await;
    worker.stop().await.unwrap();
    wait_for_state(&db.pool, interrupted, "available").await;

    let seen = Seen::take(&recorded);
    let attempts = |kind: &str, outcome: &str| {
        seen.counter(
            "jobq_attempts_total",
            &[("queue", "default"), ("kind", kind), ("outcome", outcome)],
        )
    };
    let expected = [
        ("record", "completed", 2),
        ("record", "lost", 1),
        ("always_fails", "failed", 2),
        ("always_fails", "discarded", 1),
        ("panics", "discarded", 1),
        ("controlled", "discarded", 1),
        ("controlled", "snoozed", 1),
        ("controlled", "completed", 1),
        ("times_out", "timed_out", 1),
        ("times_out", "discarded", 1),
        ("until_cancelled", "cancelled", 1),
        ("slow", "interrupted", 1),
    ];
    for (kind, outcome, n) in expected {
        assert_eq!(attempts(kind, outcome), n, "{kind} {outcome}");
    }
    // Nothing else was counted: every other outcome of these kinds is 0.
    let total: u64 = seen
        .0
        .iter()
        .filter(|((k, name, _), _)| *k == MetricKind::Counter && name == "jobq_attempts_total")
        .map(|(_, v)| match v {
            Value::Counter(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(total, expected.iter().map(|(_, _, n)| n).sum::<u64>());
    assert_eq!(
        seen.counter(
            "jobq_jobs_rescued_total",
            &[("queue", "default"), ("kind", "record")]
        ),
        1
    );

    // One run time and one wait per attempt the worker ran (not the lost
    // one): always_fails ran three.
    let labels = [("queue", "default"), ("kind", "always_fails")];
    let ran = seen.histogram("jobq_attempt_duration_seconds", &labels);
    let waited = seen.histogram("jobq_queue_wait_seconds", &labels);
    assert_eq!((ran.len(), waited.len()), (3, 3), "{ran:?} {waited:?}");
    assert!(ran.iter().chain(&waited).all(|s| (0.0..60.0).contains(s)));
    let timed = seen.histogram(
        "jobq_attempt_duration_seconds",
        &[("queue", "default"), ("kind", "times_out")],
    );
    assert_eq!(timed.len(), 2);
    assert!(timed.iter().all(|s| *s >= 0.2), "{timed:?}");

    let enqueued = |queue: &str, kind: &str| {
        seen.counter(
            "jobq_jobs_enqueued_total",
            &[("queue", queue), ("kind", kind)],
        )
    };
    // record: one alone and three in a batch in `default`, one in `idle`.
    assert_eq!(enqueued("default", "record"), 4);
    assert_eq!(enqueued("idle", "record"), 1);
    assert_eq!(enqueued("default", "controlled"), 2);
    // The second unique enqueue found the first: not counted.
    assert_eq!(enqueued("unique", "dedup"), 1);

    // Bounded labels only: never a job's id or arguments.
    for name in seen.label_names() {
        assert!(
            ["kind", "outcome", "queue", "state"].contains(&name.as_str()),
            "unexpected label {name}"
        );
    }
    db.cleanup().await;
}

#[tokio::test]
async fn gauges_count_unfinished_jobs_per_queue_and_state() {
    let recorded = Recorded::new();
    let _local = metrics::set_default_local_recorder(&recorded);
    let db = TestDb::new("metrics_gauges").await;

    // In `idle`, which the worker does not run: two available (one due an
    // hour ago), one scheduled, one retryable, one running under another
    // live worker, one pending.
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    record::builder(record::Args { n: 1 })
        .queue("idle")
        .run_at(an_hour_ago)
        .enqueue(&db.pool)
        .await
        .unwrap();
    for (n, delay) in [(2, None), (3, Some(3600)), (4, None), (5, None)] {
        let mut b = record::builder(record::Args { n }).queue("idle");
        if let Some(s) = delay {
            b = b.delay(Duration::from_secs(s));
        }
        b.enqueue(&db.pool).await.unwrap();
    }
    // And one pending: it waits for job 2, which never runs here.
    let two: i64 = sqlx::query_scalar("SELECT id FROM jobq_jobs WHERE args->>'n' = '2'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    record::builder(record::Args { n: 6 })
        .queue("idle")
        .after(&[JobId(two)])
        .enqueue(&db.pool)
        .await
        .unwrap();
    let other: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_workers (host, pid, queues) VALUES ('elsewhere', 1, '{idle}')
         RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE jobq_jobs SET state = 'retryable', attempt = 1,
                scheduled_at = now() + interval '1 hour' WHERE args->>'n' = '4'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE jobq_jobs SET state = 'running', attempt = 1, attempted_at = now(),
                attempted_by = $1 WHERE args->>'n' = '5'",
    )
    .bind(other)
    .execute(&db.pool)
    .await
    .unwrap();

    let worker =
        InProcess::start(test_worker(&db.pool).metrics_interval(Duration::from_millis(100)));
    let idle =
        |seen: &Seen, state: &str| seen.gauge("jobq_jobs", &[("queue", "idle"), ("state", state)]);
    wait_until("the gauges to count the idle queue", DEADLINE, || async {
        let seen = Seen::take(&recorded);
        idle(&seen, "available") == Some(2.0)
            && idle(&seen, "scheduled") == Some(1.0)
            && idle(&seen, "retryable") == Some(1.0)
            && idle(&seen, "running") == Some(1.0)
            && idle(&seen, "pending") == Some(1.0)
            && seen.gauge("jobq_workers", &[]) == Some(2.0)
    })
    .await;
    let seen = Seen::take(&recorded);
    let lag = seen
        .gauge("jobq_queue_lag_seconds", &[("queue", "idle")])
        .expect("the idle queue's lag");
    assert!((3599.0..3700.0).contains(&lag), "lag {lag}");

    // The queue drains: its gauges go to zero, not stay at their last count.
    sqlx::query("DELETE FROM jobq_jobs WHERE queue = 'idle'")
        .execute(&db.pool)
        .await
        .unwrap();
    wait_until("the idle queue's gauges to read zero", DEADLINE, || async {
        let seen = Seen::take(&recorded);
        ["pending", "available", "scheduled", "retryable", "running"]
            .iter()
            .all(|s| idle(&seen, s) == Some(0.0))
            && seen.gauge("jobq_queue_lag_seconds", &[("queue", "idle")]) == Some(0.0)
    })
    .await;
    worker.stop().await.unwrap();
    db.cleanup().await;
}

/// The shared reading's count and time.
async fn reading(db: &TestDb) -> Option<(i64, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as("SELECT readings, taken_at FROM jobq_metrics_sample")
        .fetch_optional(&db.pool)
        .await
        .expect("read jobq_metrics_sample")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_read_the_jobs_table_as_often_as_one() {
    let db = TestDb::new("metrics_shared").await;
    record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    // Six workers sampling every 200 ms: each reading its own, the table
    // would be read about 30 times a second.
    let interval = Duration::from_millis(200);
    let workers: Vec<InProcess> = (0..6)
        .map(|_| InProcess::start(test_worker(&db.pool).metrics_interval(interval)))
        .collect();
    wait_until("a first reading", DEADLINE, || async {
        reading(&db).await.is_some()
    })
    .await;
    let (first, first_at) = reading(&db).await.unwrap();
    wait_until("ten more readings", DEADLINE, || async {
        reading(&db).await.is_some_and(|(n, _)| n >= first + 10)
    })
    .await;
    let (last, last_at) = reading(&db).await.unwrap();
    // Each reading comes at least half an interval after the one before,
    // whoever takes it: the others take the shared one meanwhile.
    let span = (last_at - first_at).to_std().unwrap();
    let least = interval / 2 * (last - first) as u32;
    assert!(
        span >= least,
        "{} readings in {span:?}: the workers read the table on their own",
        last - first
    );
    for worker in workers {
        worker.stop().await.unwrap();
    }
    db.cleanup().await;
}

/// While another session reads the table (holds the sample lock), a worker
/// waits for that reading between tries, holding no snapshot: a session
/// blocked on the lock would hold back the cleanup of every row updated
/// meanwhile, and claims would read ever more dead index entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waiting_for_anothers_reading_holds_no_snapshot() {
    let db = TestDb::new("metrics_turn").await;
    // The sample lock ("jobqsamp"), held as a reader holds it.
    let mut holder = db.connection().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(0x6a6f_6271_7361_6d70_i64)
        .execute(&mut holder)
        .await
        .unwrap();
    let rollbacks = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let before = rollbacks().await;
    let worker = InProcess::start(test_worker(&db.pool).metrics_interval(Duration::from_secs(60)));
    // Each try that found the lock held ends its transaction at once.
    wait_until("the worker to try for the lock twice", DEADLINE, || async {
        rollbacks().await >= before + 2
    })
    .await;
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        waiting, 0,
        "a session waits on the lock, holding its snapshot"
    );
    // Released, the worker takes its turn and stores a reading.
    drop(holder);
    wait_until("the worker's reading", DEADLINE, || async {
        reading(&db).await.is_some()
    })
    .await;
    worker.stop().await.unwrap();
    db.cleanup().await;
}
