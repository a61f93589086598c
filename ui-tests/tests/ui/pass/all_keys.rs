// Every key of `#[job(...)]`, at once and at the edges of their ranges; cron
// with 5 fields, 6 fields (seconds first) and a nickname.

use std::time::Duration;

struct Db;

#[jobq::job(
    queue = "reports.daily-v2_eu",
    retries = 3,
    timeout = "1h 30m",
    priority = -5,
    name = "build_report_v2",
    aliases = ["build_report", "report"],
    cron = "0 3 * * *",
)]
async fn build_report(db: jobq::State<Db>, ctx: jobq::JobContext) -> anyhow::Result<()> {
    // A cron job may take only injected parameters.
    let _ = (&*db, ctx.id());
    Ok(())
}

#[jobq::job(cron = "*/30 * * * * *", timeout = "10s", retries = 0)]
async fn every_thirty_seconds() -> Result<(), std::io::Error> {
    Ok(())
}

#[jobq::job(cron = "@hourly", priority = -32768, retries = 1000)]
async fn hourly(ctx: jobq::JobContext) -> Result<(), std::io::Error> {
    let _ = ctx;
    Ok(())
}

#[jobq::job(priority = 32767, timeout = "250ms", aliases = [])]
async fn lowest(n: u64) -> Result<(), std::io::Error> {
    let _ = n;
    Ok(())
}

fn main() {
    assert_eq!(build_report::NAME, "build_report_v2");
    assert_eq!(build_report::QUEUE, "reports.daily-v2_eu");
    assert_eq!(build_report::RETRIES, 3);
    assert_eq!(build_report::MAX_ATTEMPTS, 4);
    assert_eq!(build_report::PRIORITY, -5);
    assert_eq!(build_report::CRON, Some("0 3 * * *"));
    assert_eq!(build_report::TIMEOUT, Some(Duration::from_secs(90 * 60)));
    let def = &<build_report::Job as jobq::Job>::DEF;
    assert_eq!(def.name, build_report::NAME);
    assert_eq!(def.queue, build_report::QUEUE);
    assert_eq!(def.max_attempts, build_report::MAX_ATTEMPTS);
    assert_eq!(def.priority, build_report::PRIORITY);
    assert_eq!(def.cron, build_report::CRON);
    assert_eq!(def.timeout, build_report::TIMEOUT);
    assert_eq!(def.requires.len(), 2, "State<Db> and JobContext");
    assert_eq!(def.aliases, ["build_report", "report"]);
    assert_eq!(
        def.names().collect::<Vec<_>>(),
        ["build_report_v2", "build_report", "report"]
    );
    let _ = build_report::Args {};

    assert_eq!(every_thirty_seconds::CRON, Some("*/30 * * * * *"));
    assert_eq!(every_thirty_seconds::TIMEOUT, Some(Duration::from_secs(10)));
    assert_eq!(every_thirty_seconds::RETRIES, 0);
    assert_eq!(every_thirty_seconds::MAX_ATTEMPTS, 1);

    assert_eq!(hourly::CRON, Some("@hourly"));
    assert_eq!(hourly::PRIORITY, i16::MIN);
    assert_eq!(hourly::MAX_ATTEMPTS, 1001);

    assert_eq!(lowest::PRIORITY, i16::MAX);
    assert_eq!(lowest::TIMEOUT, Some(Duration::from_millis(250)));
    assert!(<lowest::Job as jobq::Job>::DEF.aliases.is_empty());
}
