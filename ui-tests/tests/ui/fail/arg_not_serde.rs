// An argument's type must be serde-serializable: it is stored as JSON. The
// error sits on the type and says what to derive.

#[derive(Debug, Clone)]
struct Report {
    id: i64,
}

#[jobq::job]
async fn export(report: Report, format: String) -> Result<(), std::io::Error> {
    let _ = (report.id, format);
    Ok(())
}

fn main() {}
