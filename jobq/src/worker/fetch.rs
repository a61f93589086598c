//! The producer of one queue: claims due jobs in batches with one statement,
//! keeps them in a small local buffer, and starts them as slots free.
//!
//! The buffer (prefetch) is what lets short jobs run at the database's batch
//! speed rather than one round trip per job; it is sized to about
//! [`PREFETCH_HORIZON`] of work at the rate jobs are being started, so slow
//! jobs are barely prefetched at all (they stay claimable by other workers)
//! and fast jobs are claimed hundreds at a time. Claimed jobs are `running`
//! for this worker while buffered; on shutdown the ones not started go back
//! to `available` untouched.
//!
//! Enqueues notify only queues a producer sleeps on. Before it sleeps, a
//! producer whose claim came back short takes its queue's wake lock and
//! claims once more ([`store::take_wake_lock`] says why that loses no job);
//! it lets the lock go when a claim comes back full, since a busy producer
//! claims again by itself.
//!
//! A producer that keeps up with a fast stream of enqueues would be woken by
//! every one of them, and each would pay for NOTIFY. So when notifications
//! come in quick succession ([`FAST_WAKES`] within [`FAST_WAKE`] of each
//! other), the producer lets the lock go and polls every [`FAST_POLL`]
//! instead, until [`QUIET_POLLS`] polls in a row find nothing: then the
//! stream is too slow for polling to pay, and every poll would add up to
//! [`FAST_POLL`] to a job's wait, so it sleeps on NOTIFY again.
//! A queue fed slowly is woken by NOTIFY as before.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::conn::HeldConn;
use super::outage::Outage;
use super::{Completion, Shared, execute};
use crate::store::{self, ClaimedJob, WakeLock};
use sqlx::PgConnection;

/// How much work, in time at the current start rate, the buffer holds.
const PREFETCH_HORIZON: Duration = Duration::from_millis(50);
/// The most jobs one claim takes (and the buffer holds beyond the slots).
const MAX_PREFETCH: usize = 1000;
/// How often the start rate is re-measured.
const RATE_WINDOW: Duration = Duration::from_millis(100);
/// How long a producer about to sleep waits for open enqueues to commit.
const WAKE_LOCK_WAIT: Duration = Duration::from_millis(20);
/// While an enqueue that did not notify stays open, the producer polls,
/// first after this long, doubling up to [`MAX_RECHECK`].
const FIRST_RECHECK: Duration = Duration::from_millis(1);
/// The longest poll while an enqueue that did not notify stays open.
const MAX_RECHECK: Duration = Duration::from_millis(100);
/// Notifications this close together count as a fast stream...
const FAST_WAKE: Duration = Duration::from_millis(2);
/// ...when this many come in a row.
const FAST_WAKES: u32 = 3;
/// How often a producer polls while the stream is fast.
const FAST_POLL: Duration = Duration::from_millis(1);
/// Polls in a row that find nothing before a producer stops polling.
const QUIET_POLLS: u32 = 3;

/// The producer's connection. The queue's wake lock is a session lock, so
/// it lives and dies with this connection.
struct ProducerConn {
    held: HeldConn,
    /// Whether this session holds the queue's wake lock.
    wake_lock: bool,
}

impl ProducerConn {
    async fn get(&mut self) -> sqlx::Result<&mut PgConnection> {
        self.held.get().await
    }

    /// Drops the connection after an error, and the wake lock with it.
    fn discard(&mut self) {
        self.held.discard();
        self.wake_lock = false;
    }

    /// Lets the queue's wake lock go (see [`store::release_wake_lock`]).
    /// On an error the session, and the lock with it, is dropped anyway.
    async fn release_wake_lock(&mut self, queue: &str, notify: bool) -> sqlx::Result<()> {
        let released = match self.get().await {
            Ok(c) => store::release_wake_lock(c, queue, notify).await,
            Err(e) => Err(e),
        };
        match released {
            Ok(()) => self.wake_lock = false,
            Err(_) => self.discard(),
        }
        released
    }
}

/// Jobs started per second, measured over [`RATE_WINDOW`]s, smoothed.
struct StartRate {
    per_s: f64,
    since: Instant,
    started: usize,
}

impl StartRate {
    fn record(&mut self, n: usize) {
        self.started += n;
        let elapsed = self.since.elapsed();
        if elapsed >= RATE_WINDOW {
            let now = self.started as f64 / elapsed.as_secs_f64();
            // Smoothed, except out of idleness: a backlog met at start-up or
            // after a quiet spell is claimed in full batches at once.
            self.per_s = if self.per_s < 1.0 {
                now
            } else {
                (self.per_s + now) / 2.0
            };
            self.started = 0;
            self.since = Instant::now();
        }
    }

