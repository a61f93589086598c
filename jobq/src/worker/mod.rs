//! The worker: one per process, running every queue it was given.
//!
//! Background services, each in its own file and each stopping on the shutdown
//! token: `fetch` (one producer per queue: claim, spawn), `execute` (one
//! attempt), `complete` (batched result writes), `listen` (LISTEN/NOTIFY
//! wake-ups), `heartbeat` (the worker's lease). The maintenance services
//! (lease rescuer, pruner) live in `crate::maintenance`, cron in
//! `crate::schedule`; the periodic ones run on `crate::service`'s driver.

mod backoff;
mod complete;
mod config;
pub(crate) mod conn;
pub(crate) mod execute;
pub(crate) mod fetch;
mod heartbeat;
pub(crate) mod listen;
mod running;
mod shutdown;

pub(crate) use crate::service::outage;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::job::{JobDef, States};
use crate::maintenance::limit_keys::LimitKeys;
use crate::maintenance::pruner::{Pruner, Retention};
use crate::maintenance::rescuer::Rescuer;
use crate::metrics::sampler::Sampler;
use crate::queue::QueueName;
use crate::registry::Registry;
use crate::schedule::cron::{CronJob, CronService};
use crate::service::{self, supervised};
use crate::store;

pub use backoff::Backoff;
pub(crate) use complete::Completion;
pub(crate) use config::Config;
use heartbeat::Lease;
use running::RunningJobs;
use shutdown::{Running, shutdown_signal};

/// Concurrency of each queue the worker runs when none was named.
pub const DEFAULT_CONCURRENCY: usize = 10;

