// A transaction of another sqlx version (here, a stand-in) is a different
// type: enqueue refuses it with a message naming the fix, not a list of
// sqlx trait errors.
pub struct Transaction<'c>(&'c ());

#[jobq::job]
async fn greet(name: String) -> Result<(), std::io::Error> {
    let _ = name;
    Ok(())
}

async fn signup(tx: &mut Transaction<'_>) -> Result<(), jobq::Error> {
    greet::enqueue(tx, greet::Args { name: "ada".into() }).await?;
    Ok(())
}

fn main() {
    let _ = signup;
}
