//! The producer of one queue: claims as many due jobs as it has free slots, in
//! one statement, and spawns each; then waits for a free slot, or when idle
//! for a notification, the next future job's due time, or the poll interval.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::outage::Outage;
use super::{Shared, execute};
use crate::store;

pub(super) async fn run(
    shared: Arc<Shared>,
    queue: String,
    concurrency: usize,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut outage = Outage::new("claim jobs");
    loop {
        let mut permit = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => p.expect("the slot semaphore is never closed"),
        };
        // Every free slot, so one claim fills them all.
        let free = slots.available_permits();
        if free > 0
            && let Ok(more) = slots.clone().try_acquire_many_owned(free as u32)
        {
            permit.merge(more);
        }
        let want = permit.num_permits();
        // Not raced against `stop`: jobs this claim takes must run.
        let claimed = store::claim_batch(
            &shared.pool,
            &queue,
            &shared.kinds,
            want as i64,
            shared.worker_id,
        )
        .await;
        let got = match claimed {
            Ok(jobs) => {
                outage.recovered();
                let got = jobs.len();
                for job in jobs {
                    let one = permit.split(1).expect("one slot per claimed job");
                    shared
                        .jobs
                        .spawn(execute::run(shared.clone(), queue.clone(), job, one));
                }
                got
            }
            Err(e) => {
                drop(permit);
                let wait = outage.failed(&e);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        drop(permit);
        if got == want {
            // Full claim: more may be due; go again as soon as a slot frees.
            continue;
        }
        // Idle: sleep until a notification, the next future job's due time,
        // or the poll interval, whichever comes first.
        let mut sleep = shared.config.poll_interval;
        match store::next_due(&shared.pool, &queue).await {
            Ok(Some(due)) => sleep = sleep.min(due),
            Ok(None) => {}
            Err(e) => sleep = sleep.min(outage.failed(&e)),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
