// `jobq::JobContext` is injected, alone or next to `State<T>` and arguments.

struct Db;

#[jobq::job]
async fn heartbeat(ctx: jobq::JobContext) -> Result<(), std::io::Error> {
    if ctx.is_cancelled() {
        return Ok(());
    }
    let _ = (ctx.id(), ctx.attempt(), ctx.queue(), ctx.pool());
    Ok(())
}

#[jobq::job]
async fn import_file(
    path: String,
    ctx: jobq::JobContext,
    db: jobq::State<Db>,
) -> anyhow::Result<()> {
    let _ = (path, ctx.is_last_attempt(), &*db);
    Ok(())
}

fn main() {
    let _ = heartbeat::Args {};
    let _ = import_file::Args {
        path: "data.csv".to_owned(),
    };
}
