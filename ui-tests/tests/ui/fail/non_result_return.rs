#[jobq::job]
async fn count_users(active: bool) -> Option<u64> {
    let _ = active;
    Some(0)
}

fn main() {}
