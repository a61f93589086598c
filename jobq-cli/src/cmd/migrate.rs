//! `jobq migrate`: apply, print, or check jobq's schema migrations.

use clap::{Args, Subcommand};
use serde::Serialize;
use sqlx::PgPool;

use crate::output;
use crate::{Error, Result};

/// `jobq migrate [--print-sql [--after N]]`, or `jobq migrate status`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateCommand {
    /// Print the SQL instead of applying it, for a migration tool of your
    /// own (it records each migration in jobq_migrations, as `jobq migrate`
    /// does). Needs no database.
    #[arg(long)]
    pub print_sql: bool,
    /// With --print-sql: only the migrations after this version.
    #[arg(
        long,
        value_name = "VERSION",
        default_value_t = 0,
        requires = "print_sql"
    )]
    pub after: i64,
    /// Say which migrations are applied and which are pending.
    #[command(subcommand)]
    pub status: Option<MigrateStatus>,
}

/// `jobq migrate status`.
#[derive(Debug, Subcommand)]
pub enum MigrateStatus {
    /// Which migrations are applied and pending; exits 3 while one is
    /// pending, for deploy scripts.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// What `jobq migrate status --json` prints.
#[derive(Serialize)]
struct StatusJson<'a> {
    applied: &'a [i64],
    pending: Vec<&'static str>,
    known: i64,
    current: bool,
}

impl MigrateCommand {
    /// Whether this command needs a database (`--print-sql` does not).
    pub(crate) fn needs_database(&self) -> bool {
        !self.print_sql
    }

    /// Prints the SQL.
    pub(crate) fn print_sql(&self) {
        out_raw!("{}", jobq::migration_script(self.after));
    }

    pub(crate) async fn run(self, pool: &PgPool) -> Result<()> {
        if self.print_sql {
            self.print_sql();
            return Ok(());
        }
        match self.status {
            Some(MigrateStatus::Status { json }) => status(pool, json).await,
            None => {
                let before = jobq::migration_status(pool).await?;
                jobq::migrate(pool).await?;
                if before.pending.is_empty() {
                    out!("jobq's schema is up to date (version {})", before.known);
                } else {
                    for m in &before.pending {
                        out!("applied {}", m.name);
                    }
                }
                Ok(())
            }
        }
    }
}

async fn status(pool: &PgPool, json: bool) -> Result<()> {
    let s = jobq::migration_status(pool).await?;
    if json {
        output::json(&StatusJson {
            applied: &s.applied,
            pending: s.pending.iter().map(|m| m.name).collect(),
            known: s.known,
            current: s.pending.is_empty() && !s.too_new(),
        })?;
    } else {
        let mut t = output::Table::new(&["VERSION", "MIGRATION", "STATE"]);
        for m in jobq::migrations() {
            let state = if s.applied.contains(&m.version) {
                "applied"
            } else {
                "pending"
            };
            t.row(vec![m.version.to_string(), m.name.into(), state.into()]);
        }
        for v in s.applied.iter().filter(|v| **v > s.known) {
            t.row(vec![
                v.to_string(),
                "?".into(),
                "applied by a newer jobq".into(),
            ]);
        }
        t.print();
    }
    if s.too_new() {
        return Err(too_new(&s));
    }
    if !s.pending.is_empty() {
        return Err(Error::new(format!(
            "{} migration(s) pending; run `jobq migrate`",
            s.pending.len()
        ))
        .with_code(3));
    }
    Ok(())
}

fn too_new(s: &jobq::MigrationStatus) -> Error {
    let found = s.applied.iter().max().copied().unwrap_or_default();
    Error::new(format!(
        "the database has jobq schema version {found}, newer than the {} this jobq knows; \
         upgrade jobq-cli",
        s.known
    ))
}

/// Fails, saying what to do, unless the database has exactly the schema
/// this jobq knows: every other command reads tables of that schema.
pub(crate) async fn require_current(pool: &PgPool) -> Result<()> {
    let s = jobq::migration_status(pool).await?;
    if s.too_new() {
        return Err(too_new(&s));
    }
    if s.applied.is_empty() {
        return Err(Error::new(
            "this database has no jobq schema; run `jobq migrate` (or point --database-url at \
             jobq's database)",
        ));
    }
    if !s.pending.is_empty() {
        let names: Vec<&str> = s.pending.iter().map(|m| m.name).collect();
        return Err(Error::new(format!(
            "the database's jobq schema is behind: {} pending; run `jobq migrate`",
            names.join(", ")
        )));
    }
    Ok(())
}
