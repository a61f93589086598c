//! The producer of one queue: claims due jobs in batches with one statement,
//! keeps them in a small local buffer, and starts them as slots free.
//!
//! The buffer (prefetch) is what lets short jobs run at the database's batch
//! speed rather than one round trip per job; it is sized to about
//! [`PREFETCH_HORIZON`](buffer::PREFETCH_HORIZON) of work at the rate jobs
//! are being started, so slow jobs are barely prefetched at all (they stay
//! claimable by other workers) and fast jobs are claimed hundreds at a time.
//! Claimed jobs are `running` for this worker while buffered; on shutdown
//! the ones not started go back to `available` untouched.
//!
//! Enqueues notify only queues a producer sleeps on. Before it sleeps, a
//! producer whose claim came back short takes its queue's wake lock and
//! claims once more ([`store::take_wake_lock`] says why that loses no job);
//! it lets the lock go when a claim comes back full, since a busy producer
//! claims again by itself.
//!
//! A producer that keeps up with a fast stream of enqueues would be woken by
//! every one of them, and each would pay for NOTIFY. So when notifications
//! come in quick succession ([`FAST_WAKES`](state::FAST_WAKES) within
//! [`FAST_WAKE`](state::FAST_WAKE) of each other), the producer lets the
//! lock go and polls every [`FAST_POLL`](state::FAST_POLL) instead, until
//! [`QUIET_POLLS`](state::QUIET_POLLS) polls in a row find nothing: then the
//! stream is too slow for polling to pay, and every poll would add up to
//! [`FAST_POLL`](state::FAST_POLL) to a job's wait, so it sleeps on NOTIFY
//! again.
//! A queue fed slowly is woken by NOTIFY as before.
//!
//! The protocol is a state type, [`state::Producer`]: each answer and
//! wake-up is a transition, and it says what to do next. This module is
//! its driver, which does the I/O those actions ask for; [`buffer`] holds
//! the claimed jobs and sizes the buffer.

mod buffer;
mod state;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use self::buffer::{Holdings, LostClaim, StartRate};
use self::state::{Action, ClaimReport, Producer};
use super::conn::{HeldConn, bounded};
use super::outage::Outage;
use super::{ClaimKinds, Completion, Shared, execute};
use crate::store::{self, Backend, ClaimedJob};
use sqlx::PgConnection;

/// How long a producer about to sleep waits for open enqueues to commit.
const WAKE_LOCK_WAIT: Duration = Duration::from_millis(20);
/// How long a lost claim's session is given to end before the claim's jobs
/// are put back.
const TERMINATE_WAIT: Duration = Duration::from_secs(5);
/// How soon a producer whose claim a concurrency limit held back claims
/// again (a slot frees when any worker's attempt ends, which this worker
/// does not hear of; its own attempts' ends wake it at once).
pub(crate) const LIMIT_RECHECK: Duration = Duration::from_millis(10);

/// What wakes a sleeping producer besides its timer and free slots.
pub(super) struct Wakes {
    /// An enqueue's notification to the queue, through the listener.
    pub notified: Arc<Notify>,
    /// The completer wrote something this producer should claim again for.
    pub rescan: Arc<Rescan>,
}

/// The completer's wake of one queue's producer.
#[derive(Debug, Default)]
pub(crate) struct Rescan {
    notify: Notify,
    /// A limit was in play in the producer's last claim: a limited kind
    /// or queue, whose slots this worker's ended attempts may free.
    held: AtomicBool,
}

