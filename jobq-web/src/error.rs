//! What a handler answers when it cannot do what was asked. Handlers say it
//! in plain text (`text/plain`, `nosniff`); a browser asking for a page gets
//! that text inside the dashboard's layout ([`as_page`]), escaped by the
//! template: no markup of a request's making ever reaches a page through an
//! error.

use askama::Template;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use crate::context::Ctx;

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

/// The longest error text [`as_page`] puts in a page; handlers' messages are
/// a line.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: Ctx,
    nav: &'static str,
    status: String,
    message: String,
}

/// Whether a request is a browser's for a page: HTML accepted, not a live
/// update's fetch (`x-jobq-poll`), not the JSON API or an asset.
fn wants_page(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let accepts_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    matches!(*method, Method::GET | Method::HEAD | Method::POST)
        && accepts_html
        && !headers.contains_key("x-jobq-poll")
        && !path.starts_with("/api/")
        && !path.starts_with("/assets/")
}

/// Middleware: a handler's plain-text error, answered to a browser asking
/// for a page, becomes a page of the dashboard (same status, the text
/// escaped, links back), not a bare line without a way back.
pub(crate) async fn as_page(ctx: Ctx, request: Request, next: Next) -> Response {
    let page = wants_page(request.method(), request.uri().path(), request.headers());
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !page || !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_MESSAGE).await else {
        return Response::from_parts(parts, Body::from("the error was too long to show"));
    };
    let page = ErrorPage {
        ctx,
        nav: "",
        status: match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_u16()),
            None => status.as_u16().to_string(),
        },
        message: String::from_utf8_lossy(&bytes).into_owned(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => Error::Render(error).into_response(),
    }
}
