// `anyhow::Result<()>` as the return type, and a job with no parameters.

#[jobq::job]
async fn sync_accounts(account_id: i64, full: bool) -> anyhow::Result<()> {
    if full && account_id < 0 {
        anyhow::bail!("negative account id {account_id}");
    }
    Ok(())
}

#[jobq::job]
async fn ping() -> anyhow::Result<()> {
    Ok(())
}

fn main() {
    let _ = sync_accounts::Args {
        account_id: 7,
        full: false,
    };
    let _ = ping::Args {};
    assert_eq!(sync_accounts::NAME, "sync_accounts");
    assert_eq!(ping::NAME, "ping");
}
