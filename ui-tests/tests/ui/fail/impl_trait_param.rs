#[jobq::job]
async fn greet(name: impl Into<String>) -> Result<(), std::io::Error> {
    let _ = name.into();
    Ok(())
}

fn main() {}