impl Rescan {
    /// After the completer wrote a batch: wakes the producer if the batch
    /// holds a retry or a snooze (`retried`: claim again to learn when it
    /// is due), or if a limit held its last claim back (this worker's ended
    /// attempts may have freed what it waits for). Other producers sleep on.
    pub(crate) fn after_write(&self, retried: bool) {
        if retried || self.held.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    queue: String,
    concurrency: usize,
    wakes: Wakes,
    stop: CancellationToken,
) {
    let mut held = Holdings::new(concurrency);
    let mut panics = 0u32;
    loop {
        let produced = AssertUnwindSafe(produce(&shared, &queue, &wakes, &stop, &mut held))
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
        hand_back(&shared, held.drain_all()).await;
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
    hand_back(&shared, held.drain_all()).await;
}

/// One run of a producer's loop, until `stop`: it does what its
/// [`Producer`] asks and reports back.
struct Driver<'a> {
    shared: &'a Arc<Shared>,
    queue: &'a str,
    /// Told after each claim whether a limit held it back.
    rescan: &'a Rescan,
    held: &'a mut Holdings,
    rate: StartRate,
    outage: Outage,
    /// The producer's connection. The queue's wake lock is a session lock,
    /// so it lives and dies with this connection.
    conn: HeldConn,
    producer: Producer,
    /// Whether the queue has a limit of its own, as the last claim said.
    queue_limited: bool,
    /// Whether limited jobs may be waiting for this worker's own slots: a
    /// slot that frees then calls for a claim.
    limited_wait: bool,
}

/// The producer's loop, until `stop`.
async fn produce(
    shared: &Arc<Shared>,
    queue: &str,
    wakes: &Wakes,
    stop: &CancellationToken,
    held: &mut Holdings,
) {
    let now = Instant::now();
    let mut driver = Driver {
        shared,
        queue,
        rescan: &wakes.rescan,
        held,
        rate: StartRate::new(now),
        outage: Outage::new("claim jobs"),
        conn: HeldConn::generic_plans(shared.pool.clone()),
        producer: Producer::new(shared.config.poll_interval, now),
        queue_limited: false,
        limited_wait: false,
    };
    loop {
        if stop.is_cancelled() {
            driver.producer.on_stop();
        }
        driver.start_ready().await;
        let room = driver.held.room(driver.prefetch());
        match driver.producer.next_action(room) {
            Action::Stop => break,
            Action::Claim { room } => driver.claim(room, stop).await,
            Action::TakeWakeLock => driver.take_wake_lock().await,
            Action::ReleaseWakeLock { notify } => driver.release_wake_lock(notify).await,
            Action::Pause { until } => {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep_until(until.into()) => driver.producer.on_timer(),
                }
            }
            Action::Wait { until, slot } => {
                // Wait for the slots the next job needs, not one: a suspect
                // waits for every running job to end.
                let need = driver.held.slots_needed();
                let slots = driver.held.slots.clone();
                let timer = until.unwrap_or(now);
                let limited_wait = driver.limited_wait;
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = wakes.notified.notified() => driver.producer.on_notified(Instant::now()),
                    _ = wakes.rescan.notify.notified() => driver.producer.on_rescan(),
                    slot = slots.acquire_many_owned(need), if slot || limited_wait => {
                        drop(slot);
                        if limited_wait {
                            // A slot for a limited job that waits.
                            driver.limited_wait = false;
                            driver.producer.on_rescan();
                        }
                    }
                    _ = tokio::time::sleep_until(timer.into()), if until.is_some() => {
                        driver.producer.on_timer();
                    }
                }
            }
        }
    }
}

