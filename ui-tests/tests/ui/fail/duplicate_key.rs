#[jobq::job(retries = 3, queue = "email", retries = 5)]
async fn send_email(to: String) -> Result<(), std::io::Error> {
    let _ = to;
    Ok(())
}

fn main() {}
