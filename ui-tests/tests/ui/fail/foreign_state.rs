// A type of the user's own named `State` looks injected to the macro, but it
// is not `jobq::State`.
struct State<T>(T);

struct Db;

#[jobq::job]
async fn export(db: State<Db>, report_id: i64) -> Result<(), std::io::Error> {
    let _ = (db.0, report_id);
    Ok(())
}

fn main() {}