impl Driver<'_> {
    /// How many jobs beyond the free slots a claim may take: none when
    /// every job this producer claims is claimed only for a free slot (the
    /// queue has a limit, or every kind has limits and one a concurrency
    /// limit: see [`ClaimKinds::limits_concurrency`]). With every slot
    /// busy, such a producer then waits for a slot to free instead of
    /// making a claim that could take nothing.
    fn prefetch(&self) -> usize {
        let kinds = &self.shared.kinds;
        let slots_only =
            self.queue_limited || (kinds.unlimited.is_empty() && kinds.limits_concurrency);
        if slots_only { 0 } else { self.rate.prefetch() }
    }

    /// Starts buffered jobs on the free slots; hands back those that waited
    /// too long in the buffer or were claimed under an older lease.
    async fn start_ready(&mut self) {
        let mut started = 0;
        while !self.held.buffer.is_empty() {
            let need = self.held.slots_needed();
            let Ok(slot) = self.held.slots.clone().try_acquire_many_owned(need) else {
                break;
            };
            start(self.shared, self.queue, self.held, slot);
            started += 1;
        }
        let now = Instant::now();
        self.rate.record(started, now);
        // Jobs that waited too long in the buffer go back for any worker to
        // claim, and the buffer is sized afresh.
        if self.held.expire(now) {
            self.rate.reset(now);
        }
        if !self.held.returning.is_empty() {
            hand_back(self.shared, std::mem::take(&mut self.held.returning)).await;
        }
    }

    /// Claims up to `room` jobs, first putting back what failed claims may
    /// have taken.
    async fn claim(&mut self, room: usize, stop: &CancellationToken) {
        if !self.held.lost_claims.is_empty() {
            let released = match self.conn.get().await {
                Ok(c) => {
                    release_lost(c, self.shared.worker_id, self.queue, &self.held.lost_claims).await
                }
                Err(e) => Err(e),
            };
            match released {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(jobs = n, "put back jobs of a claim whose answer was lost");
                    }
                    self.held.lost_claims.clear();
                }
                Err(e) => {
                    self.conn.discard();
                    let wait = self.outage.failed(&e);
                    self.producer.on_failure(wait, Instant::now());
                    return;
                }
            }
        }
        // Limited jobs are claimed only for slots free now: one held in the
        // buffer would hold its limit's slot without running.
        let idle = self
            .held
            .slots
            .available_permits()
            .saturating_sub(self.held.buffer.len());
        let claim_at = self.producer.stamp(Utc::now());
        // While the claim runs, buffered jobs keep starting as slots free,
        // so short jobs do not wait for its round trip and commit. A stop
        // abandons the claim: it is put back as a lost one.
        let epoch = self.shared.lease.epoch();
        let claimed = match self.conn.get().await {
            Ok(c) => {
                let claim = bounded(claim_all(
                    c,
                    ClaimAsk {
                        queue: self.queue,
                        kinds: &self.shared.kinds,
                        room,
                        idle,
                        queue_limited: self.queue_limited,
                        backlog: self.producer.backlog(),
                        worker_id: self.shared.worker_id,
                        claim_at,
                    },
                ));
                tokio::pin!(claim);
                let slots = self.held.slots.clone();
                loop {
                    tokio::select! {
                        biased;
                        claimed = &mut claim => break Some(claimed),
                        _ = stop.cancelled() => break None,
                        slot = slots.clone().acquire_owned(),
                            if !self.held.buffer.is_empty() && !self.held.suspect_first() =>
                        {
                            let slot = slot.expect("the semaphore is never closed");
                            start(self.shared, self.queue, self.held, slot);
                            self.rate.record(1, Instant::now());
                        }
                    }
                }
            }
            Err(e) => Some(Err(e)),
        };
        match claimed {
            Some(Ok((claim, limited_wait))) => {
                self.outage.recovered();
                self.queue_limited = claim.queue_limited;
                self.limited_wait = limited_wait;
                // A limit in play may hold the next claim back even when it
                // held none of this one (a claim that took a limit's last
                // slots reports nothing held): this worker's ended attempts
                // free such slots, so its writes wake this producer.
                let limits_in_play = claim.held.is_some()
                    || claim.queue_limited
                    || !self.shared.kinds.limited.is_empty();
                self.rescan.held.store(limits_in_play, Ordering::Relaxed);
                // Held back by a limit: claim again when a rate permit
                // frees (counted from the claim's stamp, so the round trip
                // does not add to the wait), or soon for a concurrency slot.
                let since_stamp = (Utc::now() - claim_at).to_std().unwrap_or_default();
                let held = claim.held.map(|h| {
                    if h.is_zero() {
                        LIMIT_RECHECK
                    } else {
                        h.saturating_sub(since_stamp).max(Duration::from_millis(1))
                    }
                });
                let next_due = match (claim.next_due, held) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if !claim.alive {
                    // Taken for dead: the heartbeat registers the worker
                    // again; until then claims take nothing.
                    self.shared.lease.lost();
                }
                let now = Instant::now();
                self.producer.on_claim(
                    ClaimReport {
                        asked: room,
                        got: claim.jobs.len(),
                        promoted: claim.promoted,
                        next_due,
                    },
                    now,
                );
                self.held.buffer_claimed(claim.jobs, epoch, now);
            }
            lost => {
                self.held.lost_claims.push(LostClaim {
                    at: claim_at,
                    backend: self.conn.backend(),
                });
                self.conn.discard();
                match lost {
                    Some(Err(e)) => {
                        let wait = self.outage.failed(&e);
                        self.producer.on_failure(wait, Instant::now());
                    }
                    _ => self.producer.on_claim_lost(),
                }
            }
        }
    }

    /// Takes the queue's wake lock before sleeping (see
    /// [`store::take_wake_lock`]).
    async fn take_wake_lock(&mut self) {
        let taken = match self.conn.get().await {
            Ok(c) => bounded(store::take_wake_lock(c, self.queue, WAKE_LOCK_WAIT)).await,
            Err(e) => Err(e),
        };
        let taken = taken.map_err(|e| {
            self.conn.discard();
            self.outage.failed(&e)
        });
        self.producer.on_wake_lock(taken, Instant::now());
    }

    /// Lets the queue's wake lock go (see [`store::release_wake_lock`]).
    /// On an error the session, and the lock with it, is dropped anyway.
    async fn release_wake_lock(&mut self, notify: bool) {
        let released = match self.conn.get().await {
            Ok(c) => bounded(store::release_wake_lock(c, self.queue, notify)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            self.conn.discard();
            self.outage.failed(&e);
        }
        self.producer.on_wake_lock_released(Instant::now());
    }
}

/// Starts the first buffered job on `slot`, unless the worker lost its
/// lease since the job was claimed: then it goes back, not started.
fn start(shared: &Arc<Shared>, queue: &str, held: &mut Holdings, slot: OwnedSemaphorePermit) {
    if let Some(job) = held.take_next(shared.lease.epoch()) {
        shared
            .jobs
            .spawn(execute::run(shared.clone(), queue.to_owned(), job, slot));
    }
}

