// `Args` is `Debug` and `Clone`, so an argument's type must be too: a type
// that is only serde gets one error, on the type, saying what it needs.

#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    id: i64,
}

#[jobq::job]
async fn export(report: Report, format: String) -> Result<(), std::io::Error> {
    let _ = (report.id, format);
    Ok(())
}

fn main() {}
