// The macro accepts any return type whose name ends in `Result` (it cannot
// resolve aliases); the type check then catches one that is not a `Result`.
type AppResult<T> = Option<T>;

#[jobq::job]
async fn export(report_id: i64) -> AppResult<()> {
    let _ = report_id;
    Some(())
}

fn main() {}
