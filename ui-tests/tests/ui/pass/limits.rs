// Every limit key, and the limits they declare.

use std::time::Duration;

use jobq::{Job, JobLimits, Rate};

#[jobq::job(concurrency = 5)]
async fn five() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(rate = "100/1m")]
async fn hundred_a_minute() -> anyhow::Result<()> {
    Ok(())
}

#[jobq::job(concurrency = 1, rate = "10/30s", partition = "user_id")]
async fn per_user(user_id: i64, #[serde(default)] note: String) -> anyhow::Result<()> {
    let _ = (user_id, note);
    Ok(())
}

fn main() {
    assert_eq!(<five::Job as Job>::DEF.limits.concurrency, Some(5));
    assert_eq!(
        <hundred_a_minute::Job as Job>::DEF.limits.rate,
        Some(Rate::per_minute(100))
    );
    assert_eq!(
        <per_user::Job as Job>::DEF.limits,
        JobLimits {
            concurrency: Some(1),
            rate: Some(Rate::new(10, Duration::from_secs(30))),
            partition: Some("user_id"),
        }
    );
    assert_eq!(<hundred_a_minute::Job as Job>::DEF.limits.partition, None);
}
