//! Time-based scheduling: cron jobs. (Delayed jobs need no service: a job
//! with a future `scheduled_at` becomes claimable when it is due, and an idle
//! producer sleeps until the next one is.)

pub(crate) mod cron;
