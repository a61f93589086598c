// Limits that cannot work, each reported on its value.

#[jobq::job(rate = "100/1d")]
async fn per_day() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(rate = "lots")]
async fn no_window() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(concurrency = 0)]
async fn never() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(concurrency = 1, partition = "usr_id")]
async fn misspelt(user_id: i64, body: String) -> anyhow::Result<()> {
    let _ = (user_id, body);
    Ok(())
}

#[jobq::job(concurrency = 1, partition = "ctx")]
async fn injected(ctx: jobq::JobContext) -> anyhow::Result<()> {
    let _ = ctx;
    Ok(())
}

#[jobq::job(partition = "tenant")]
async fn nothing_to_split(tenant: String) -> anyhow::Result<()> {
    let _ = tenant;
    Ok(())
}

#[jobq::job(rate = "10/1s", partition = "tenant")]
async fn renamed(#[serde(rename = "t")] tenant: String) -> anyhow::Result<()> {
    let _ = tenant;
    Ok(())
}

fn main() {}
