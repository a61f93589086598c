//! The set of job types a worker can run: every `#[job]` linked into the
//! binary (through `inventory`), or an explicit list.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::job::{Job, JobDef, Registration};

/// Job types by stored name (and alias).
///
/// [`registry()`] gathers every `#[job]` linked into the binary; a worker uses
/// it unless given another with [`Worker::registry`](crate::Worker::registry).
/// Build one by hand for the cases `inventory` cannot serve (a plugin loaded at
/// run time, a test that wants only some jobs):
///
/// ```
/// # mod my_jobs { #[jobq::job] pub async fn ping() -> Result<(), std::io::Error> { Ok(()) } }
/// let registry = jobq::Registry::new().register::<my_jobs::ping::Job>()?;
/// assert!(registry.get("ping").is_some());
/// # Ok::<(), jobq::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Registry {
    jobs: Vec<&'static JobDef>,
    by_name: HashMap<&'static str, &'static JobDef>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every job linked into this binary. Fails when two share a name.
    pub fn from_inventory() -> Result<Self> {
        let mut defs: Vec<&'static JobDef> = inventory::iter::<Registration>
            .into_iter()
            .map(|r| (r.0)())
            .collect();
        // inventory's order depends on link order; make errors and logs stable.
        defs.sort_by_key(|d| (d.name, d.location.file, d.location.line));
        let mut registry = Registry::new();
        for def in defs {
            registry.add(def)?;
        }
        Ok(registry)
    }

    /// Adds the job type `J`. Fails when its name or an alias is taken.
    pub fn register<J: Job>(mut self) -> Result<Self> {
        self.add(&J::DEF)?;
        Ok(self)
    }

    /// Adds a job by its registration record.
    pub fn add(&mut self, def: &'static JobDef) -> Result<()> {
        for name in def.names() {
            if let Some(other) = self.by_name.get(name) {
                if std::ptr::eq(*other, def) {
                    return Ok(());
                }
                return Err(Error::DuplicateJob {
                    name: name.to_owned(),
                    first: other.defined_at(),
                    second: def.defined_at(),
                });
            }
        }
        for name in def.names() {
            self.by_name.insert(name, def);
        }
        self.jobs.push(def);
        Ok(())
    }

    /// The job stored under `name` (its name or one of its aliases).
    pub fn get(&self, name: &str) -> Option<&'static JobDef> {
        self.by_name.get(name).copied()
    }

    /// Every registered job, once each.
    pub fn jobs(&self) -> impl Iterator<Item = &'static JobDef> + '_ {
        self.jobs.iter().copied()
    }

    /// Every name and alias, as stored in `jobq_jobs.kind`.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.by_name.keys().map(|k| (*k).to_owned()).collect();
        kinds.sort();
        kinds
    }

    /// How many job types are registered.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no job type is registered.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// Every `#[job]` linked into this binary. Fails when two share a name.
///
/// A jobs crate that the binary never names is dropped by the linker, and its
/// jobs with it; name it once with `use my_jobs as _;`.
pub fn registry() -> Result<Registry> {
    Registry::from_inventory()
}
