//! The history-scale figure: the process figure (jobq at concurrency 16, and
//! the raw cycle at batch 100) and the claim statement's cost again, with
//! millions of finished jobs left in the table.

use std::time::{Duration, Instant};

use super::process::{self, Runner};
use crate::jobs::Kind;
use crate::{Ctx, db, progress, sql};

/// Rows per history `INSERT ... SELECT generate_series` statement.
const CHUNK: u64 = 1_000_000;

/// A guess of how long the rest of the scale figure takes once the history
/// is in: two enqueues and drains of `jobs`, a claim probe and vacuums, from
/// the rates measured earlier in the run (or a minute when none were).
fn tail_estimate(ctx: &Ctx) -> Duration {
    let n = ctx.opts.jobs as f64;
    let r = &ctx.report;
    match (
        r.get("process_c16_per_s"),
        r.get("raw_process_b100_c4_per_s"),
        r.get("enqueue_batch_per_s"),
    ) {
        (Some(jobq), Some(raw), Some(enqueue)) => {
            Duration::from_secs_f64(n / jobq + n / raw + 2.0 * n / enqueue + 15.0)
        }
        _ => Duration::from_secs(60),
    }
}

/// Runs the scale figure on its own database. The history is inserted in
/// chunks of a million rows; when the next chunk (plus the vacuum and the
/// measurements after it) would take the run past its budget, it stops there
/// and says so.
pub async fn scale(ctx: &mut Ctx) -> anyhow::Result<()> {
    let target = ctx.opts.history;
    progress(
        ctx,
        format!("scale: {target} finished jobs in the table, then the process figure"),
    );
    let db = db::fresh(ctx, "scale").await?;
    let deadline = ctx.started + Duration::from_secs(ctx.opts.budget_s);
    let tail = tail_estimate(ctx);
    let mut rows = 0u64;
    let start = Instant::now();
    while rows < target {
        let this = CHUNK.min(target - rows);
        if rows > 0 {
            // Seconds per row so far; the vacuum is guessed at half the
            // insert's time.
            let per_row = start.elapsed().as_secs_f64() / rows as f64;
            let need =
                Duration::from_secs_f64(per_row * (this as f64 + 0.5 * (rows + this) as f64))
                    + tail;
            if Instant::now() + need > deadline {
                break;
            }
        }
        sqlx::query(sql::HISTORY)
            .bind(this as i64)
            .execute(&db.pool)
            .await?;
        rows += this;
        progress(
            ctx,
            format!(
                "  history: {rows} rows in {:.1}s",
                start.elapsed().as_secs_f64()
            ),
        );
    }
    let insert_s = start.elapsed().as_secs_f64();
    ctx.report.record("scale_history_rows", rows as f64, "rows");
    ctx.report.record(
        "scale_history_insert_per_s",
        rows as f64 / insert_s,
        "rows/s",
    );
    if rows < target {
        println!(
            "# scale: history limited to {rows} of the {target} rows asked, to keep the whole \
             run under {} s",
            ctx.opts.budget_s
        );
    }
    let start = Instant::now();
    db::settle(&db.pool).await?;
    ctx.report
        .record("scale_vacuum_s", start.elapsed().as_secs_f64(), "s");

    let n = ctx.opts.jobs;
    let jobq = Runner::Jobq {
        procs: 1,
        concurrency: 16,
        kind: Kind::Noop,
        prometheus: false,
    };
    progress(ctx, format!("  {} over {n} jobs", jobq.name()));
    let after = process::prepare(ctx, &db, n, Kind::Noop).await?;
    let claim_ms = process::claim_cost(&db, 16).await?;
    ctx.report.record("scale_claim_ms", claim_ms, "ms");
    process::print_claim_plan(&db, "scale_claim_ms", 16).await?;
    let run = process::drain(ctx, &db, jobq, n, after).await?;
    process::record(ctx, "scale_", jobq, run);

    let raw = Runner::Raw {
        batch: 100,
        clients: 4,
    };
    progress(ctx, format!("  {} over {n} jobs", raw.name()));
    let after = process::prepare(ctx, &db, n, Kind::Noop).await?;
    let run = process::drain(ctx, &db, raw, n, after).await?;
    process::record(ctx, "scale_", raw, run);
    db::finish(ctx, db, 2 * n).await
}