/// Hands jobs back through the completer, which writes them with their
/// attempt's fence: a job the rescuer took back meanwhile is left alone.
async fn hand_back(shared: &Shared, jobs: impl IntoIterator<Item = ClaimedJob>) {
    for job in jobs {
        if shared
            .completions
            .send(Completion::handed_back(&job))
            .await
            .is_err()
        {
            tracing::error!(
                job.id = job.id,
                "the completer stopped; the job will be rescued"
            );
        }
    }
}

/// What one claim asks for.
pub(crate) struct ClaimAsk<'a> {
    pub queue: &'a str,
    pub kinds: &'a ClaimKinds,
    /// How many jobs it may take, prefetch included.
    pub room: usize,
    /// How many slots are free now: limited jobs are taken only for those.
    pub idle: usize,
    /// Whether the queue had a limit of its own at the last claim.
    pub queue_limited: bool,
    /// Whether the last claim took all it asked for (see
    /// [`store::CLAIM_SQL`]'s `$6`).
    pub backlog: bool,
    pub worker_id: i64,
    pub claim_at: DateTime<Utc>,
}

/// Claims with the plain claim for kinds without limits, and with the
/// limited claim for kinds with limits (or every kind, when the queue has a
/// limit of its own), in that order, both stamped `claim_at`. A worker
/// without limited kinds makes the plain claim alone, as before limits
/// existed. Also says whether limited jobs may wait for this worker's own
/// slots (its idle slots bounded the limited claim).
pub(crate) async fn claim_all(
    conn: &mut PgConnection,
    ask: ClaimAsk<'_>,
) -> sqlx::Result<(store::Claim, bool)> {
    if ask.queue_limited {
        return limited_claim(conn, &ask, &ask.kinds.all, ask.idle, None).await;
    }
    let has_limited = !ask.kinds.limited.is_empty();
    if ask.kinds.unlimited.is_empty() && has_limited {
        return limited_claim(conn, &ask, &ask.kinds.limited, limited_room(&ask, 0), None).await;
    }
    let plain = store::claim_batch(
        conn,
        ask.queue,
        &ask.kinds.unlimited,
        ask.room as i64,
        ask.worker_id,
        ask.claim_at,
        ask.backlog,
    )
    .await?;
    if plain.queue_limited {
        // The queue got a limit: the plain claim took nothing.
        return limited_claim(conn, &ask, &ask.kinds.all, ask.idle, Some(plain)).await;
    }
    if !has_limited {
        return Ok((plain, false));
    }
    let room = limited_room(&ask, plain.jobs.len());
    limited_claim(conn, &ask, &ask.kinds.limited, room, Some(plain)).await
}

/// The room left for limited kinds after the plain claim took `got` jobs:
/// only free slots under a concurrency limit (see `limits_concurrency`).
fn limited_room(ask: &ClaimAsk<'_>, got: usize) -> usize {
    let room = ask.room.saturating_sub(got);
    if ask.kinds.limits_concurrency {
        room.min(ask.idle.saturating_sub(got))
    } else {
        room
    }
}

/// The limited claim of up to `room` jobs of `kinds`, for `ask`, merged
/// into `plain`, the plain claim of the same round when one ran (which then
/// made the due jobs available and read the next due time, so the limited
/// claim does neither again). With no room left, nothing could be taken:
/// no round trip, and the answer says that limited jobs may wait for a
/// slot. Also says whether the room bounded what was taken.
async fn limited_claim(
    conn: &mut PgConnection,
    ask: &ClaimAsk<'_>,
    kinds: &[store::LimitedKind],
    room: usize,
    plain: Option<store::Claim>,
) -> sqlx::Result<(store::Claim, bool)> {
    if room == 0 {
        let claim = plain.unwrap_or_else(|| store::Claim::nothing(ask.queue_limited));
        return Ok((claim, true));
    }
    let limited = store::claim_limited(
        conn,
        ask.queue,
        kinds,
        room as i64,
        ask.worker_id,
        ask.claim_at,
        plain.is_some(),
    )
    .await?;
    let bounded_by_slots = limited.jobs.len() >= room;
    let Some(mut plain) = plain else {
        return Ok((limited, bounded_by_slots));
    };
    plain.jobs.extend(limited.jobs);
    plain
        .jobs
        .sort_by_key(|j| (j.priority, j.scheduled_at, j.id));
    plain.promoted += limited.promoted;
    plain.alive &= limited.alive;
    plain.queue_limited = limited.queue_limited;
    plain.held = limited.held;
    Ok((plain, bounded_by_slots))
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
