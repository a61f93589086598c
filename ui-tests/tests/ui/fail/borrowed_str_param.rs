#[jobq::job]
async fn send_email(to: &str) -> Result<(), std::io::Error> {
    let _ = to;
    Ok(())
}

fn main() {}
