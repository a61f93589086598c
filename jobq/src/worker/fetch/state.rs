//! The producer's protocol as a state type: what it does next, and how each
//! answer or wake-up moves it on. No I/O and no clock here: the driver in
//! [`super`] does the I/O and passes every `Instant` in, so each transition
//! is tested without a database or a runtime.
//!
//! The phases ([`Phase`]), and what moves a producer between them:
//!
//! ```text
//! from                  on                                  to
//! Claiming              a full claim, or one that promoted  Claiming
//!                       a short claim, in a fast stream     FastPolling
//!                       a short claim, wake lock held       Sleeping
//!                       a short claim                       TakingWakeLock
//!                       a failed claim                      BackingOff
//! TakingWakeLock        Held (claim once more)              Claiming
//!                       Covered, Busy, an error             Sleeping
//! FastPolling, Sleeping a notification, a rescan, the timer Claiming
//! BackingOff            the timer                           Claiming
//! any                   the stop                            Stopping
//! ```
//!
//! The wake lock is not a phase of its own: a producer holds it while it
//! sleeps, but also while it claims once more after taking it, and while it
//! claims full batches until it finds the moment to let it go.

use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};

use super::buffer::Room;
use crate::store::WakeLock;

/// While an enqueue that did not notify stays open, the producer polls,
/// first after this long, doubling up to [`MAX_RECHECK`].
pub(super) const FIRST_RECHECK: Duration = Duration::from_millis(1);
/// The longest poll while an enqueue that did not notify stays open.
pub(super) const MAX_RECHECK: Duration = Duration::from_millis(100);
/// Notifications this close together count as a fast stream...
pub(super) const FAST_WAKE: Duration = Duration::from_millis(2);
/// ...when this many come in a row.
pub(super) const FAST_WAKES: u32 = 3;
/// How often a producer polls while the stream is fast.
pub(super) const FAST_POLL: Duration = Duration::from_millis(1);
/// Polls in a row that find nothing before a producer stops polling.
pub(super) const QUIET_POLLS: u32 = 3;

/// Where a producer is in its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Jobs may be due: claim whenever there is room worth claiming.
    Claiming,
    /// The last claim came back short and nothing announces new jobs: take
    /// the queue's wake lock before sleeping.
    TakingWakeLock,
    /// A fast stream of enqueues: poll at `until` rather than have every
    /// enqueue notify (the wake lock is let go first).
    FastPolling { until: Instant },
    /// Nothing due: sleep until a notification, a rescan, or `until` (the
    /// poll interval, a recheck, or the next job's due time).
    Sleeping { until: Instant },
    /// A claim failed: no I/O until `until`, then claim again.
    BackingOff { until: Instant },
    /// The worker stops: let the wake lock go, then end.
    Stopping,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Claim up to `room` jobs, then report with [`Producer::on_claim`],
    /// [`Producer::on_claim_lost`] or [`Producer::on_failure`].
    Claim { room: usize },
    /// Take the queue's wake lock, then report with
    /// [`Producer::on_wake_lock`].
    TakeWakeLock,
    /// Let the wake lock go (telling the queue's other producers to look
    /// again with `notify`), then report with
    /// [`Producer::on_wake_lock_released`].
    ReleaseWakeLock { notify: bool },
    /// Wait for a notification, a rescan, the timer at `until` (if any),
    /// or, with `slot`, for the slots the next buffered job needs.
    Wait { until: Option<Instant>, slot: bool },
    /// Wait until `until` or the stop, then [`Producer::on_timer`].
    Pause { until: Instant },
    /// End the loop: nothing is held on the producer's connection.
    Stop,
}

/// A claim's answer, as far as the protocol cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClaimReport {
    /// How many jobs the claim asked for.
    pub(super) asked: usize,
    /// How many it got.
    pub(super) got: usize,
    /// How many due jobs it made available for the next claim.
    pub(super) promoted: i64,
    /// How long until the queue's next future job is due.
    pub(super) next_due: Option<Duration>,
}

