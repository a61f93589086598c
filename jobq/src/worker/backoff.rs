//! How long a failed attempt waits before the job runs again.

use std::time::Duration;

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
