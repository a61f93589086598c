//! Services that keep the jobs table healthy whatever happens to workers.
//! Each runs in every worker; a PostgreSQL advisory lock makes one process at
//! a time do the work.

pub(crate) mod limit_keys;
pub(crate) mod pruner;
pub(crate) mod rescuer;
