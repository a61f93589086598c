//! Cron: every worker that runs a cron job's queue enqueues its ticks; each
//! tick's unique key (job name + tick time), under a unique index, makes a
//! second insert of the same tick a no-op, so N workers produce one run.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::job::{CatchUp, JobDef};
use crate::queue::QueueName;
use crate::service::{Every, Periodic, Tick};
use crate::store::{self, NewJob};

/// Ticks of one catch-up, at most.
const MAX_CATCH_UP: usize = 1000;

/// A cron expression (as `#[job]` checked it: 5 fields, 6 with seconds
/// first, or a nickname) read in its time zone: its ticks around a time.
pub(crate) struct Schedule {
    cron: Cron,
    /// The zone the expression is read in.
    pub tz: Tz,
}

impl Schedule {
    /// `expr` read in `tz` (UTC when `None`); the error says which is wrong.
    pub(crate) fn new(expr: &str, tz: Option<&str>) -> std::result::Result<Self, String> {
        let cron = jobq_rules::parse_cron(expr).map_err(|e| e.to_string())?;
        let tz = match tz {
            None => Tz::UTC,
            Some(name) => name
                .parse()
                .map_err(|_| format!("unknown time zone `{name}`"))?,
        };
        Ok(Schedule { cron, tz })
    }

    /// The first tick strictly after `t`.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    fn latest_at(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last tick strictly before `t`.
    pub(crate) fn previous_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The ticks in `(after, until]`, the most recent `limit` of them, in order.
    pub(crate) fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut cursor = self.latest_at(until);
        while let Some(t) = cursor {
            if t <= after || ticks.len() == limit {
                break;
            }
            ticks.push(t);
            cursor = self.previous_before(t);
        }
        ticks.reverse();
        ticks
    }
}

/// A cron job's schedule.
pub(crate) struct CronJob {
    pub def: &'static JobDef,
    queue: QueueName,
    schedule: Schedule,
}

impl CronJob {
    /// The schedule of `def`, which must have `cron`.
    pub(crate) fn new(def: &'static JobDef) -> Result<Self> {
        let schedule = Schedule::new(def.cron.unwrap_or_default(), def.tz)
            .map_err(|e| Error::Config(format!("job `{}`: {e}", def.name)))?;
        let queue = QueueName::new(def.queue)
            .map_err(|e| Error::Config(format!("job `{}`: {e}", def.name)))?;
        Ok(CronJob {
            def,
            queue,
            schedule,
        })
    }

    /// The first tick strictly after `t`.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.next_after(t)
    }

    /// The ticks in `(after, until]`, the most recent `limit` of them, in order.
    pub(crate) fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        self.schedule.ticks_between(after, until, limit)
    }

    fn new_job(&self, tick: DateTime<Utc>) -> NewJob {
        NewJob {
            kind: self.def.name,
            limits: self.def.limits,
            queue: self.queue.clone(),
            args: "{}".to_owned(),
            priority: self.def.priority,
            max_attempts: self.def.max_attempts,
            run_at: Some(tick),
            // A tick is enqueued by no request: its runs start traces of
            // their own.
            #[cfg(feature = "opentelemetry")]
            trace: None,
        }
    }
}

/// Enqueues `job`'s tick at `tick` unless some process did already (see
/// [`store::insert_cron_tick`]), and counts it when this call did. Returns
/// whether it did.
async fn enqueue_tick(pool: &PgPool, job: &CronJob, tick: DateTime<Utc>) -> sqlx::Result<bool> {
    let new = job.new_job(tick);
    let inserted = store::insert_cron_tick(pool, &new, tick).await?;
    if inserted {
        crate::metrics::enqueued(new.kind, new.queue.as_str(), 1);
    }
    Ok(inserted)
}

/// Enqueues the ticks missed while no worker ran, as the job's policy says.
async fn catch_up(pool: &PgPool, job: &CronJob, now: DateTime<Utc>) -> sqlx::Result<usize> {
    let (last, first_start) = store::cron_last_tick(pool, job.def.name, now).await?;
    if first_start {
        return Ok(0);
    }
    let missed = match job.def.catch_up {
        CatchUp::None => Vec::new(),
        CatchUp::Latest => job.ticks_between(last, now, 1),
        CatchUp::All => job.ticks_between(last, now, MAX_CATCH_UP),
    };
    let mut inserted = 0;
    for tick in &missed {
        if enqueue_tick(pool, job, *tick).await? {
            inserted += 1;
        }
    }
    Ok(inserted)
}

/// The longest a cron service waits between two ticks when it has no job
/// left to tick: it then only looks again.
const IDLE: Duration = Duration::from_secs(24 * 3600);

/// Enqueues every cron job's ticks as they come. Its first tick, at start,
/// catches up each job's missed ticks; each later one comes when the
/// earliest job is due.
pub(crate) struct CronService {
    pool: PgPool,
    jobs: Arc<Vec<CronJob>>,
    started: DateTime<Utc>,
    /// Each job's next tick, for the jobs caught up so far (in order).
    next: Vec<Option<DateTime<Utc>>>,
}

