//! `Worker::prometheus`: a scrape of `/metrics` over HTTP while the worker
//! runs. Its own test binary: the exporter becomes the process's global
//! recorder, once.

use std::time::Duration;

use jobq_tests::{InProcess, TestDb, always_fails, record, test_worker, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(60);

/// An address on the loopback no one listens on now.
fn free_addr() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address")
}

/// `GET path` on `addr`: the status line and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// The value of the sample `series` (name and labels as the exposition
/// format prints them) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_for_prometheus_at_slash_metrics() {
    let db = TestDb::new("prometheus").await;
    let addr = free_addr();
    let worker = InProcess::start(
        test_worker(&db.pool)
            .prometheus(addr)
            .metrics_interval(Duration::from_millis(100)),
    );
    // Counted once the recorder is in: enqueued after the server answers.
    wait_until("the metrics server to answer", DEADLINE, || async {
        get(addr, "/metrics").await.is_some()
    })
    .await;
    record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    always_fails::enqueue(&db.pool, always_fails::Args {})
        .await
        .unwrap();
    // A job due in an hour keeps the queue in every sample, so its gauges
    // exist whenever the sampler's first tick comes.
    record::builder(record::Args { n: 2 })
        .delay(Duration::from_secs(3600))
        .enqueue(&db.pool)
        .await
        .unwrap();
    let completed = r#"jobq_attempts_total{queue="default",kind="record",outcome="completed"}"#;
    let discarded =
        r#"jobq_attempts_total{queue="default",kind="always_fails",outcome="discarded"}"#;
    let scheduled = r#"jobq_jobs{queue="default",state="scheduled"}"#;
    let ended = |scrape: &str| {
        sample(scrape, completed) == Some(1.0)
            && sample(scrape, discarded) == Some(1.0)
            && sample(scrape, scheduled) == Some(1.0)
            && sample(scrape, "jobq_workers") == Some(1.0)
    };
    wait_until("a scrape to show both jobs' ends and a sample", DEADLINE, || async {
        matches!(get(addr, "/metrics").await, Some((status, body)) if status.contains(" 200 ") && ended(&body))
    })
    .await;
    let (_, scrape) = get(addr, "/metrics").await.expect("a scrape");

    let failed = r#"jobq_attempts_total{queue="default",kind="always_fails",outcome="failed"}"#;
    assert_eq!(sample(&scrape, failed), Some(2.0), "{scrape}");
    assert_eq!(
        sample(
            &scrape,
            r#"jobq_jobs_enqueued_total{queue="default",kind="record"}"#
        ),
        Some(2.0),
        "{scrape}"
    );
    // Run times are histograms with buckets, which Prometheus can add up
    // across workers; three attempts of always_fails.
    for line in [
        "# TYPE jobq_attempts_total counter",
        "# TYPE jobq_attempt_duration_seconds histogram",
        "# TYPE jobq_queue_wait_seconds histogram",
        "# TYPE jobq_jobs gauge",
        "# TYPE jobq_workers gauge",
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "no `{line}` in\n{scrape}"
        );
    }
    assert_eq!(
        sample(
            &scrape,
            r#"jobq_attempt_duration_seconds_count{queue="default",kind="always_fails"}"#
        ),
        Some(3.0),
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            r#"jobq_attempt_duration_seconds_bucket{queue="default",kind="always_fails",le="+Inf"}"#
        ),
        Some(3.0),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, "jobq_workers"), Some(1.0), "{scrape}");

    // A second exporter in the same process is refused at start, saying why.
    let second = test_worker(&db.pool).prometheus(free_addr());
    let refused = second.run_until(async {}).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("already has a metrics recorder"),
        "{refused}"
    );

    worker.stop().await.unwrap();
    // The server stops with the worker.
    wait_until("the metrics server to stop", DEADLINE, || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    db.cleanup().await;
}
