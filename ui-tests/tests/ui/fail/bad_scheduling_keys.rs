// Scheduling keys that cannot work, each reported on its value.

#[jobq::job(cron = "0 * * * *", tz = "Mars/Olympus_Mons", catch_up = "sometimes")]
async fn hourly() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(tz = "UTC", catch_up = "all")]
async fn not_cron() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(unique = "everything", unique_for = "0s")]
async fn bad_unique(id: i64) -> anyhow::Result<()> {
    let _ = id;
    Ok(())
}

#[jobq::job(unique_for = "1h")]
async fn window_without_unique(id: i64) -> anyhow::Result<()> {
    let _ = id;
    Ok(())
}

fn main() {}
