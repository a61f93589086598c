#[jobq::job(retries = "3")]
async fn export(report_id: i64) -> Result<(), std::io::Error> {
    let _ = report_id;
    Ok(())
}

fn main() {}