    /// How many jobs beyond the free slots to hold.
    fn prefetch(&self) -> usize {
        ((self.per_s * PREFETCH_HORIZON.as_secs_f64()) as usize).min(MAX_PREFETCH)
    }
}

/// Starts the first buffered job on `slot`.
fn start(
    shared: &Arc<Shared>,
    queue: &str,
    buffer: &mut VecDeque<ClaimedJob>,
    slot: OwnedSemaphorePermit,
) {
    let job = buffer.pop_front().expect("checked non-empty");
    shared
        .jobs
        .spawn(execute::run(shared.clone(), queue.to_owned(), job, slot));
}

/// What wakes a sleeping producer besides its timer and free slots.
pub(super) struct Wakes {
    /// An enqueue's notification to the queue, through the listener.
    pub notified: Arc<Notify>,
    /// The completer wrote a retry or a snooze: claim again to learn when it
    /// is due.
    pub rescan: Arc<Notify>,
}

pub(super) async fn run(
    shared: Arc<Shared>,
    queue: String,
    concurrency: usize,
    wakes: Wakes,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut buffer: VecDeque<ClaimedJob> = VecDeque::new();
    let mut rate = StartRate {
        per_s: 0.0,
        since: Instant::now(),
        started: 0,
    };
    let mut outage = Outage::new("claim jobs");
    let mut conn = ProducerConn {
        held: HeldConn::new(shared.pool.clone()),
        wake_lock: false,
    };
    // Whether the last claim came back short: nothing more is due until a
    // notification, the next due time or the poll interval says otherwise.
    let mut exhausted = false;
    // Whether another producer sleeps on the queue's wake lock, so that
    // enqueues notify: then this one may sleep too, until the next wake-up.
    let mut covered = false;
    // Whether the last claim came back full while holding the wake lock:
    // more work is likely waiting, so let it go.
    let mut release = false;
    // Set while an enqueue that did not notify stays open: poll this soon.
    let mut recheck: Option<Duration> = None;
    // Fast-stream detection (see the module's doc), and whether to poll.
    let mut last_notified = Instant::now();
    let mut fast_wakes = 0;
    let mut fast = false;
    // Whether the last claim found any job, and how many in a row did not.
    let mut found = false;
    let mut empty_claims = 0;
    // When the queue's next future job is due, as of the last claim.
    let mut due_at: Option<Instant> = None;
    // Stamps of claims that failed in flight: they may have committed.
    let mut lost_claims: Vec<DateTime<Utc>> = Vec::new();
    let mut last_stamp = DateTime::<Utc>::MIN_UTC;
    while !stop.is_cancelled() {
        // Start buffered jobs on the free slots.
        let mut started = 0;
        while !buffer.is_empty() {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            start(&shared, &queue, &mut buffer, slot);
            started += 1;
        }
        rate.record(started);

        let running = concurrency - slots.available_permits();
        let capacity = concurrency + rate.prefetch();
        let room = capacity.saturating_sub(running + buffer.len());
        let idle_slot = running < concurrency && buffer.is_empty();
        // Claim when a slot would otherwise sit idle, or when half the
        // capacity is free, so claims come in batches.
        if !exhausted && room > 0 && (idle_slot || room * 2 >= capacity) {
            // Each claim is stamped (microseconds, unique per producer), so
            // one that failed in flight can be found and put back.
            let mut claim_at = Utc::now().trunc_subsecs(6);
            if claim_at <= last_stamp {
                claim_at = last_stamp + chrono::Duration::microseconds(1);
            }
            last_stamp = claim_at;
            // First put back what failed claims may have taken.
            if !lost_claims.is_empty() {
                let released = match conn.get().await {
                    Ok(c) => {
                        store::release_lost_claims(c, shared.worker_id, &queue, &lost_claims).await
                    }
                    Err(e) => Err(e),
                };
                match released {
                    Ok(n) => {
                        if n > 0 {
                            tracing::warn!(
                                jobs = n,
                                "put back jobs of a claim whose answer was lost"
                            );
                        }
                        lost_claims.clear();
                    }
                    Err(e) => {
                        conn.discard();
                        let wait = outage.failed(&e);
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(wait) => {}
                        }
                        continue;
                    }
                }
            }
            // Not raced against `stop`: jobs this claim takes are handled.
            // While it runs, buffered jobs keep starting as slots free, so
            // short jobs do not wait for the claim's round trip and commit.
            let claimed = match conn.get().await {
                Ok(c) => {
                    let claim = store::claim_batch(
                        c,
                        &queue,
                        &shared.kinds,
                        room as i64,
                        shared.worker_id,
                        claim_at,
                    );
                    tokio::pin!(claim);
                    // No job starts once the worker is stopping.
                    let mut starting = true;
                    loop {
                        tokio::select! {
                            biased;
                            claimed = &mut claim => break claimed,
                            slot = slots.clone().acquire_owned(),
                                if starting && !buffer.is_empty() =>
                            {
                                let slot = slot.expect("the semaphore is never closed");
                                if stop.is_cancelled() {
                                    starting = false;
                                } else {
                                    start(&shared, &queue, &mut buffer, slot);
                                    rate.record(1);
                                }
                            }
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match claimed {
                Ok(claim) => {
                    outage.recovered();
                    exhausted = claim.jobs.len() < room;
                    found = !claim.jobs.is_empty();
                    empty_claims = if found { 0 } else { empty_claims + 1 };
                    if empty_claims >= QUIET_POLLS {
                        fast = false;
                    }
                    release = conn.wake_lock && !exhausted;
                    // Counted from when the answer arrived, so the wait ends
                    // late by the claim's own time, never early.
                    due_at = claim.next_due.map(|d| Instant::now() + d);
                    buffer.extend(claim.jobs);
                }
                Err(e) => {
                    conn.discard();
                    lost_claims.push(claim_at);
                    let wait = outage.failed(&e);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
            continue;
        }

        // Here rather than right after a claim, so the jobs it took start
        // first.
        let polling = exhausted && fast;
        if polling {
            // A fast stream: poll rather than have every enqueue notify.
            if conn.wake_lock
                && let Err(e) = conn.release_wake_lock(&queue, false).await
            {
                outage.failed(&e);
            }
        } else if exhausted && !conn.wake_lock && !covered {
            let taken = match conn.get().await {
                Ok(c) => store::take_wake_lock(c, &queue, WAKE_LOCK_WAIT).await,
                Err(e) => Err(e),
            };
            match taken {
                Ok(WakeLock::Held) => {
                    // Claim once more: now it sees every job that was not
                    // announced.
                    conn.wake_lock = true;
                    exhausted = false;
                    recheck = None;
                    continue;
                }
                Ok(WakeLock::Covered) => {
                    covered = true;
                    recheck = None;
                }
                Ok(WakeLock::Busy) => {
                    let next = recheck.map_or(FIRST_RECHECK, |d| (d * 2).min(MAX_RECHECK));
                    recheck = Some(next);
                }
                Err(e) => {
                    conn.discard();
                    recheck = Some(outage.failed(&e));
                }
            }
        } else if release && !exhausted {
            if let Err(e) = conn.release_wake_lock(&queue, true).await {
                outage.failed(&e);
            }
            release = false;
        }

        // Nothing to do now: wait for a slot to free (when there is work to
        // give it), a notification, or the next due time / poll interval.
        let idle_sleep = if polling {
            FAST_POLL
        } else if exhausted {
            let mut sleep = recheck.unwrap_or(shared.config.poll_interval);
            // A claim that took jobs said when the next one is due; one that
            // took nothing could not.
            if !found {
                let due = match conn.get().await {
                    Ok(c) => store::next_due(c, &queue).await,
                    Err(e) => Err(e),
                };
                match due {
                    Ok(due) => due_at = due.map(|d| Instant::now() + d),
                    Err(e) => {
                        conn.discard();
                        sleep = sleep.min(outage.failed(&e));
                    }
                }
            }
            // Measured from now, after the wake lock and next-due round trips
            // above, so their time does not add to the wait.
            let now = Instant::now();
            due_at.map_or(sleep, |at| sleep.min(at.saturating_duration_since(now)))
        } else {
            shared.config.poll_interval
        };
        let has_work = !buffer.is_empty() || !exhausted;
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = wakes.notified.notified() => {
                exhausted = false;
                covered = false;
                fast_wakes = if last_notified.elapsed() < FAST_WAKE { fast_wakes + 1 } else { 0 };
                last_notified = Instant::now();
                if fast_wakes >= FAST_WAKES {
                    fast = true;
                    empty_claims = 0;
                }
            }
            _ = wakes.rescan.notified() => {
                exhausted = false;
                covered = false;
            }
            slot = slots.clone().acquire_owned(), if has_work => drop(slot),
            _ = tokio::time::sleep(idle_sleep), if exhausted => {
                exhausted = false;
                covered = false;
            }
        }
    }
    // The wake lock must not go back to the pool with the connection.
    if conn.wake_lock {
        let _ = conn.release_wake_lock(&queue, true).await;
    }
    // Shutting down: jobs claimed but never started go back untouched.
    for job in buffer {
        let returned = Completion {
            id: job.id,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            outcome: None,
        };
        if shared.completions.send(returned).await.is_err() {
            tracing::error!(
                job.id = job.id,
                "the completer stopped; the job will be rescued"
            );
        }
    }
}
