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
    /// Give the workers' `Retention`.
    #[arg(long, value_name = "KEEP", default_value = "24h")]
    pub completed: String,
    /// How long discarded jobs are kept.
    #[arg(long, value_name = "KEEP", default_value = "7d")]
    pub discarded: String,
    /// How long cancelled jobs are kept.
    #[arg(long, value_name = "KEEP", default_value = "7d")]
    pub cancelled: String,
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
        let retention = Retention {
            completed: keep("completed", &self.completed)?,
            discarded: keep("discarded", &self.discarded)?,
            cancelled: keep("cancelled", &self.cancelled)?,
            ..Retention::default()
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
