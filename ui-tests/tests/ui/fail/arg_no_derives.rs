// A type with none of what an argument needs (`Serialize`, `Deserialize`,
// `Debug`, `Clone`) is reported on the type, not once per missing trait.

struct Report {
    id: i64,
}

#[jobq::job]
async fn export(report: Report) -> Result<(), std::io::Error> {
    let _ = report.id;
    Ok(())
}

fn main() {}