/// The state of one queue's producer (see the module's doc).
#[derive(Debug)]
pub(super) struct Producer {
    phase: Phase,
    poll_interval: Duration,
    /// Whether this producer's session holds the queue's wake lock.
    wake_lock: bool,
    /// Whether the last claim came back full while holding the wake lock:
    /// more work is likely waiting, so let it go.
    release: bool,
    /// Set while an enqueue that did not notify stays open: poll this soon.
    recheck: Option<Duration>,
    /// Fast-stream detection: when the last notification came, how many
    /// came in quick succession, and whether to poll.
    last_notified: Instant,
    fast_wakes: u32,
    fast: bool,
    /// How many claims in a row found no job.
    empty_claims: u32,
    /// When the queue's next future job is due, as of the last claim.
    due_at: Option<Instant>,
    /// The last claim's stamp.
    last_stamp: DateTime<Utc>,
    /// Whether the last claim took all it asked for: the queue has a
    /// backlog, so the next claim passes over rows other claims hold (see
    /// [`crate::store::CLAIM_SQL`]).
    backlog: bool,
}

impl Producer {
    /// A producer about to make its first claim.
    pub(super) fn new(poll_interval: Duration, now: Instant) -> Self {
        Self {
            phase: Phase::Claiming,
            poll_interval,
            wake_lock: false,
            release: false,
            recheck: None,
            last_notified: now,
            fast_wakes: 0,
            fast: false,
            empty_claims: 0,
            due_at: None,
            last_stamp: DateTime::<Utc>::MIN_UTC,
            backlog: false,
        }
    }

    #[cfg(test)]
    pub(super) fn phase(&self) -> Phase {
        self.phase
    }

    #[cfg(test)]
    pub(super) fn holds_wake_lock(&self) -> bool {
        self.wake_lock
    }

    /// What to do next, given the room for a claim.
    pub(super) fn next_action(&self, room: Room) -> Action {
        match self.phase {
            Phase::Stopping if self.wake_lock => {
                // The wake lock must not go back to the pool with the
                // connection.
                Action::ReleaseWakeLock { notify: true }
            }
            Phase::Stopping => Action::Stop,
            Phase::BackingOff { until } => Action::Pause { until },
            Phase::Claiming if room.worth_claiming => Action::Claim { room: room.free },
            // Here rather than right after a claim, so the jobs it took
            // start first.
            Phase::Claiming if self.release && self.wake_lock => {
                Action::ReleaseWakeLock { notify: true }
            }
            Phase::Claiming => Action::Wait {
                until: None,
                slot: true,
            },
            Phase::TakingWakeLock => Action::TakeWakeLock,
            // A fast stream: poll rather than have every enqueue notify.
            Phase::FastPolling { .. } if self.wake_lock => {
                Action::ReleaseWakeLock { notify: false }
            }
            Phase::FastPolling { until } | Phase::Sleeping { until } => Action::Wait {
                until: Some(until),
                slot: room.buffered,
            },
        }
    }

    /// Whether the last claim took all it asked for (see `backlog`).
    pub(super) fn backlog(&self) -> bool {
        self.backlog
    }

    /// The stamp of the next claim: microseconds, unique per producer, so
    /// that one that failed in flight can be found and put back.
    pub(super) fn stamp(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut at = now.trunc_subsecs(6);
        if at <= self.last_stamp {
            at = self.last_stamp + chrono::Duration::microseconds(1);
        }
        self.last_stamp = at;
        at
    }

    /// A claim answered at `now`.
    pub(super) fn on_claim(&mut self, claim: ClaimReport, now: Instant) {
        // Short, and no due job was made available for the next claim:
        // nothing more is due until a notification, the next due time or
        // the poll interval says otherwise.
        let exhausted = claim.got < claim.asked && claim.promoted == 0;
        self.backlog = claim.asked > 0 && claim.got >= claim.asked;
        self.empty_claims = if claim.got == 0 {
            self.empty_claims + 1
        } else {
            0
        };
        if self.empty_claims >= QUIET_POLLS {
            self.fast = false;
        }
        self.release = self.wake_lock && !exhausted;
        // Counted from when the answer arrived, so the wait ends late by
        // the claim's own time, never early.
        self.due_at = claim.next_due.map(|d| now + d);
        self.phase = if !exhausted {
            Phase::Claiming
        } else if self.fast {
            Phase::FastPolling {
                until: now + FAST_POLL,
            }
        } else if self.wake_lock {
            self.sleeping(now)
        } else {
            Phase::TakingWakeLock
        };
    }

