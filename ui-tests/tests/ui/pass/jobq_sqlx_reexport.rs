// A user crate without a sqlx dependency of its own: `jobq::sqlx` is the
// sqlx jobq takes, so its pools and transactions are accepted as they are.

use jobq::sqlx::{self, PgPool};

#[jobq::job]
async fn greet(name: String) -> Result<(), std::io::Error> {
    let _ = name;
    Ok(())
}

async fn signup(pool: PgPool) -> Result<(), jobq::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO users (name) VALUES ($1)")
        .bind("ada")
        .execute(&mut *tx)
        .await?;
    greet::enqueue(&mut tx, greet::Args { name: "ada".into() }).await?;
    jobq::pause_queue(&mut *tx, "default").await?;
    tx.commit().await?;
    Ok(())
}

fn main() {
    let _ = signup;
}
