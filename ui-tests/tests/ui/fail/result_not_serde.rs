// What a job returns is stored with it as JSON, so its type must be
// serde-serializable both ways. The error sits on that type and says what to
// derive.

#[derive(Debug, Clone)]
struct Summary {
    rows: u64,
}

#[jobq::job]
async fn export(report_id: i64) -> anyhow::Result<Summary> {
    Ok(Summary { rows: report_id as u64 })
}

fn main() {}
