//! The worker process the integration tests start, stop and kill: every job
//! of `jobq_tests` on `DATABASE_URL`, until SIGTERM.

// The jobs live in the library crate; naming it keeps the linker from
// dropping their registrations.
use jobq_tests as _;

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // A test that fails or panics does not stop its worker processes: each
    // one exits when its parent is gone, rather than outliving the test run
    // (and holding its output open).
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(3);
            }
        }
    });
    let url = std::env::var("DATABASE_URL")?;
    let concurrency: usize = std::env::var("JOBQ_TEST_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let lease_ms: u64 = std::env::var("JOBQ_TEST_LEASE_MS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(30_000);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?;
    let queues = std::env::var("JOBQ_TEST_QUEUES").unwrap_or_else(|_| "default".into());
    let mut worker = jobq::Worker::new(pool.clone()).state(pool);
    for queue in queues.split(',') {
        worker = worker.queue(queue, concurrency);
    }
    worker
        .backoff(jobq_tests::FAST_BACKOFF)
        .poll_interval(Duration::from_millis(200))
        .shutdown_grace(Duration::from_secs(10))
        .lease_timeout(Duration::from_millis(lease_ms))
        .heartbeat_interval(Duration::from_millis(lease_ms / 4))
        .run()
        .await?;
    Ok(())
}
