//! The worker's settings, and each service's part of them.

use std::time::Duration;

use super::Backoff;
use super::heartbeat::HeartbeatConfig;
use crate::error::{Error, Result};
use crate::maintenance::pruner::Retention;
use crate::maintenance::rescuer::RescuerConfig;

/// Tunables shared by the worker's services.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    pub lease_timeout: Duration,
    pub shutdown_grace: Duration,
    pub backoff: Backoff,
    pub default_timeout: Option<Duration>,
    pub cancel_grace: Duration,
    pub retention: Retention,
    /// How often the gauges are sampled.
    pub metrics_interval: Duration,
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
            cancel_grace: Duration::from_secs(1),
            retention: Retention::default(),
            metrics_interval: crate::metrics::sampler::DEFAULT_INTERVAL,
        }
    }
}

impl Config {
    /// The heartbeat's settings.
    pub(super) fn heartbeat(&self) -> HeartbeatConfig {
        HeartbeatConfig {
            interval: self.heartbeat_interval,
            lease: self.lease_timeout,
        }
    }

    /// The rescuer's settings.
    pub(super) fn rescuer(&self) -> RescuerConfig {
        RescuerConfig {
            lease: self.lease_timeout,
        }
    }

    /// Checks every service's settings.
    pub(super) fn validate(&self) -> Result<()> {
        if self.poll_interval.is_zero() {
            return Err(Error::Config(
                "the poll interval must be longer than zero".into(),
            ));
        }
        self.rescuer().validate()?;
        self.heartbeat().validate()?;
        crate::metrics::sampler::validate(self.metrics_interval)?;
        self.retention.validate()
    }
}
