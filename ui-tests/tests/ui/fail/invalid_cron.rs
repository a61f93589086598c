#[jobq::job(cron = "0 25 * * *")]
async fn nightly() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
