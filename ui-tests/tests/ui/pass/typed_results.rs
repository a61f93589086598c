// Jobs that return values: a struct of the user's, a primitive, an alias
// without arguments, and `()`. Each gets `result` and `wait`, typed.

use std::time::Duration;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Page {
    pub body: String,
}

#[jobq::job]
async fn fetch_page(url: String) -> anyhow::Result<Page> {
    Ok(Page { body: url })
}

#[jobq::job]
async fn count(n: u32) -> Result<u64, std::io::Error> {
    Ok(u64::from(n))
}

type PageResult = Result<Page, std::io::Error>;

#[jobq::job]
async fn fetch_again(url: String) -> PageResult {
    Ok(Page { body: url })
}

#[jobq::job]
async fn nothing(ctx: jobq::JobContext, page: jobq::JobId) -> anyhow::Result<()> {
    let page: Option<Page> = ctx.result_of::<fetch_page::Job>(page).await?;
    let _ = page.map(|p| p.body);
    Ok(())
}

#[allow(dead_code)]
async fn read(pool: &jobq::sqlx::PgPool, id: jobq::JobId) -> Result<(), Box<dyn std::error::Error>> {
    let page: Option<Page> = fetch_page::result(pool, id).await?;
    let n: u64 = count::wait(pool, id, Duration::from_secs(1)).await?;
    let again: Page = fetch_again::wait(pool, id, Duration::from_secs(1)).await?;
    let (): () = nothing::wait(pool, id, Duration::from_secs(1)).await?;
    let _ = (page, n, again);
    Ok(())
}

fn main() {}
