//! The measurements. Each figure runs on a fresh database of its own and
//! records its `BENCH` lines in [`Ctx::report`](crate::Ctx).

pub mod dashboard;
pub mod enqueue;
pub mod latency;
pub mod process;
pub mod scale;

use crate::jobs::Kind;
use crate::report::Rounds;
use crate::{Ctx, db, progress};
use process::Runner;

/// Prints the machine line: cores, CPU, PostgreSQL version, durability
/// settings. Warns when fsync or synchronous_commit is off (the figures then
/// do not measure durable commits).
pub async fn machine(ctx: &Ctx) -> anyhow::Result<()> {
    let line = db::machine(&ctx.admin).await?;
    println!("BENCH machine {line}");
    if line.contains("fsync=off") || line.contains("synchronous_commit=off") {
        println!("# WARNING: fsync or synchronous_commit is off: commits are not durable");
    }
    Ok(())
}

/// The process figures of the full run: jobq at concurrency 16 (with the
/// claim-cost probe in the first round) and 64, two worker processes at
/// `procs_concurrency` each, and the raw cycle at batch 100 and 500 with 4
/// clients; in `bulk_rounds` interleaved rounds, each recording its median.
pub async fn process_all(ctx: &mut Ctx, procs_concurrency: usize) -> anyhow::Result<()> {
    let runners = [
        Runner::Jobq {
            procs: 1,
            concurrency: 16,
            kind: Kind::Noop,
            prometheus: false,
        },
        // The metrics' cost: the same, recording into a Prometheus recorder.
        Runner::Jobq {
            procs: 1,
            concurrency: 16,
            kind: Kind::Noop,
            prometheus: true,
        },
        Runner::Jobq {
            procs: 1,
            concurrency: 64,
            kind: Kind::Noop,
            prometheus: false,
        },
        Runner::Jobq {
            procs: 2,
            concurrency: procs_concurrency,
            kind: Kind::Noop,
            prometheus: false,
        },
        // Scale-out: 16 processes contend for the claim (on 2 cores this
        // measures contention, not CPU), against 1 process at c64.
        Runner::Jobq {
            procs: 16,
            concurrency: 4,
            kind: Kind::Noop,
            prometheus: false,
        },
        Runner::Raw {
            batch: 100,
            clients: 4,
        },
        Runner::Raw {
            batch: 500,
            clients: 4,
        },
    ];
    let rounds_n = ctx.opts.bulk_rounds.max(1);
    let mut rounds = Rounds::default();
    for round in 0..rounds_n {
        progress(
            ctx,
            format!("process figures, round {} of {rounds_n}", round + 1),
        );
        for (i, runner) in runners.into_iter().enumerate() {
            let (claim_ms, run) = process::figure(ctx, runner, round == 0 && i == 0).await?;
            if let Some(ms) = claim_ms {
                ctx.report.record("claim_ms", ms, "ms");
            }
            process::add(&mut rounds, "", runner, run);
        }
    }
    rounds.record(&mut ctx.report);
    Ok(())
}

/// Every figure, in the order of the project's issue, then the table and the
/// total time.
pub async fn all(ctx: &mut Ctx, procs_concurrency: usize) -> anyhow::Result<()> {
    machine(ctx).await?;
    enqueue::single(ctx, 1).await?;
    enqueue::single(ctx, 4).await?;
    enqueue::batch(ctx).await?;
    process_all(ctx, procs_concurrency).await?;
    limits_all(ctx).await?;
    latency::latency(ctx).await?;
    scale::scale(ctx).await?;
    Ok(())
}

/// Limited no-op jobs, next to unlimited ones in the same rounds (a fifth
/// of `--jobs` each, 3 rounds): a kind at concurrency 50, and one at
/// concurrency 1 in each of 1,000 partitions, each drained by 1 worker at
/// c64, the same as `process_c64`.
pub async fn limits_all(ctx: &mut Ctx) -> anyhow::Result<()> {
    let runners = [Kind::Noop, Kind::Limited50, Kind::Partitioned1000].map(|kind| Runner::Jobq {
        procs: 1,
        concurrency: 64,
        kind,
        prometheus: false,
    });
    let jobs = ctx.opts.jobs;
    ctx.opts.jobs = (jobs / 5).max(1);
    let mut rounds = Rounds::default();
    let result = async {
        for round in 0..3 {
            progress(ctx, format!("limit figures, round {} of 3", round + 1));
            for runner in runners {
                let (_, run) = process::figure(ctx, runner, false).await?;
                process::add(&mut rounds, "limits_", runner, run);
            }
        }
        anyhow::Ok(())
    }
    .await;
    ctx.opts.jobs = jobs;
    result?;
    rounds.record(&mut ctx.report);
    Ok(())
}

/// Prints the closing table and the run's total time.
pub fn close(ctx: &mut Ctx) {
    let total = ctx.started.elapsed().as_secs_f64();
    ctx.report.record("total_s", total, "s");
    ctx.report.print_table();
    progress(ctx, "done");
}
