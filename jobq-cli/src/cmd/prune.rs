//! `jobq prune --dry-run`: what retention would delete.

use std::time::Duration;

use clap::Args;
use jobq::{Keep, Retention};
use sqlx::PgPool;

use crate::output::{self, Table, count};
use crate::{Error, Result};

/// `jobq prune --dry-run [--completed 24h] [--discarded 7d] [--cancelled 7d]`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only show what would be deleted. (Workers prune on their own; this
    /// command never deletes.)
    #[arg(long)]
    pub dry_run: bool,
    /// How long completed jobs are kept: a duration (24h), or `forever`.
    /// By default, what the live workers prune with (24h when none runs).
    #[arg(long, value_name = "KEEP")]
    pub completed: Option<String>,
    /// How long discarded jobs are kept (by default, the live workers'; 7d).
    #[arg(long, value_name = "KEEP")]
    pub discarded: Option<String>,
    /// How long cancelled jobs are kept (by default, the live workers'; 7d).
    #[arg(long, value_name = "KEEP")]
    pub cancelled: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

fn keep(flag: &str, text: &str) -> Result<Keep> {
    if text.trim() == "forever" {
        return Ok(Keep::Forever);
    }
    humantime::parse_duration(text.trim())
        .map(Keep::For)
        .map_err(|_| {
            Error::new(format!(
                "--{flag} `{text}` is not a duration: write one with its unit (90m, 24h, 7d) \
                 or `forever`"
            ))
        })
}

impl PruneArgs {
    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        if !self.dry_run {
            return Err(Error::new(
                "jobq prune only shows what would be deleted: add --dry-run (the workers' \
                 pruner deletes finished jobs on its own)",
            ));
        }
        // The flags first: a bad one is the only thing said.
        let flag =
            |name: &str, text: &Option<String>| text.as_deref().map(|t| keep(name, t)).transpose();
        let completed = flag("completed", &self.completed)?;
        let discarded = flag("discarded", &self.discarded)?;
        let cancelled = flag("cancelled", &self.cancelled)?;
        // What the workers will really delete with, unless told otherwise.
        let base = match jobq::admin::live_retention(pool).await? {
            Some(live) => {
                eprintln!(
                    "retention of the {} live worker(s) that prune{}",
                    live.workers,
                    if live.differ {
                        "; they were given different ones, and the shortest applies \
                         (any of them prunes): give every worker the same"
                    } else {
                        ""
                    }
                );
                live.retention
            }
            None => {
                eprintln!("no live worker prunes: showing the default retention");
                Retention::default()
            }
        };
        let retention = Retention {
            completed: completed.unwrap_or(base.completed),
            discarded: discarded.unwrap_or(base.discarded),
            cancelled: cancelled.unwrap_or(base.cancelled),
            ..base
        };
        let preview = jobq::admin::prune_preview(pool, &retention).await?;
        if self.json {
            return output::json(&preview);
        }
        let mut t = Table::new(&["STATE", "KEPT FOR", "WOULD DELETE", "OLDEST FINISHED"]);
        let now = chrono::Utc::now();
        for p in &preview {
            let n = if p.prunable.exact {
                count(p.prunable.count)
            } else {
                format!("~{}", count(p.prunable.count))
            };
            t.row(vec![
                p.state.to_string(),
                p.keep
                    .map_or_else(|| "forever".into(), |d: Duration| output::duration(d)),
                n,
                output::when(p.oldest, now),
            ]);
        }
        t.print();
        out!("(dry run: nothing was deleted)");
        Ok(())
    }
}
