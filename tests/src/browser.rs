//! A real browser for the dashboard's tests: headless Chromium driven over
//! WebDriver (chromedriver), and the dashboard served on a local port.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (scripts/test
//! installs them when missing), or `CHROMEDRIVER` and `CHROMIUM` naming the
//! two binaries.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::wait_until;

/// The dashboard served on `127.0.0.1:<port>` until dropped.
pub struct Served {
    /// `http://127.0.0.1:<port>` and the prefix it is nested under.
    pub url: String,
    task: JoinHandle<()>,
}

impl Served {
    /// Serves `router` nested under `prefix` (`""` for the root) on a free
    /// local port.
    pub async fn start(router: axum::Router, prefix: &str) -> Served {
        let app = if prefix.is_empty() {
            router
        } else {
            axum::Router::new().nest(prefix, router)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the dashboard");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the dashboard");
        });
        Served {
            url: format!("http://{addr}{prefix}"),
            task,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A chromedriver process and one headless Chromium session on it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
}

fn binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| candidates.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free local port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session of `width` x
    /// `height` pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_bin = binary("CHROMEDRIVER", &["chromedriver"]).expect(
            "chromedriver not found: install Debian's chromium and chromium-driver \
             (scripts/test does), or set CHROMEDRIVER and CHROMIUM",
        );
        let chromium = binary(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .expect("chromium not found: install Debian's chromium package (scripts/test does)");
        let port = free_port();
        // A process group of its own, so that stopping it also stops the
        // Chromium it started, even when a failed test never ends the
        // session.
        let driver = Command::new(&driver_bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_bin.display()));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(
            "chromedriver to listen",
            Duration::from_secs(30),
            || async { tokio::net::TcpStream::connect(addr).await.is_ok() },
        )
        .await;

        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .expect("open a Chromium session through chromedriver");
        Browser { client, driver }
    }

    /// Saves a screenshot of the viewport as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("take a screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    /// Ends the session and stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop stops the driver's process group.
    }

    /// Kills chromedriver and everything it started (its process group).
    fn stop(&mut self) {
        // `--` matters: procps-ng's kill reads `kill -KILL -<pgid>` as
        // kill(-1, SIGKILL), which ends every process the user may signal.
        let pgid = self.driver.id();
        assert!(pgid > 1, "chromedriver has no process group of its own");
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test panics before `close`: never leave chromedriver, or
        // the Chromium it started, behind.
        self.stop();
    }
}

/// A job written straight into the table, in any state, for the
/// dashboard's tests to look at.
pub struct Seed<'a> {
    /// Its kind.
    pub kind: &'a str,
    /// Its queue.
    pub queue: &'a str,
    /// Its state.
    pub state: &'a str,
    /// Its arguments, as JSON text.
    pub args: &'a str,
    /// Error messages of its failed attempts, oldest first.
    pub errors: &'a [&'a str],
    /// How long ago it finished (for finished states) or was attempted.
    pub ago_secs: i64,
}

impl Seed<'_> {
    /// Inserts the job; returns its id.
    pub async fn insert(&self, pool: &sqlx::PgPool) -> i64 {
        let errors: Vec<serde_json::Value> = self
            .errors
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({
                    "attempt": i + 1, "kind": "error", "error": e,
                    "at": chrono::Utc::now() - chrono::Duration::seconds(self.ago_secs),
                })
            })
            .collect();
        let attempt = self.errors.len().max(1) as i32;
        sqlx::query_scalar(
            "INSERT INTO jobq_jobs (kind, queue, args, state, attempt, max_attempts, errors,
                                    created_at, attempted_at, finalized_at, scheduled_at)
             VALUES ($1, $2, $3::jsonb, $4::jobq_state,
                     CASE WHEN $4 IN ('available', 'scheduled') THEN 0 ELSE $5 END, $5, $6,
                     now() - make_interval(secs => $7 + 5),
                     CASE WHEN $4 NOT IN ('available', 'scheduled')
                          THEN now() - make_interval(secs => $7 + 1) END,
                     CASE WHEN $4 IN ('completed', 'discarded', 'cancelled')
                          THEN now() - make_interval(secs => $7) END,
                     CASE WHEN $4 = 'scheduled' THEN now() + interval '1 hour'
                          WHEN $4 = 'retryable' THEN now() + interval '10 minutes'
                          ELSE now() - make_interval(secs => $7 + 5) END)
             RETURNING id",
        )
        .bind(self.kind)
        .bind(self.queue)
        .bind(self.args)
        .bind(self.state)
        .bind(attempt)
        .bind(serde_json::Value::Array(errors))
        .bind(self.ago_secs as f64)
        .fetch_one(pool)
        .await
        .expect("seed a job")
    }
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            kind: "record",
            queue: "default",
            state: "available",
            args: "{}",
            errors: &[],
            ago_secs: 0,
        }
    }
}
