//! The shape every background service of a worker shares.
//!
//! - [`Outage`]: how a service lives through a database outage: one log line
//!   when it starts, one when it ends, a capped back-off between.
//! - [`supervised`]: a service that panics is logged and started again.
//! - [`listen`]: a LISTEN connection, connected again through an outage.
//! - [`run`]: the driver of a periodic service (heartbeat, rescuer, pruner,
//!   cron): wait, tick, back off through an outage, stop on the token, start
//!   again after a panic. A service is its tick body ([`Periodic`]) and a
//!   config with documented defaults and its own `validate`.
//!
//! A service that must run in one process at a time across workers (the
//! rescuer, the pruner) takes a [`store::Lock`](crate::store::Lock) in its
//! tick's transaction and answers [`Tick::Skipped`] when another process
//! holds it. The lock is taken with the work, not around it, so that it
//! is released when that work commits or rolls back, whatever happens to
//! the process.
//!
//! The producer (`worker::fetch`), the completer and the listener are not
//! periodic: they run on events, and use [`Outage`] and [`supervised`]
//! directly.

mod listener;
pub(crate) mod outage;
mod supervise;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub(crate) use listener::listen;
pub(crate) use outage::Outage;
pub(crate) use supervise::supervised;

/// When a periodic service ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Every {
    /// The wait between two ticks, and the longest wait after a failed one.
    pub interval: Duration,
    /// How much each wait varies, up or down, as a fraction of it (0: none;
    /// at most 1), so that workers started together do not tick together.
    pub jitter: f64,
    /// Whether the first tick runs at start rather than one wait in.
    pub at_start: bool,
}

impl Every {
    /// Every `interval`, the first tick one wait after start, no jitter.
    pub(crate) fn new(interval: Duration) -> Self {
        Every {
            interval,
            jitter: 0.0,
            at_start: false,
        }
    }

    /// The first tick runs at start.
    pub(crate) fn at_start(self) -> Self {
        Every {
            at_start: true,
            ..self
        }
    }

    /// `wait`, varied by the jitter.
    fn jittered(&self, wait: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return wait;
        }
        let j = self.jitter.min(1.0);
        wait.mul_f64(1.0 - j + fastrand::f64() * 2.0 * j)
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Done; the next tick comes one interval later.
    Done,
    /// Another process holds the service's lock and does the work; the next
    /// tick comes one interval later.
    Skipped,
    /// Done; the next tick comes after this wait instead (a cron job's next
    /// tick).
    After(Duration),
}

/// A periodic service: what it does each tick. Built afresh by [`run`]
/// after a panic.
pub(crate) trait Periodic: Send + 'static {
    /// Names the service in logs: "rescue lost jobs".
    const NAME: &'static str;

    /// Runs one tick. An error is an outage: logged once, and the tick is
    /// tried again after a back-off no longer than the interval. The tick
    /// may watch `stop` to end early, without error.
    fn tick(&mut self, stop: &CancellationToken)
    -> impl Future<Output = sqlx::Result<Tick>> + Send;

    /// After a failed tick: drops what the failure may have left unusable,
    /// such as a held connection.
    fn failed(&mut self) {}

    /// Completes when the service must tick before its wait is up (the
    /// heartbeat, when the worker's lease was found lost). Never, unless
    /// overridden.
    fn woken(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Runs the service that `start` builds on the schedule `every` until
/// `stop`, building it again after a panic (see [`supervised`]).
pub(crate) async fn run<S, F>(start: F, every: Every, stop: CancellationToken)
where
    S: Periodic,
    F: Fn() -> S + Send + 'static,
{
    supervised(S::NAME, stop.clone(), || {
        drive(start(), every, stop.clone())
    })
    .await
}

/// The loop of one life of a periodic service.
async fn drive<S: Periodic>(mut service: S, every: Every, stop: CancellationToken) {
    let mut outage = Outage::new(S::NAME);
    let mut wait = if every.at_start {
        Duration::ZERO
    } else {
        every.jittered(every.interval)
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = service.woken() => {}
        }
        if stop.is_cancelled() {
            return;
        }
        wait = match service.tick(&stop).await {
            Ok(tick) => {
                outage.recovered();
                match tick {
                    Tick::Done | Tick::Skipped => every.jittered(every.interval),
                    Tick::After(wait) => wait,
                }
            }
            Err(e) => {
                service.failed();
                outage.failed(&e).min(every.interval)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first two ticks, panics on its third, then stops the test.
    struct Flaky {
        ticks: Arc<AtomicU32>,
        stop: CancellationToken,
    }

    impl Periodic for Flaky {
        const NAME: &'static str = "flaky";

        async fn tick(&mut self, _: &CancellationToken) -> sqlx::Result<Tick> {
            match self.ticks.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(sqlx::Error::PoolTimedOut),
                2 => panic!("third tick"),
                _ => {
                    self.stop.cancel();
                    Ok(Tick::Done)
                }
            }
        }
    }

    #[tokio::test]
    async fn failures_back_off_and_a_panic_starts_the_service_again() {
        let ticks = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let (t, s) = (ticks.clone(), stop.clone());
        let every = Every::new(Duration::from_secs(60)).at_start();
        let started = std::time::Instant::now();
        run(
            move || Flaky {
                ticks: t.clone(),
                stop: s.clone(),
            },
            every,
            stop,
        )
        .await;
        assert_eq!(ticks.load(Ordering::SeqCst), 4);
        // Two back-offs (well under the interval), the pause after the
        // panic, and a tick at start again: far less than one interval.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let every = Every {
            jitter: 0.25,
            ..Every::new(Duration::from_secs(100))
        };
        for _ in 0..1000 {
            let w = every.jittered(every.interval);
            assert!(
                w >= Duration::from_secs(75) && w <= Duration::from_secs(125),
                "{w:?}"
            );
        }
    }
}
