//! `jobq dashboard`: serves the web dashboard (`jobq-web`).

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use clap::Args;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// `jobq dashboard [--bind ADDR] [--read-only] [--basic-auth USER:PASSWORD]`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where to listen, as IP:PORT. Loopback by default: only this machine
    /// can connect.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Show everything, change nothing: every action is hidden and refused.
    #[arg(long)]
    pub read_only: bool,
    /// Ask for these credentials (HTTP basic authentication), as
    /// USER:PASSWORD. Prefer the environment variable: a command line is
    /// visible to other users of the machine.
    #[arg(
        long,
        env = "JOBQ_DASHBOARD_AUTH",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    pub basic_auth: Option<String>,
    /// Listen on an address other machines can reach. Needs --basic-auth or
    /// --read-only; serve it over TLS (a reverse proxy) when it asks for a
    /// password.
    #[arg(long)]
    pub allow_remote: bool,
}

impl DashboardArgs {
    /// What is wrong with the flags, before anything listens.
    fn check(&self) -> Result<Option<(String, String)>> {
        let credentials = match &self.basic_auth {
            None => None,
            Some(pair) => match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    Some((user.to_owned(), password.to_owned()))
                }
                _ => {
                    return Err(Error::new(
                        "--basic-auth takes USER:PASSWORD, both non-empty",
                    ));
                }
            },
        };
        if !self.bind.ip().is_loopback() {
            if !self.allow_remote {
                return Err(Error::new(format!(
                    "--bind {} is reachable from other machines: add --allow-remote, with \
                     --basic-auth or --read-only",
                    self.bind
                )));
            }
            if credentials.is_none() && !self.read_only {
                return Err(Error::new(format!(
                    "--bind {} is reachable from other machines: the dashboard needs \
                     --basic-auth USER:PASSWORD or --read-only there",
                    self.bind
                )));
            }
        }
        Ok(credentials)
    }

    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        let credentials = self.check()?;
        let options = jobq_web::Options::default().read_only(self.read_only);
        let mut app = jobq_web::router(pool.clone(), options);
        if let Some((user, password)) = credentials {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            );
            app = app.layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let expected = expected.clone();
                    async move { basic_auth(&expected, req, next).await }
                },
            ));
        }
        let listener = tokio::net::TcpListener::bind(self.bind)
            .await
            .map_err(|e| Error::new(format!("cannot listen on {}: {e}", self.bind)))?;
        let mode = if self.read_only { " (read-only)" } else { "" };
        eprintln!("jobq: serving the dashboard{mode} on http://{}", self.bind);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Error::new(format!("the dashboard stopped: {e}")))
    }
}

/// Lets a request through when it carries `expected` (`Basic ...`), else
/// answers 401 asking for credentials.
async fn basic_auth(expected: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    // Compared in time independent of where they differ.
    if bool::from(given.ct_eq(expected.as_bytes())) {
        return next.run(req).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "the jobq dashboard needs credentials",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"jobq\", charset=\"UTF-8\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(bind: &str, read_only: bool, auth: Option<&str>, allow_remote: bool) -> DashboardArgs {
        DashboardArgs {
            bind: bind.parse().unwrap(),
            read_only,
            basic_auth: auth.map(str::to_owned),
            allow_remote,
        }
    }

    #[test]
    fn loopback_needs_nothing_more() {
        assert!(args("127.0.0.1:8080", false, None, false).check().is_ok());
        assert!(args("[::1]:8080", false, None, false).check().is_ok());
    }

    #[test]
    fn another_address_needs_the_flag_and_credentials_or_read_only() {
        let e = args("0.0.0.0:8080", false, None, false)
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("--allow-remote"), "{e}");
        let e = args("0.0.0.0:8080", false, None, true).check().unwrap_err();
        assert!(
            e.to_string()
                .contains("--basic-auth USER:PASSWORD or --read-only"),
            "{e}"
        );
        assert!(args("0.0.0.0:8080", true, None, true).check().is_ok());
        let creds = args("0.0.0.0:8080", false, Some("ada:s3cret:x"), true)
            .check()
            .unwrap();
        assert_eq!(creds, Some(("ada".into(), "s3cret:x".into())));
    }

    #[test]
    fn credentials_need_a_user_and_a_password() {
        for bad in ["ada", "ada:", ":pw"] {
            let e = args("127.0.0.1:8080", false, Some(bad), false)
                .check()
                .unwrap_err();
            assert!(e.to_string().contains("USER:PASSWORD"), "{bad}: {e}");
        }
    }
}
