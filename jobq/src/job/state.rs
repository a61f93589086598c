//! The states of a stored job.

use std::fmt;

/// The states of a stored job (`jobq_jobs.state`). Serialized, and parsed
/// (`"discarded".parse()`), as the name stored in the database.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Enqueued `.after(..)` other jobs, some of which have not finished:
    /// waits for them, then becomes `available` (or is cancelled).
    Pending,
    /// May run now.
    Available,
    /// Waits for its `scheduled_at`.
    Scheduled,
    /// Claimed by a worker.
    Running,
    /// Failed; waits for its backoff to run again.
    Retryable,
    /// Finished successfully.
    Completed,
    /// Out of attempts, or can never run.
    Discarded,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Available,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The states of a job that has not finished: the default scope of a
    /// unique job's key.
    pub const UNFINISHED: [JobState; 4] = [
        JobState::Available,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retryable,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Available => "available",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state stored as `name`.
    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// This state's bit in a `unique_states` mask (`jobq_state_bit` in SQL).
    /// `Pending` has none: a job with dependencies has no unique key.
    pub(crate) fn bit(self) -> i32 {
        match self {
            JobState::Pending => 0,
            JobState::Available => 1,
            JobState::Scheduled => 2,
            JobState::Running => 4,
            JobState::Retryable => 8,
            JobState::Completed => 16,
            JobState::Discarded => 32,
            JobState::Cancelled => 64,
        }
    }
}

/// A name that is no [`JobState`]'s; says which names are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownJobState(pub String);

impl fmt::Display for UnknownJobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown job state `{}`; expected one of ", self.0)?;
        for (i, s) in JobState::ALL.iter().enumerate() {
            f.write_str(if i == 0 { "" } else { ", " })?;
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownJobState {}

impl std::str::FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        JobState::from_name(name).ok_or_else(|| UnknownJobState(name.to_owned()))
    }
}

impl JobState {
    /// Whether a job in this state has finished (`completed`, `discarded`,
    /// `cancelled`).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Discarded | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
