//! The worker: one per process, running every queue it was given.
//!
//! Background services, each in its own file and each stopping on the shutdown
//! token: `fetch` (one producer per queue: claim, spawn), `execute` (one
//! attempt), `complete` (batched result writes), `listen` (LISTEN/NOTIFY
//! wake-ups), `heartbeat` (the worker's lease). The maintenance services
//! (lease rescuer, pruner) live in `crate::maintenance`, cron in
//! `crate::schedule`; the periodic ones run on `crate::service`'s driver.

mod complete;
pub(crate) mod conn;
pub(crate) mod execute;
mod fetch;
mod heartbeat;
mod listen;
mod running;

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
use crate::job::States;
use crate::maintenance::pruner::{Pruner, Retention};
use crate::maintenance::rescuer::{Rescuer, RescuerConfig};
use crate::queue::QueueName;
use crate::registry::Registry;
use crate::schedule::cron::{CronJob, CronService};
use crate::service::{self, supervised};
use crate::store;

pub(crate) use complete::Completion;
use heartbeat::{HeartbeatConfig, Lease};
use running::RunningJobs;

/// Concurrency of each queue the worker runs when none was named.
pub const DEFAULT_CONCURRENCY: usize = 10;

/// How long to wait before retrying a failed attempt: exponential in the
/// attempt number, capped, with jitter so that jobs failing together do not
/// retry together.
///
/// Attempt `n` (1 for the first) failing waits a random time between half and
/// all of `min(base * 2^(n-1), max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (before jitter).
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s after the first failure, doubling up to 1 hour.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The wait after attempt `attempt` (1-based) failed.
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let full = self.base.saturating_mul(1u32 << exp).min(self.max);
        // Jitter: uniformly in [full/2, full].
        full.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

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
}

/// Tunables shared by the worker's services.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    pub lease_timeout: Duration,
    pub shutdown_grace: Duration,
    pub backoff: Backoff,
    pub default_timeout: Option<Duration>,
    pub timeout_grace: Duration,
    pub retention: Retention,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            lease_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            backoff: Backoff::default(),
            default_timeout: None,
            timeout_grace: Duration::from_secs(1),
            retention: Retention::default(),
        }
    }
}

impl Config {
    /// The heartbeat's settings.
    fn heartbeat(&self) -> HeartbeatConfig {
        HeartbeatConfig {
            interval: self.heartbeat_interval,
            lease: self.lease_timeout,
        }
    }

    /// The rescuer's settings.
    fn rescuer(&self) -> RescuerConfig {
        RescuerConfig {
            lease: self.lease_timeout,
        }
    }

    /// Checks every service's settings.
    fn validate(&self) -> Result<()> {
        if self.poll_interval.is_zero() {
            return Err(Error::Config(
                "the poll interval must be longer than zero".into(),
            ));
        }
        self.heartbeat().validate()?;
        self.retention.validate()
    }
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
        } = self;
        let registry = match registry {
            Some(r) => r,
            None => crate::registry::registry()?,
        };
        if registry.is_empty() {
            return Err(Error::NoJobs);
        }
        for def in registry.jobs() {
            for req in def.requires.iter().filter_map(|r| r()) {
                if !states.contains(req.type_id) {
                    return Err(Error::MissingState {
                        job: def.name,
                        type_name: req.type_name,
                    });
                }
            }
        }
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

        // The cron jobs whose queue this worker runs: it enqueues their ticks.
        let cron_jobs = registry
            .jobs()
            .filter(|d| d.cron.is_some() && queues.contains_key(d.queue))
            .map(CronJob::new)
            .collect::<Result<Vec<_>>>()?;

        let queue_names: Vec<String> = queues.keys().cloned().collect();
        let host = hostname();
        let pid = std::process::id() as i32;
        let me = heartbeat::Identity {
            host,
            pid,
            queues: queue_names,
            lease_ms: config.heartbeat().lease_ms(),
        };
        let worker_id = store::register_worker(
            &pool,
            &store::WorkerRow {
                host: &me.host,
                pid,
                queues: &me.queues,
                lease_ms: me.lease_ms,
            },
        )
        .await?;
        tracing::info!(
            worker_id,
            queues = ?queues,
            jobs = ?registry.jobs().map(|d| d.name).collect::<Vec<_>>(),
            "jobq worker started"
        );

        let stop_fetching = CancellationToken::new();
        let stop_jobs = CancellationToken::new();
        let stop_services = CancellationToken::new();
        let (completions, completions_rx) = mpsc::channel(4096);
        let running = RunningJobs::default();
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            worker_id,
            kinds: registry.kinds(),
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
        // Woken by the completer after it writes a retry or a snooze.
        let rescans: HashMap<String, Arc<Notify>> = queues
            .keys()
            .map(|q| (q.clone(), Arc::new(Notify::new())))
            .collect();
        // The services, each stopping on `stop_services`; the completer
        // stops when `Completer::finish` closes it.
        let services = TaskTracker::new();
        let stop = &stop_services;
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
        if config.retention.prunes() {
            let (pool, retention) = (pool.clone(), config.retention);
            let start = move || Pruner::new(pool.clone(), retention);
            services.spawn(service::run(start, Pruner::every(&retention), stop.clone()));
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

/// What the worker's services share.
pub(crate) struct Shared {
    pub pool: PgPool,
    pub worker_id: i64,
    pub registry: Registry,
    pub kinds: Vec<String>,
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

/// A started worker, waiting to be shut down.
struct Running {
    shared: Arc<Shared>,
    stop_fetching: CancellationToken,
    stop_jobs: CancellationToken,
    stop_services: CancellationToken,
    producers: TaskTracker,
    services: TaskTracker,
    completer: complete::Completer,
}

impl Running {
    /// Stops claiming, lets running jobs finish within the grace period,
    /// interrupts the rest (they go back to `available`), writes every result,
    /// and removes the worker's row.
    async fn shutdown(self) -> Result<()> {
        let Running {
            shared,
            stop_fetching,
            stop_jobs,
            stop_services,
            producers,
            services,
            completer,
        } = self;
        let grace = shared.config.shutdown_grace;
        let running = shared.running.len();
        tracing::info!(running, ?grace, "jobq worker shutting down");
        stop_fetching.cancel();
        producers.wait().await;
        shared.jobs.close();
        if tokio::time::timeout(grace, shared.jobs.wait())
            .await
            .is_err()
        {
            let left = shared.running.len();
            tracing::warn!(
                left,
                "jobs still running after the shutdown grace period; interrupting them"
            );
            stop_jobs.cancel();
            shared.jobs.wait().await;
        }
        let worker_id = shared.worker_id;
        let pool = shared.pool.clone();
        drop(shared);
        // No job runs and no producer claims: every result has been sent.
        // They are retried through an outage, but not forever: past the
        // grace period the jobs stay `running` and are rescued after the lease.
        if !completer.finish(grace.max(Duration::from_secs(5))).await {
            tracing::error!(
                "could not record every result before exiting; those jobs will run again after \
                 their lease expires"
            );
        }
        stop_services.cancel();
        services.wait().await;
        if let Err(e) = store::deregister_worker(&pool, worker_id).await {
            tracing::warn!(error = %e, "could not remove the worker's row; its lease will expire");
        }
        tracing::info!("jobq worker stopped");
        Ok(())
    }
}

/// Installs SIGTERM and ctrl-c handlers; the future completes on either.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::Config(format!("cannot listen for signals: {e}")))
        };
        let mut term = listen(SignalKind::terminate())?;
        let mut int = listen(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("ctrl-c received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("ctrl-c received");
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
