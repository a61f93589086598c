// The scheduling keys: a cron job in a time zone with a catch-up policy, and
// a unique job with a window.

use std::time::Duration;

#[jobq::job(cron = "30 2 * * *", tz = "Europe/Paris", catch_up = "all")]
async fn nightly(ctx: jobq::JobContext) -> anyhow::Result<()> {
    let _ = ctx.cron_tick();
    Ok(())
}

#[jobq::job(cron = "@daily", catch_up = "none")]
async fn daily() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(unique = "args", unique_for = "1h")]
async fn refresh_feed(feed_id: i64) -> anyhow::Result<()> {
    let _ = feed_id;
    Ok(())
}

fn main() {
    let def = &<nightly::Job as jobq::Job>::DEF;
    assert_eq!(def.tz, Some("Europe/Paris"));
    assert_eq!(def.catch_up, jobq::CatchUp::All);
    let def = &<daily::Job as jobq::Job>::DEF;
    assert_eq!((def.tz, def.catch_up), (None, jobq::CatchUp::None));
    let def = &<refresh_feed::Job as jobq::Job>::DEF;
    assert!(def.unique_by_args);
    assert_eq!(def.unique_for, Some(Duration::from_secs(3600)));
}
