//! The `jobq` binary: see the `jobq_cli` library for the commands.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    jobq_cli::run_from(std::env::args_os()).await
}
