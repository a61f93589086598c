//! What every request goes through: the response headers that keep a page
//! from running what it did not ship (CSP and friends), the CSRF token's
//! cookie, the prefix the router is nested under, and the checks a state
//! change must pass (read-only mode, same origin, CSRF token).

use axum::body::{Body, to_bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::Refused;
use crate::{BODY_LIMIT, Shared};

/// The CSRF cookie's name, and the name of the form field that must repeat it.
pub(crate) const CSRF_COOKIE: &str = "jobq_csrf";
pub(crate) const CSRF_FIELD: &str = "csrf";

/// Scripts, styles and images only from the dashboard itself: no inline
/// script, no inline style, no `eval`, no framing, forms post only back here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The request's CSRF token (from its cookie, or new), for forms to embed.
#[derive(Clone)]
pub(crate) struct CsrfToken(pub String);

/// The path the dashboard is nested under, without a trailing slash: `""`
/// at the root. Links are written `{base}/jobs`.
#[derive(Clone)]
pub(crate) struct Base(pub String);

/// The middleware around every route.
pub(crate) async fn guard(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let base = base_of(&req);
    let cookie = csrf_cookie(req.headers());
    let (token, fresh) = match cookie {
        Some(token) => (token, false),
        None => (new_token(), true),
    };

    let mut req = req;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if app.options.read_only {
            return with_headers(Refused::ReadOnly.into_response(), None, &base);
        }
        if let Err(refused) = same_origin(req.headers()) {
            return with_headers(refused.into_response(), None, &base);
        }
        // The form field must repeat the cookie: a page of another origin
        // can make the browser send the cookie, never read it.
        let (parts, body) = req.into_parts();
        let bytes = match to_bytes(body, BODY_LIMIT).await {
            Ok(bytes) => bytes,
            Err(_) => return with_headers(Refused::TooLarge.into_response(), None, &base),
        };
        let field = form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned());
        let valid = !fresh && field.is_some_and(|field| same_secret(&field, &token));
        if !valid {
            return with_headers(Refused::CsrfToken.into_response(), None, &base);
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }

    req.extensions_mut().insert(CsrfToken(token.clone()));
    req.extensions_mut().insert(Base(base.clone()));
    let response = next.run(req).await;
    with_headers(response, fresh.then_some(token.as_str()), &base)
}

/// Refuses a state change that a browser says (or lets us see) comes from
/// another site: `Sec-Fetch-Site` must be `same-origin`; a browser that does
/// not send it (plain HTTP on a non-local host) sends `Origin`, whose host
/// must be the request's `Host`. A request with neither is refused: every
/// browser sends one of them with a POST.
fn same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            Err(Refused::CrossSite)
        };
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)) {
                Ok(())
            } else {
                Err(Refused::CrossSite)
            }
        }
        _ => Err(Refused::NoOrigin),
    }
}

/// The prefix the router is nested under: the original path less the path
/// the nested router sees.
fn base_of(req: &Request) -> String {
    let inner = req.uri().path();
    let Some(OriginalUri(original)) = req.extensions().get::<OriginalUri>() else {
        return String::new();
    };
    let original = original.path();
    let base = if inner == "/" {
        original.trim_end_matches('/')
    } else {
        original.strip_suffix(inner).unwrap_or("")
    };
    base.to_owned()
}

/// The CSRF token the browser holds, when it looks like one of ours.
fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// 32 random bytes from the operating system, as hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two tokens in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn with_headers(mut response: Response, new_cookie: Option<&str>, base: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(token) = new_cookie {
        let path = if base.is_empty() { "/" } else { base };
        let cookie = format!("{CSRF_COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn same_origin_trusts_sec_fetch_site_first() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        for site in ["cross-site", "same-site", "none"] {
            let map = headers(&[
                ("sec-fetch-site", site),
                ("origin", "http://a:1"),
                ("host", "a:1"),
            ]);
            assert!(same_origin(&map).is_err(), "{site} passed");
        }
    }

    #[test]
    fn same_origin_compares_origin_with_host_without_fetch_metadata() {
        let ok = headers(&[
            ("origin", "http://dash.example:8080"),
            ("host", "dash.example:8080"),
        ]);
        assert!(same_origin(&ok).is_ok());
        let other = headers(&[
            ("origin", "http://evil.example"),
            ("host", "dash.example:8080"),
        ]);
        assert!(same_origin(&other).is_err());
        let null = headers(&[("origin", "null"), ("host", "dash.example")]);
        assert!(same_origin(&null).is_err());
        assert!(same_origin(&headers(&[("host", "dash.example")])).is_err());
    }

    #[test]
    fn only_well_formed_tokens_are_read_from_the_cookie() {
        let token = new_token();
        assert_eq!(token.len(), 64);
        let mut map = HeaderMap::new();
        map.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {CSRF_COOKIE}={token}")).unwrap(),
        );
        assert_eq!(csrf_cookie(&map), Some(token));
        let short = headers(&[("cookie", "jobq_csrf=abc")]);
        assert_eq!(csrf_cookie(&short), None);
    }

    #[test]
    fn tokens_compare_by_value() {
        assert!(same_secret("abcd", "abcd"));
        assert!(!same_secret("abcd", "abce"));
        assert!(!same_secret("abcd", "abc"));
    }
}
