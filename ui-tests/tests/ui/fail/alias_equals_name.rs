#[jobq::job(name = "export_v2", aliases = ["export", "export_v2"])]
async fn export(report_id: i64) -> Result<(), std::io::Error> {
    let _ = report_id;
    Ok(())
}

fn main() {}
