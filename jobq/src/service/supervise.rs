//! Keeps a background service running: a panic in it is logged and the
//! service started again after a pause, so that one bad value (a row the
//! service cannot read, a bug) never leaves a worker without its claims,
//! heartbeat or rescues while `run()` still looks healthy.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::worker::execute::panic_message;

/// Runs the service that `start` makes until it returns or `stop` fires,
/// starting it again after each panic: after 100 ms, doubling up to 6.4 s
/// while it keeps panicking.
pub(crate) async fn supervised<F, Fut>(name: &'static str, stop: CancellationToken, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut panics = 0u32;
    loop {
        let Err(panic) = AssertUnwindSafe(start()).catch_unwind().await else {
            return;
        };
        panics = panics.saturating_add(1);
        tracing::error!(
            service = name,
            panic = %panic_message(&*panic),
            panics,
            "a jobq service panicked; starting it again"
        );
        let pause = Duration::from_millis(100u64 << panics.min(6));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_service_that_panics_is_started_again() {
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        supervised("test", CancellationToken::new(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("start {n} panics");
                }
            }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_stop_ends_the_pause_after_a_panic() {
        let stop = CancellationToken::new();
        stop.cancel();
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        supervised("test", stop, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { panic!("always") }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}