/// Runs jobs. One per process is enough: it runs every queue it is given,
/// each with its own concurrency.
///
/// ```no_run
/// # struct Mailer;
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), jobq::Error> {
/// jobq::migrate(&pool).await?;
/// jobq::Worker::new(pool)
///     .state(Mailer)            // for jobs that take `jobq::State<Mailer>`
///     .queue("email", 20)       // up to 20 email jobs at once
///     .queue("default", 10)
///     .run()                    // returns Ok(()) after SIGTERM or ctrl-c
///     .await
/// # }
/// ```
pub struct Worker {
    pool: PgPool,
    registry: Option<Registry>,
    states: States,
    queues: BTreeMap<String, usize>,
    config: Config,
    #[cfg(feature = "prometheus")]
    prometheus: Option<std::net::SocketAddr>,
}

impl Worker {
    /// A worker on `pool`, running every linked-in job, with default settings.
    /// The pool is the jobs' (`JobContext::pool`) and the occasional
    /// maintenance pass's (pruning, cron ticks): the worker's own services
    /// open connections of their own with the pool's settings (one per queue
    /// for claims, one for results, one for LISTEN, one for the heartbeat,
    /// one for rescues), so jobs that hold every pooled connection cannot
    /// starve them. Allow for those in the server's `max_connections`.
    pub fn new(pool: PgPool) -> Self {
        Worker {
            pool,
            registry: None,
            states: States::default(),
            queues: BTreeMap::new(),
            config: Config::default(),
            #[cfg(feature = "prometheus")]
            prometheus: None,
        }
    }

    /// Gives jobs a value they take as `jobq::State<T>`. One value per type;
    /// a second call with the same type replaces the first.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Runs `queue` with up to `concurrency` jobs at once. Without any call,
    /// the worker runs the default queue of every registered job with
    /// [`DEFAULT_CONCURRENCY`].
    pub fn queue(mut self, queue: impl Into<String>, concurrency: usize) -> Self {
        self.queues.insert(queue.into(), concurrency);
        self
    }

    /// Runs the jobs of `registry` instead of every linked-in job.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// How often to look for jobs when no notification arrived (default 1 s).
    /// Notifications make pick-up immediate; polling is the fallback.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// How often the worker renews its lease (default 5 s). At most half the
    /// lease timeout.
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.config.heartbeat_interval = every;
        self
    }

    /// How long a worker may miss its heartbeat before its running jobs are
    /// rescued by another (default 30 s): the longest a crashed worker's jobs
    /// wait, give or take a quarter of it. Give every worker the same value.
    pub fn lease_timeout(mut self, lease: Duration) -> Self {
        self.config.lease_timeout = lease;
        self
    }

    /// How long running jobs may take to finish after shutdown begins
    /// (default 30 s). Jobs still running then are cancelled and put back to
    /// `available`, their attempt not counted.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// How long a handler has to return once its cancellation token fires
    /// (its timeout, `jobq::cancel`, or a shutdown past its grace) before its
    /// future is dropped (default 1 s). A handler that returns `Ok` within it
    /// has completed and does not run again. A shutdown can take this much
    /// longer than [`shutdown_grace`](Worker::shutdown_grace), and the worker
    /// keeps its lease meanwhile: a handler that ignores its token holds the
    /// shutdown for all of it. Zero drops the future as soon as the token
    /// fires. When the worker has lost its lease (its jobs were given to
    /// other workers), a handler gets at most one second, whatever this says.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.config.cancel_grace = grace;
        self
    }

    /// How long failed jobs wait before they run again.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// A timeout for jobs whose `#[job]` sets none (default: none).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.config.default_timeout = Some(timeout);
        self
    }

    /// How long finished jobs are kept before they are deleted (default:
    /// completed 24 hours, cancelled and discarded 7 days; see [`Retention`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.config.retention = retention;
        self
    }

    /// How often this worker samples the gauges that count jobs in the
    /// table (default 15 s, give or take a tenth): unfinished jobs per queue
    /// and state, each queue's lag, live workers. One worker at a time reads
    /// them; see "Operating jobq" in the README for every metric.
    pub fn metrics_interval(mut self, every: Duration) -> Self {
        self.config.metrics_interval = every;
        self
    }

    /// Serves this process's metrics for Prometheus at `http://addr/metrics`
    /// while the worker runs: installs `metrics-exporter-prometheus` as the
    /// process's recorder, so the program's own `metrics` go there too.
    /// Run times and waits are histograms with buckets from 5 ms to an hour.
    /// The worker refuses to start when `addr` cannot be bound or the
    /// process already has a recorder (install one yourself instead, and
    /// jobq records into it). The names and labels are in the README,
    /// "Operating jobq".
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool) -> Result<(), jobq::Error> {
    /// jobq::Worker::new(pool)
    ///     .prometheus(([0, 0, 0, 0], 9187).into())
    ///     .run()
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn prometheus(mut self, addr: std::net::SocketAddr) -> Self {
        self.prometheus = Some(addr);
        self
    }

    /// Runs until SIGTERM or ctrl-c, then shuts down gracefully and returns
    /// `Ok(())`. Fails before running anything when the set-up is wrong: no
    /// jobs, duplicate names, a missing state, a bad queue name or interval.
    pub async fn run(self) -> Result<()> {
        // Install the handlers before starting, so no signal slips through.
        let signal = shutdown_signal()?;
        self.run_until(signal).await
    }

    /// Runs until `signal` completes, then shuts down gracefully. For tests and
    /// for programs with their own shutdown logic; OS signals are not watched.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        let started = self.start().await?;
        signal.await;
        started.shutdown().await
    }

    /// Checks the set-up, registers the worker, and starts every service.
    async fn start(self) -> Result<Running> {
        let Worker {
            pool,
            registry,
            states,
            mut queues,
            config,
            #[cfg(feature = "prometheus")]
            prometheus,
        } = self;
        let registry = match registry {
            Some(r) => r,
            None => crate::registry::registry()?,
        };
        if registry.is_empty() {
            return Err(Error::NoJobs);
        }
        check_states(&registry, &states)?;
        if queues.is_empty() {
            for def in registry.jobs() {
                queues.insert(def.queue.to_owned(), DEFAULT_CONCURRENCY);
            }
        }
        for (queue, concurrency) in &queues {
            QueueName::new(queue.as_str()).map_err(|e| Error::Config(e.to_string()))?;
            if *concurrency == 0 {
                return Err(Error::Config(format!(
                    "queue `{queue}` has concurrency 0; give it at least 1"
                )));
            }
        }
        config.validate()?;
        let stop_services = CancellationToken::new();
        #[cfg(feature = "prometheus")]
        let exporter = prometheus
            .map(|addr| crate::metrics::prometheus::install(addr, stop_services.clone()))
            .transpose()?;
        crate::metrics::describe();

        // The cron jobs whose queue this worker runs: it enqueues their ticks.
        let cron_jobs = registry
            .jobs()
            .filter(|d| d.cron.is_some() && queues.contains_key(d.queue))
            .map(CronJob::new)
            .collect::<Result<Vec<_>>>()?;

        let queue_names: Vec<String> = queues.keys().cloned().collect();
        let me = heartbeat::Identity {
            host: hostname(),
            pid: std::process::id() as i32,
            queues: queue_names,
            concurrency: queues
                .values()
                .map(|c| i32::try_from(*c).unwrap_or(i32::MAX))
                .collect(),
            lease_ms: config.heartbeat().lease_ms(),
            kinds: published_kinds(&registry, &config)?.into(),
            retention: published_retention(&config.retention).map(Into::into),
        };
        let worker_id = store::register_worker(&pool, &me.row()).await?;
        tracing::info!(
            worker_id,
            queues = ?queues,
            jobs = ?registry.jobs().map(|d| d.name).collect::<Vec<_>>(),
            "jobq worker started"
        );

        let stop_fetching = CancellationToken::new();
        let stop_jobs = CancellationToken::new();
        let (completions, completions_rx) = mpsc::channel(4096);
        let running = RunningJobs::default();
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            worker_id,
            kinds: ClaimKinds::new(&registry),
            registry,
            states: Arc::new(states),
            config: config.clone(),
            completions,
            stop_jobs: stop_jobs.clone(),
            running: running.clone(),
            jobs: TaskTracker::new(),
            lease: Lease::default(),
        });

        let wakers: HashMap<String, Arc<Notify>> = queues
            .keys()
            .map(|q| (q.clone(), Arc::new(Notify::new())))
            .collect();
        // Woken by the completer after it writes a retry or a snooze, or
        // anything while a limit holds the producer back.
        let rescans: HashMap<String, Arc<fetch::Rescan>> =
            queues.keys().map(|q| (q.clone(), Arc::default())).collect();
        // The services, each stopping on `stop_services`; the completer
        // stops when `Completer::finish` closes it.
        let services = TaskTracker::new();
        let stop = &stop_services;
        #[cfg(feature = "prometheus")]
        if let Some(exporter) = exporter {
            services.spawn(exporter);
        }
        let completer = complete::Completer::spawn(
            &services,
            pool.clone(),
            worker_id,
            config.clone(),
            completions_rx,
            rescans.values().cloned().collect(),
        );
        {
            let (pool, wakers, running, stop) =
                (pool.clone(), wakers.clone(), running.clone(), stop.clone());
            services.spawn(supervised("listen", stop.clone(), move || {
                let (wakers, running) = (wakers.clone(), running.clone());
                listen::run(pool.clone(), worker_id, wakers, running, stop.clone())
            }));
        }
        services.spawn(heartbeat::spawn(
            shared.clone(),
            me,
            config.heartbeat(),
            stop.clone(),
        ));
        if !cron_jobs.is_empty() {
            let (pool, jobs) = (pool.clone(), Arc::new(cron_jobs));
            let start = move || CronService::new(pool.clone(), jobs.clone());
            services.spawn(service::run(start, CronService::every(), stop.clone()));
        }
        {
            let (pool, rescuer) = (pool.clone(), config.rescuer());
            let start = move || Rescuer::new(pool.clone(), rescuer);
            services.spawn(service::run(start, rescuer.every(), stop.clone()));
        }
        {
            let (pool, interval) = (pool.clone(), config.metrics_interval);
            let every = Sampler::every(interval);
            let start = move || Sampler::new(pool.clone(), interval);
            services.spawn(service::run(start, every, stop.clone()));
        }
        if config.retention.prunes() {
            let (pool, retention) = (pool.clone(), config.retention);
            let start = move || Pruner::new(pool.clone(), retention);
            services.spawn(service::run(start, Pruner::every(&retention), stop.clone()));
        }
        if let Some(keys) = LimitKeys::new(
            pool.clone(),
            queues.keys().cloned().collect(),
            shared.kinds.limited.clone(),
        ) {
            let start = move || keys.clone();
            services.spawn(service::run(start, LimitKeys::every(), stop.clone()));
        }
        let producers = TaskTracker::new();
        for (queue, concurrency) in queues {
            let wakes = fetch::Wakes {
                notified: wakers[&queue].clone(),
                rescan: rescans[&queue].clone(),
            };
            producers.spawn(fetch::run(
                shared.clone(),
                queue,
                concurrency,
                wakes,
                stop_fetching.clone(),
            ));
        }
        producers.close();
        services.close();
        Ok(Running {
            shared,
            stop_fetching,
            stop_jobs,
            stop_services,
            producers,
            services,
            completer,
        })
    }
}

