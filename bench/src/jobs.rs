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

/// Does nothing, at most 50 at once across every worker: the limited
/// figure.
#[jobq::job(queue = "bench", retries = 0, concurrency = 50)]
pub async fn noop_c50(n: i64) -> Result<(), Infallible> {
    let _ = n;
    Ok(())
}

/// Does nothing, one at a time per `part`: the partitioned figure spreads
/// its jobs over [`PARTITIONS`] values.
#[jobq::job(queue = "bench", retries = 0, concurrency = 1, partition = "part")]
pub async fn noop_part(n: i64, part: i64) -> Result<(), Infallible> {
    let _ = (n, part);
    Ok(())
}

/// The partitions of the partitioned figure.
pub const PARTITIONS: i64 = 1000;

/// Which no-op job a process figure runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// [`noop`]: no limits.
    Noop,
    /// [`noop_c50`]: at most 50 at once.
    Limited50,
    /// [`noop_part`]: one at a time in each of [`PARTITIONS`] partitions.
    Partitioned1000,
}

impl Kind {
    /// The suffix of its figures' names (none for [`Kind::Noop`]).
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Noop => "",
            Kind::Limited50 => "_limit50",
            Kind::Partitioned1000 => "_part1000",
        }
    }

    /// A registry holding this job alone.
    pub fn registry(self) -> jobq::Result<Registry> {
        match self {
            Kind::Noop => noop_registry(),
            Kind::Limited50 => Registry::new().register::<noop_c50::Job>(),
            Kind::Partitioned1000 => Registry::new().register::<noop_part::Job>(),
        }
    }

    /// Enqueues jobs `range` of this kind; returns how many ids came back.
    pub async fn enqueue(
        self,
        pool: &sqlx::PgPool,
        range: std::ops::Range<u64>,
    ) -> jobq::Result<usize> {
        let n = range.clone().map(|n| n as i64);
        Ok(match self {
            Kind::Noop => noop::enqueue_many(pool, n.map(|n| noop::Args { n })).await?,
            Kind::Limited50 => {
                noop_c50::enqueue_many(pool, n.map(|n| noop_c50::Args { n })).await?
            }
            Kind::Partitioned1000 => {
                noop_part::enqueue_many(
                    pool,
                    n.map(|n| noop_part::Args {
                        n,
                        part: n % PARTITIONS,
                    }),
                )
                .await?
            }
        }
        .len())
    }
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
