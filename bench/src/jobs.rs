//! The jobs the bench runs: [`noop`] for throughput, [`probe`] for latency.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jobq::{JobContext, Registry, State};

/// The queue of the throughput figures.
pub const QUEUE: &str = "bench";

/// The queue of the latency figure.
pub const LATENCY_QUEUE: &str = "bench_latency";

/// Does nothing, so that a figure measures jobq and PostgreSQL alone.
#[jobq::job(queue = "bench", retries = 0)]
pub async fn noop(n: i64) -> Result<(), Infallible> {
    let _ = n;
    Ok(())
}

/// Does nothing, at most one unfinished job per argument: the unique
/// batch-enqueue figure inserts it, no figure runs it.
#[jobq::job(queue = "bench", retries = 0, unique = "args")]
pub async fn noop_unique(n: i64) -> Result<(), Infallible> {
    let _ = n;
    Ok(())
}

/// When each probe's handler started, by job id. Clones share one map, so the
/// bench keeps a clone of what it hands the worker.
#[derive(Debug, Default, Clone)]
pub struct Starts(Arc<Mutex<HashMap<i64, Instant>>>);

impl Starts {
    /// Records that job `id`'s handler started at `at`.
    pub fn record(&self, id: i64, at: Instant) {
        self.0.lock().expect("starts").insert(id, at);
    }

    /// How many handlers started.
    pub fn len(&self) -> usize {
        self.0.lock().expect("starts").len()
    }

    /// Whether no handler started yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The start time of job `id`'s handler, if it started.
    pub fn get(&self, id: i64) -> Option<Instant> {
        self.0.lock().expect("starts").get(&id).copied()
    }
}

/// Records the instant its handler starts, for the latency figure.
#[jobq::job(queue = "bench_latency", retries = 0)]
pub async fn probe(ctx: JobContext, starts: State<Starts>) -> Result<(), Infallible> {
    starts.record(ctx.id().0, Instant::now());
    Ok(())
}

/// A registry holding [`noop`] alone.
pub fn noop_registry() -> jobq::Result<Registry> {
    Registry::new().register::<noop::Job>()
}

/// A registry holding [`probe`] alone.
pub fn probe_registry() -> jobq::Result<Registry> {
    Registry::new().register::<probe::Job>()
}

/// The arguments of the `n`th no-op job.
pub fn noop_args(n: u64) -> noop::Args {
    noop::Args { n: n as i64 }
}
