//! What every page's layout needs, taken from the request: where the
//! dashboard is mounted, the CSRF token its forms carry, the mode.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::Shared;
use crate::assets::{CSS, JS};
use crate::error::Error;
use crate::security::{Base, CsrfToken};

/// The layout's inputs.
pub(crate) struct Ctx {
    /// The prefix the router is nested under (`""` at the root).
    pub base: String,
    pub csrf: String,
    pub read_only: bool,
    /// Live-update period in seconds; 0 is off.
    pub poll: u64,
    /// Up to how many matching jobs counts are exact.
    pub exact_count_limit: i64,
    /// The request is a live update (`X-Jobq-Poll`, sent by `app.js`): only
    /// the page's `data-live` regions are used, so a view may skip what it
    /// shows outside them.
    pub refresh: bool,
    pub css: &'static str,
    pub js: &'static str,
}

impl Ctx {
    /// `{base}{path}`: a link inside the dashboard. The overview (`/`) is
    /// the base itself: nested under `/admin/jobs`, axum serves the nested
    /// root at `/admin/jobs`, not at `/admin/jobs/`.
    pub fn href(&self, path: &str) -> String {
        if path == "/" && !self.base.is_empty() {
            return self.base.clone();
        }
        format!("{}{path}", self.base)
    }
}

impl FromRequestParts<Shared> for Ctx {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Self::Rejection> {
        let base = parts
            .extensions
            .get::<Base>()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let poll = app.options.poll_interval.as_secs_f64().ceil() as u64;
        Ok(Ctx {
            base,
            csrf,
            read_only: app.options.read_only,
            poll,
            exact_count_limit: app.options.exact_count_limit,
            refresh: parts.headers.contains_key("x-jobq-poll"),
            css: &CSS.name,
            js: &JS.name,
        })
    }
}
