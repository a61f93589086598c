#[jobq::job(cron = "@daily")]
async fn cleanup(ctx: jobq::JobContext, older_than_days: u32) -> Result<(), std::io::Error> {
    let _ = (ctx, older_than_days);
    Ok(())
}

fn main() {}
