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
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::conn::{HeldConn, bounded};
use super::outage::Outage;
use super::{Completion, Shared, execute};
use crate::store::{self, Backend, ClaimedJob, WakeLock};
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
/// The longest a claimed job waits in the buffer before it is handed back
/// for any worker to claim: the start rate the buffer was sized by no
/// longer holds (the queue's jobs got slower). Well under the time a
/// cancellation request for a buffered job is remembered.
const MAX_BUFFERED: Duration = Duration::from_secs(2);
/// How long a lost claim's session is given to end before the claim's jobs
/// are put back.
const TERMINATE_WAIT: Duration = Duration::from_secs(5);

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
            Ok(c) => bounded(store::release_wake_lock(c, queue, notify)).await,
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

    /// Forgets the measured rate: the buffer holds nothing beyond the free
    /// slots until the rate is measured again.
    fn reset(&mut self) {
        self.per_s = 0.0;
        self.started = 0;
        self.since = Instant::now();
    }

    /// How many jobs beyond the free slots to hold.
    fn prefetch(&self) -> usize {
        ((self.per_s * PREFETCH_HORIZON.as_secs_f64()) as usize).min(MAX_PREFETCH)
    }
}

/// A claimed job waiting in the buffer for a slot.
struct Buffered {
    job: ClaimedJob,
    /// The lease epoch read before the claim (see [`Lease`](super::heartbeat::Lease)).
    epoch: u64,
    /// When the claim's answer arrived.
    since: Instant,
}

/// A claim whose answer never arrived: it may still commit on its session.
struct LostClaim {
    /// The claim's stamp.
    at: DateTime<Utc>,
    /// The session it ran on, when known.
    backend: Option<Backend>,
}

/// What a producer holds, kept outside its loop so that a panic in the loop
/// loses none of it: the buffered jobs, the claims whose answer was lost,
/// the slots of the running jobs, and jobs to hand back.
struct Holdings {
    buffer: VecDeque<Buffered>,
    lost_claims: Vec<LostClaim>,
    slots: Arc<Semaphore>,
    /// Jobs not to start after all (the lease was lost since their claim,
    /// or they waited too long): handed back untouched.
    returning: Vec<ClaimedJob>,
}

impl Holdings {
    /// Whether the first buffered job is suspected of killing its worker
    /// (see [`store::SUSPECT_LOST_ATTEMPTS`]): it runs alone, on every slot.
    fn suspect_first(&self) -> bool {
        self.buffer
            .front()
            .is_some_and(|b| b.job.lost_attempts >= store::SUSPECT_LOST_ATTEMPTS)
    }
}

/// Starts the first buffered job on `slot`, unless the worker lost its
/// lease since the job was claimed: then it goes back, not started.
fn start(shared: &Arc<Shared>, queue: &str, held: &mut Holdings, slot: OwnedSemaphorePermit) {
    let next = held.buffer.pop_front().expect("checked non-empty");
    if next.epoch != shared.lease.epoch() {
        held.returning.push(next.job);
        return;
    }
    shared.jobs.spawn(execute::run(
        shared.clone(),
        queue.to_owned(),
        next.job,
        slot,
    ));
}

/// The result that hands a claimed job back untouched: it never started.
fn handed_back(job: &ClaimedJob) -> Completion {
    Completion {
        id: job.id,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        outcome: None,
    }
}

/// Hands jobs back through the completer, which writes them with their
/// attempt's fence: a job the rescuer took back meanwhile is left alone.
async fn hand_back(shared: &Shared, jobs: impl IntoIterator<Item = ClaimedJob>) {
    for job in jobs {
        if shared.completions.send(handed_back(&job)).await.is_err() {
            tracing::error!(
                job.id = job.id,
                "the completer stopped; the job will be rescued"
            );
        }
    }
}

