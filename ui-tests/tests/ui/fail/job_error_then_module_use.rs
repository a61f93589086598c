// After a `#[job]` error the function is still emitted, but not its module:
// code that uses the module gets no further error than the macro's own.
#[jobq::job(queue = "my queue")]
async fn export(report_id: i64) -> Result<(), std::io::Error> {
    let _ = report_id;
    Ok(())
}

fn main() {
    let _ = export::Args { report_id: 1 };
    let _ = export::NAME;
}
