//! What an error of a result write says about the connection, and so what
//! the completer does about it.

/// What an error of a result write says, and so what the completer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The connection is gone or unusable, or the statement cannot run at
    /// all (an outage): the same results are tried again, on a new
    /// connection, with the outage's backoff.
    ///
    /// Beside connection errors (I/O, TLS, pool time-out or closed,
    /// SQLSTATE class 08, 57P01-57P03 shutdowns, 53300 too many
    /// connections), this takes the errors no one result causes and every
    /// result would meet alike: a missing function or table or privilege
    /// (class 42, say a schema older than this jobq), insufficient resources
    /// (53), system and internal errors (58, XX), authentication (28) and a
    /// missing database (3D). Discarding result by result would discard
    /// every one of them.
    Outage,
    /// A serialization failure (40001), deadlock (40P01), statement time-out
    /// or cancel (57014) or lock time-out (55P03): the same results are
    /// tried again on the same connection, a few times before the piece is
    /// split.
    Transient,
    /// PostgreSQL refused the data (classes 22, 23, 54, any other database
    /// error), or sqlx could not encode it: some result of the piece is to
    /// blame, and splitting finds it.
    Data,
}

pub(super) fn fault(e: &sqlx::Error) -> Fault {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => Fault::Outage,
        // A message sqlx did not expect: the connection's state is unknown.
        E::Protocol(_) => Fault::Outage,
        E::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            match code {
                "40001" | "40P01" | "57014" | "55P03" => Fault::Transient,
                "57P01" | "57P02" | "57P03" | "53300" => Fault::Outage,
                _ if ["08", "42", "53", "58", "XX", "28", "3D"]
                    .iter()
                    .any(|class| code.starts_with(class)) =>
                {
                    Fault::Outage
                }
                _ => Fault::Data,
            }
        }
        _ => Fault::Data,
    }
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_outages_and_refused_data_is_not() {
        let io = sqlx::Error::Io(std::io::Error::other("gone"));
        assert_eq!(fault(&io), Fault::Outage);
        assert_eq!(fault(&sqlx::Error::PoolTimedOut), Fault::Outage);
        assert_eq!(fault(&sqlx::Error::RowNotFound), Fault::Data);
    }
}
