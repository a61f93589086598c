//! What a handler answers when it cannot do what was asked. Messages are
//! plain text (`text/plain`, `nosniff`): no markup of a request's making
//! ever reaches a page through an error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A request the security checks turned away.
#[derive(Debug)]
pub(crate) enum Refused {
    ReadOnly,
    CrossSite,
    NoOrigin,
    CsrfToken,
    TooLarge,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refused::ReadOnly => (
                StatusCode::FORBIDDEN,
                "this dashboard is read-only: it refuses every action",
            ),
            Refused::CrossSite => (
                StatusCode::FORBIDDEN,
                "refused: the request came from another site (Sec-Fetch-Site or Origin)",
            ),
            Refused::NoOrigin => (
                StatusCode::FORBIDDEN,
                "refused: a state change must carry Sec-Fetch-Site or Origin, as browsers send",
            ),
            Refused::CsrfToken => (
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token is missing or stale; reload the page and try again",
            ),
            Refused::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "refused: the request body is larger than 2 MiB",
            ),
        };
        (status, message).into_response()
    }
}

/// A handler's failure.
#[derive(Debug)]
pub(crate) enum Error {
    NotFound(String),
    BadRequest(String),
    Database(jobq::Error),
    Render(askama::Error),
}

impl From<jobq::Error> for Error {
    fn from(error: jobq::Error) -> Self {
        Error::Database(error)
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Database(jobq::Error::from(error))
    }
}

impl From<askama::Error> for Error {
    fn from(error: askama::Error) -> Self {
        Error::Render(error)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::NotFound(what) => (StatusCode::NOT_FOUND, what).into_response(),
            Error::BadRequest(what) => (StatusCode::BAD_REQUEST, what).into_response(),
            Error::Database(error) => {
                tracing::error!(%error, "jobq-web: database error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the database failed: {error}"),
                )
                    .into_response()
            }
            Error::Render(error) => {
                tracing::error!(%error, "jobq-web: template error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render",
                )
                    .into_response()
            }
        }
    }
}

/// Any path the dashboard does not serve.
pub(crate) async fn not_found() -> Error {
    Error::NotFound("no such page in the jobq dashboard".to_owned())
}
