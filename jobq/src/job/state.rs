//! The states of a stored job.

use std::fmt;

/// The states of a stored job (`jobq_jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobState {
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
    pub const ALL: [JobState; 7] = [
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
    pub(crate) fn bit(self) -> i32 {
        1 << (self as i32)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