impl CronService {
    pub(crate) fn new(pool: PgPool, jobs: Arc<Vec<CronJob>>) -> Self {
        CronService {
            pool,
            next: Vec::with_capacity(jobs.len()),
            jobs,
            started: Utc::now(),
        }
    }

    /// The first tick at start; the rest when due (the interval only caps
    /// the back-off through an outage).
    pub(crate) fn every() -> Every {
        Every::new(Duration::from_secs(60)).at_start()
    }
}

impl Periodic for CronService {
    const NAME: &'static str = "schedule cron ticks";

    async fn tick(&mut self, _: &CancellationToken) -> sqlx::Result<Tick> {
        // After an outage, catching up goes on from the job it failed on.
        while let Some(job) = self.jobs.get(self.next.len()) {
            let n = catch_up(&self.pool, job, self.started).await?;
            if n > 0 {
                tracing::info!(job = job.def.name, ticks = n, "enqueued missed cron ticks");
            }
            let first = job.next_after(self.started);
            tracing::info!(
                job = job.def.name,
                cron = job.def.cron.unwrap_or_default(),
                tz = %job.schedule.tz,
                next = ?first,
                "cron job scheduled"
            );
            self.next.push(first);
        }
        let now = Utc::now();
        for (job, next) in self.jobs.iter().zip(self.next.iter_mut()) {
            let mut budget = MAX_CATCH_UP;
            while let Some(tick) = *next {
                if tick > now || budget == 0 {
                    break;
                }
                budget -= 1;
                // On failure the tick is kept, and tried again after a pause.
                enqueue_tick(&self.pool, job, tick).await?;
                *next = job.next_after(tick);
            }
        }
        let wait = match self.next.iter().flatten().min() {
            Some(earliest) => (*earliest - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => IDLE,
        };
        Ok(Tick::After(wait.min(IDLE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job(def: &'static JobDef) -> CronJob {
        CronJob::new(def).unwrap()
    }

    fn def(cron: &'static str, tz: Option<&'static str>) -> &'static JobDef {
        fn run(
            _: crate::job::RunCx,
        ) -> std::result::Result<crate::job::JobFuture, crate::job::RunError> {
            unreachable!()
        }
        Box::leak(Box::new(JobDef {
            name: "t",
            aliases: &[],
            queue: "default",
            max_attempts: 1,
            priority: 0,
            timeout: None,
            cron: Some(cron),
            tz,
            catch_up: CatchUp::Latest,
            unique_by_args: false,
            unique_for: None,
            limits: crate::limit::JobLimits::NONE,
            location: crate::job::Location {
                module_path: "t",
                file: "t.rs",
                line: 1,
            },
            requires: &[],
            run,
        }))
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn daily_job_in_paris_runs_once_a_day_across_both_dst_changes() {
        // 02:30 local does not exist on 2026-03-29 and exists twice on
        // 2026-10-25: still exactly one run each day.
        let j = job(def("30 2 * * *", Some("Europe/Paris")));
        let year = j.ticks_between(utc(2025, 12, 31, 23, 0), utc(2026, 12, 31, 23, 0), 1000);
        assert_eq!(year.len(), 365);
        let spring = j.ticks_between(utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 12, 0), 10);
        assert_eq!(
            spring,
            vec![utc(2026, 3, 29, 1, 0)],
            "runs right after the gap, 03:00 CEST"
        );
        let autumn = j.ticks_between(utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 12, 0), 10);
        assert_eq!(
            autumn,
            vec![utc(2026, 10, 25, 0, 30)],
            "once, at the first 02:30 (CEST)"
        );
    }

    #[test]
    fn hourly_job_in_paris_follows_real_hours_across_dst() {
        let j = job(def("0 * * * *", Some("Europe/Paris")));
        // Local days: 23 hours in spring, 25 in autumn; one run per real hour.
        let spring = j.ticks_between(utc(2026, 3, 28, 22, 59), utc(2026, 3, 29, 21, 59), 100);
        assert_eq!(spring.len(), 23);
        let autumn = j.ticks_between(utc(2026, 10, 24, 21, 59), utc(2026, 10, 25, 22, 59), 100);
        assert_eq!(autumn.len(), 25);
        for pair in autumn.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::Duration::hours(1));
        }
    }

    #[test]
    fn utc_is_the_default_and_seconds_are_optional() {
        let j = job(def("*/15 * * * * *", None));
        let t = j.ticks_between(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 1), 100);
        assert_eq!(t.len(), 4);
        let nick = job(def("@hourly", None));
        assert_eq!(
            nick.next_after(utc(2026, 1, 1, 0, 0)),
            Some(utc(2026, 1, 1, 1, 0))
        );
    }

    #[test]
    fn ticks_between_keeps_the_most_recent() {
        let j = job(def("* * * * *", None));
        let t = j.ticks_between(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 10, 0), 3);
        assert_eq!(
            t,
            vec![
                utc(2026, 1, 1, 9, 58),
                utc(2026, 1, 1, 9, 59),
                utc(2026, 1, 1, 10, 0)
            ]
        );
    }
}