/// Puts back the jobs of lost claims, once the sessions that ran those
/// claims are gone: ended with `pg_terminate_backend`, or, where this role
/// may not end them, waited for (a lost session ends by itself once its
/// statement is over, and `statement_timeout` bounds that).
async fn release_lost(
    conn: &mut PgConnection,
    worker_id: i64,
    queue: &str,
    lost: &[LostClaim],
) -> sqlx::Result<u64> {
    let mut backends: Vec<Backend> = lost.iter().filter_map(|l| l.backend).collect();
    backends.dedup();
    for backend in backends {
        match bounded(store::terminate(conn, backend, TERMINATE_WAIT)).await {
            Ok(_) => {}
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501") => {
                let deadline = Instant::now() + super::conn::CLIENT_TIMEOUT;
                while bounded(store::backend_exists(conn, backend)).await? {
                    if Instant::now() > deadline {
                        return Err(sqlx::Error::Protocol(format!(
                            "the session of a lost claim (pid {}) is still running",
                            backend.pid
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let stamps: Vec<DateTime<Utc>> = lost.iter().map(|l| l.at).collect();
    bounded(store::release_lost_claims(conn, worker_id, queue, &stamps)).await
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
    let mut held = Holdings {
        buffer: VecDeque::new(),
        lost_claims: Vec::new(),
        slots: Arc::new(Semaphore::new(concurrency)),
        returning: Vec::new(),
    };
    let mut panics = 0u32;
    loop {
        let produced = AssertUnwindSafe(produce(
            &shared,
            &queue,
            concurrency,
            &wakes,
            &stop,
            &mut held,
        ))
        .catch_unwind()
        .await;
        let Err(panic) = produced else { break };
        panics = panics.saturating_add(1);
        tracing::error!(
            queue,
            panic = %execute::panic_message(&*panic),
            panics,
            "the jobq producer panicked; handing back its buffered jobs and restarting it"
        );
        let buffered: Vec<ClaimedJob> = held.buffer.drain(..).map(|b| b.job).collect();
        hand_back(&shared, held.returning.drain(..).chain(buffered)).await;
        let pause = Duration::from_millis(100u64 << panics.min(6));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    // Stopping: claims whose answer was lost are put back, and so are the
    // jobs claimed but never started, untouched.
    if !held.lost_claims.is_empty() {
        let mut conn = HeldConn::new(shared.pool.clone());
        let released = match conn.get().await {
            Ok(c) => release_lost(c, shared.worker_id, &queue, &held.lost_claims).await,
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(
                error = %e,
                "could not put back the jobs of a lost claim; they will be rescued after the lease"
            );
        }
    }
    let buffered: Vec<ClaimedJob> = held.buffer.drain(..).map(|b| b.job).collect();
    hand_back(&shared, held.returning.drain(..).chain(buffered)).await;
}

/// The producer's loop, until `stop`.
async fn produce(
    shared: &Arc<Shared>,
    queue: &str,
    concurrency: usize,
    wakes: &Wakes,
    stop: &CancellationToken,
    held: &mut Holdings,
) {
    let shared = shared.clone();
    let queue = queue.to_owned();
    let slots = held.slots.clone();
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
    // How many claims in a row found no job.
    let mut empty_claims = 0;
    // When the queue's next future job is due, as of the last claim.
    let mut due_at: Option<Instant> = None;
    let mut last_stamp = DateTime::<Utc>::MIN_UTC;
    while !stop.is_cancelled() {
        // Start buffered jobs on the free slots.
        let mut started = 0;
        while !held.buffer.is_empty() {
            // A suspect waits for every running job to end and holds every
            // slot while it runs: if it kills the worker, it is alone.
            let need = if held.suspect_first() {
                u32::try_from(concurrency).unwrap_or(u32::MAX)
            } else {
                1
            };
            let Ok(slot) = slots.clone().try_acquire_many_owned(need) else {
                break;
            };
            start(&shared, &queue, held, slot);
            started += 1;
        }
        rate.record(started);
        // Jobs that waited too long in the buffer go back for any worker to
        // claim, and the buffer is sized afresh.
        if held
            .buffer
            .front()
            .is_some_and(|b| b.since.elapsed() > MAX_BUFFERED)
        {
            held.returning.extend(held.buffer.drain(..).map(|b| b.job));
            rate.reset();
        }
        if !held.returning.is_empty() {
            hand_back(&shared, std::mem::take(&mut held.returning)).await;
        }

        let running = concurrency - slots.available_permits();
        let capacity = concurrency + rate.prefetch();
        let room = capacity.saturating_sub(running + held.buffer.len());
        let idle_slot = running < concurrency && held.buffer.is_empty();
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
            if !held.lost_claims.is_empty() {
                let released = match conn.get().await {
                    Ok(c) => release_lost(c, shared.worker_id, &queue, &held.lost_claims).await,
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
                        held.lost_claims.clear();
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
            // While the claim runs, buffered jobs keep starting as slots
            // free, so short jobs do not wait for its round trip and commit.
            // A stop abandons the claim: it is put back as a lost one.
            let epoch = shared.lease.epoch();
            let claimed = match conn.get().await {
                Ok(c) => {
                    let claim = bounded(store::claim_batch(
                        c,
                        &queue,
                        &shared.kinds,
                        room as i64,
                        shared.worker_id,
                        claim_at,
                    ));
                    tokio::pin!(claim);
                    loop {
                        tokio::select! {
                            biased;
                            claimed = &mut claim => break Some(claimed),
                            _ = stop.cancelled() => break None,
                            slot = slots.clone().acquire_owned(),
                                if !held.buffer.is_empty() && !held.suspect_first() =>
                            {
                                let slot = slot.expect("the semaphore is never closed");
                                start(&shared, &queue, held, slot);
                                rate.record(1);
                            }
                        }
                    }
                }
                Err(e) => Some(Err(e)),
            };
            match claimed {
                Some(Ok(claim)) => {
                    outage.recovered();
                    if !claim.alive {
                        // Taken for dead: the heartbeat registers the worker
                        // again; until then claims take nothing.
                        shared.lease.lost();
                    }
                    exhausted = claim.jobs.len() < room && claim.promoted == 0;
                    empty_claims = if claim.jobs.is_empty() {
                        empty_claims + 1
                    } else {
                        0
                    };
                    if empty_claims >= QUIET_POLLS {
                        fast = false;
                    }
                    release = conn.wake_lock && !exhausted;
                    // Counted from when the answer arrived, so the wait ends
                    // late by the claim's own time, never early.
                    let now = Instant::now();
                    due_at = claim.next_due.map(|d| now + d);
                    held.buffer
                        .extend(claim.jobs.into_iter().map(|job| Buffered {
                            job,
                            epoch,
                            since: now,
                        }));
                }
                lost => {
                    held.lost_claims.push(LostClaim {
                        at: claim_at,
                        backend: conn.held.backend(),
                    });
                    conn.discard();
                    if let Some(Err(e)) = lost {
                        let wait = outage.failed(&e);
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(wait) => {}
                        }
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
                Ok(c) => bounded(store::take_wake_lock(c, &queue, WAKE_LOCK_WAIT)).await,
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
            let sleep = recheck.unwrap_or(shared.config.poll_interval);
            // Measured from now, after the wake lock round trips above, so
            // their time does not add to the wait.
            let now = Instant::now();
            due_at.map_or(sleep, |at| sleep.min(at.saturating_duration_since(now)))
        } else {
            shared.config.poll_interval
        };
        let has_work = !held.buffer.is_empty() || !exhausted;
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
}