/// Checks that `states` holds every state type a job of `registry` takes.
fn check_states(registry: &Registry, states: &States) -> Result<()> {
    registry
        .jobs()
        .try_for_each(|def| check_job_states(def, states))
}

/// Checks that `states` holds every state type job `def` takes.
pub(crate) fn check_job_states(def: &JobDef, states: &States) -> Result<()> {
    for req in def.requires.iter().filter_map(|r| r()) {
        if !states.contains(req.type_id) {
            return Err(Error::MissingState {
                job: def.name,
                type_name: req.type_name,
            });
        }
    }
    Ok(())
}

/// What the worker's services share.
pub(crate) struct Shared {
    pub pool: PgPool,
    pub worker_id: i64,
    pub registry: Registry,
    pub kinds: ClaimKinds,
    pub states: Arc<States>,
    pub config: Config,
    pub completions: mpsc::Sender<Completion>,
    /// Fires when running jobs must stop (shutdown past its grace).
    pub stop_jobs: CancellationToken,
    /// The running attempts, by job id.
    pub running: RunningJobs,
    /// Every running attempt's task.
    pub jobs: TaskTracker,
    /// Whether the worker still holds its lease.
    pub lease: Lease,
}

/// What the worker publishes of its retention, as JSON: `None` when its
/// pruner never deletes anything.
fn published_retention(retention: &Retention) -> Option<String> {
    if !retention.prunes() {
        return None;
    }
    let ms = |keep: crate::Keep| match keep {
        crate::Keep::For(d) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        crate::Keep::Forever => None,
    };
    serde_json::to_string(&store::PublishedRetention {
        completed_ms: ms(retention.completed),
        discarded_ms: ms(retention.discarded),
        cancelled_ms: ms(retention.cancelled),
    })
    .ok()
}

