//! One module per command, each a thin layer over `jobq::admin` (which the
//! dashboard shares) that prints a table or JSON.

pub(crate) mod cron;
pub(crate) mod dashboard;
pub(crate) mod jobs;
pub(crate) mod migrate;
pub(crate) mod prune;
pub(crate) mod queues;
pub(crate) mod status;
pub(crate) mod workers;