    /// A claim abandoned for the stop: its connection, and the wake lock
    /// with it, was dropped.
    pub(super) fn on_claim_lost(&mut self) {
        self.wake_lock = false;
    }

    /// A claim (or putting back a lost one) failed: the connection, and the
    /// wake lock with it, was dropped; back off for `wait`.
    pub(super) fn on_failure(&mut self, wait: Duration, now: Instant) {
        self.wake_lock = false;
        if self.phase != Phase::Stopping {
            self.phase = Phase::BackingOff { until: now + wait };
        }
    }

    /// What taking the wake lock found at `now`; `Err` carries the outage's
    /// wait after an error (the connection was dropped).
    pub(super) fn on_wake_lock(&mut self, taken: Result<WakeLock, Duration>, now: Instant) {
        match taken {
            Ok(WakeLock::Held) => {
                // Claim once more: now it sees every job that was not
                // announced.
                self.wake_lock = true;
                self.recheck = None;
                self.phase = Phase::Claiming;
                return;
            }
            Ok(WakeLock::Covered) => self.recheck = None,
            Ok(WakeLock::Busy) => {
                let next = self
                    .recheck
                    .map_or(FIRST_RECHECK, |d| (d * 2).min(MAX_RECHECK));
                self.recheck = Some(next);
            }
            Err(wait) => {
                self.wake_lock = false;
                self.recheck = Some(wait);
            }
        }
        if self.phase != Phase::Stopping {
            self.phase = self.sleeping(now);
        }
    }

    /// The wake lock was let go at `now` (on an error, its session was
    /// dropped, which lets it go too).
    pub(super) fn on_wake_lock_released(&mut self, now: Instant) {
        self.wake_lock = false;
        self.release = false;
        if let Phase::FastPolling { .. } = self.phase {
            // The poll is counted from now, so the round trip does not add
            // to the wait.
            self.phase = Phase::FastPolling {
                until: now + FAST_POLL,
            };
        }
    }

    /// An enqueue's notification came at `now`.
    pub(super) fn on_notified(&mut self, now: Instant) {
        self.fast_wakes = if now.saturating_duration_since(self.last_notified) < FAST_WAKE {
            self.fast_wakes + 1
        } else {
            0
        };
        self.last_notified = now;
        if self.fast_wakes >= FAST_WAKES {
            self.fast = true;
            self.empty_claims = 0;
        }
        self.wake();
    }

    /// The completer wrote a retry or a snooze: claim again to learn when
    /// it is due.
    pub(super) fn on_rescan(&mut self) {
        self.wake();
    }

    /// The timer of a wait or a pause went off.
    pub(super) fn on_timer(&mut self) {
        self.wake();
    }

    /// The worker stops.
    pub(super) fn on_stop(&mut self) {
        self.phase = Phase::Stopping;
    }

    fn wake(&mut self) {
        if self.phase != Phase::Stopping {
            self.phase = Phase::Claiming;
        }
    }

    /// Asleep from `now` until the poll interval (or the recheck while an
    /// enqueue that did not notify stays open), or the next due job if
    /// sooner. Measured from now, after the wake lock round trips, so their
    /// time does not add to the wait.
    fn sleeping(&self, now: Instant) -> Phase {
        let sleep = self.recheck.unwrap_or(self.poll_interval);
        let sleep = self
            .due_at
            .map_or(sleep, |at| sleep.min(at.saturating_duration_since(now)));
        Phase::Sleeping { until: now + sleep }
    }
}

#[cfg(test)]
mod tests;
