//! How jobq's types cross the seam: [`JobState`] as PostgreSQL's `jobq_state`
//! enum, [`ErrorKind`], the kind of an entry in a job's error history, and
//! [`QueueName`] as text.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::job::JobState;
use crate::queue::QueueName;

impl Type<Postgres> for JobState {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("jobq_state")
    }
}

impl PgHasArrayType for JobState {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("_jobq_state")
    }
}

impl Encode<'_, Postgres> for JobState {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<'_, Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for JobState {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let name = <&str as Decode<'r, Postgres>>::decode(value)?;
        JobState::from_name(name).ok_or_else(|| {
            format!("unknown job state `{name}`: is the database's schema newer than jobq?").into()
        })
    }
}

/// The kind of an entry in a job's error history (`errors[].kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The handler returned an error.
    Error,
    /// The handler panicked.
    Panic,
    /// The attempt ran out of time.
    Timeout,
    /// The stored arguments did not decode.
    Decode,
    /// The job asked to be discarded.
    Discard,
    /// The job stopped on a cancellation request.
    Cancelled,
    /// The worker shut down during the attempt.
    Shutdown,
}

impl ErrorKind {
    /// The name stored in the error history.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Error => "error",
            ErrorKind::Panic => "panic",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Decode => "decode",
            ErrorKind::Discard => "discard",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Shutdown => "shutdown",
        }
    }

    /// The kind an [`Outcome`](crate::Outcome) names (`"error"`, `"panic"`,
    /// `"timeout"`, `"decode"`, `"discard"`); any other name is an `error`.
    pub(crate) fn from_outcome(kind: &str) -> Self {
        match kind {
            "panic" => ErrorKind::Panic,
            "timeout" => ErrorKind::Timeout,
            "decode" => ErrorKind::Decode,
            "discard" => ErrorKind::Discard,
            "cancelled" => ErrorKind::Cancelled,
            "shutdown" => ErrorKind::Shutdown,
            _ => ErrorKind::Error,
        }
    }
}

impl Type<Postgres> for ErrorKind {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }
}

impl PgHasArrayType for ErrorKind {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for ErrorKind {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<'_, Postgres>>::encode(self.as_str(), buf)
    }
}

impl Type<Postgres> for QueueName {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for QueueName {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<'_, Postgres>>::encode(self.as_str(), buf)
    }
}
