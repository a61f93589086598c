#[derive(Debug)]
enum ExportError {
    NotFound,
}

#[jobq::job]
async fn export(report_id: i64) -> Result<(), ExportError> {
    if report_id < 0 {
        return Err(ExportError::NotFound);
    }
    Ok(())
}

fn main() {}
