#[jobq::job]
async fn export(report_id: i64) -> Result<(), std::io::Error>
where
    i64: Copy,
{
    let _ = report_id;
    Ok(())
}

fn main() {}