/// What the worker publishes of its kinds (see [`store::PublishedKind`]):
/// each with the timeout it runs it with, as JSON.
fn published_kinds(registry: &Registry, config: &Config) -> Result<String> {
    let kinds: Vec<store::PublishedKind<'_>> = registry
        .jobs()
        .map(|def| store::PublishedKind {
            kind: def.name,
            aliases: def.aliases,
            queue: def.queue,
            priority: def.priority,
            max_attempts: def.max_attempts,
            timeout_ms: def
                .timeout
                .or(config.default_timeout)
                .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
            cron: def.cron,
            tz: def.tz,
            source: def.defined_at(),
            concurrency_limit: def
                .limits
                .concurrency
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            rate_limit: def
                .limits
                .rate
                .map(|r| i32::try_from(r.count()).unwrap_or(i32::MAX)),
            rate_window_ms: def.limits.rate.map(|r| r.window_ms()),
            partition: def.limits.partition,
        })
        .collect();
    serde_json::to_string(&kinds).map_err(|e| Error::Config(format!("publishing job kinds: {e}")))
}

/// The kinds a worker claims, split by limits: those without go through the
/// plain claim, those with through the limited one (see [`crate::limit`]).
pub(crate) struct ClaimKinds {
    /// Every stored name (names and aliases) of jobs without limits.
    pub unlimited: Vec<String>,
    /// Every stored name of jobs with limits, with those limits.
    pub limited: Vec<store::LimitedKind>,
    /// Every stored name, with its job's limits (none for most): what a
    /// queue with a limit of its own claims.
    pub all: Vec<store::LimitedKind>,
    /// Whether a limited kind has a concurrency limit: its jobs are then
    /// claimed only for free slots (a buffered one would hold a slot of the
    /// limit without running). Rate limits alone count starts, which a
    /// buffer does not change, so those are claimed like any other.
    pub limits_concurrency: bool,
}

impl ClaimKinds {
    fn new(registry: &Registry) -> Self {
        let mut all = Vec::new();
        for def in registry.jobs() {
            let l = def.limits;
            for kind in def.names() {
                all.push(store::LimitedKind {
                    kind: kind.to_owned(),
                    name: l.is_limited().then_some(def.name),
                    partition: l.partition,
                    concurrency: l.concurrency.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                    rate: l.rate.map(|r| i32::try_from(r.count()).unwrap_or(i32::MAX)),
                    window_ms: l.rate.map(|r| r.window_ms()),
                });
            }
        }
        all.sort_by(|a, b| a.kind.cmp(&b.kind));
        let (limited, unlimited): (Vec<_>, Vec<_>) =
            all.iter().cloned().partition(|k| k.name.is_some());
        ClaimKinds {
            unlimited: unlimited.into_iter().map(|k| k.kind).collect(),
            limits_concurrency: limited.iter().any(|k| k.concurrency.is_some()),
            limited,
            all,
        }
    }
}

impl Shared {
    /// The shared state of a worker that runs no service: what
    /// `jobq::testing` runs attempts with, through the very code a worker
    /// runs them with ([`execute`]). The receiver gets each attempt's
    /// [`Completion`], as the completer would.
    #[cfg(feature = "testing")]
    pub(crate) fn detached(
        pool: PgPool,
        worker_id: i64,
        registry: Registry,
        states: States,
    ) -> (Arc<Shared>, mpsc::Receiver<Completion>) {
        let (completions, rx) = mpsc::channel(1);
        let shared = Shared {
            pool,
            worker_id,
            kinds: ClaimKinds::new(&registry),
            registry,
            states: Arc::new(states),
            config: Config::default(),
            completions,
            stop_jobs: CancellationToken::new(),
            running: RunningJobs::default(),
            jobs: TaskTracker::new(),
            lease: Lease::default(),
        };
        (Arc::new(shared), rx)
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
