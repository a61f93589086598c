//! Example jobs for jobq: what an application's jobs crate looks like. The
//! binaries in `src/bin` enqueue them (`demo`) and run them (`demo`,
//! `worker`).

use std::sync::atomic::{AtomicUsize, Ordering};

use jobq::{JobContext, State, job};
use sqlx::PgConnection;

/// A stand-in for an SMTP client: counts what it "sends".
#[derive(Debug, Default)]
pub struct Mailer {
    sent: AtomicUsize,
}

impl Mailer {
    /// Sends one message (prints it).
    pub fn send(&self, to: &str, subject: &str) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        println!("    [mailer] to {to}: {subject}");
    }

    /// How many messages were sent.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Why a payment failed.
#[derive(Debug)]
pub struct PaymentError(pub String);

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payment refused: {}", self.0)
    }
}

impl std::error::Error for PaymentError {}

/// Sends the welcome message to a user who just signed up.
#[job(queue = "email", retries = 5, timeout = "30s")]
pub async fn send_welcome_email(
    mailer: State<Mailer>,
    to: String,
    name: String,
) -> Result<(), std::io::Error> {
    mailer.send(&to, &format!("Welcome, {name}!"));
    Ok(())
}

/// Makes a thumbnail. Fails its first attempt, as a flaky dependency would,
/// to show a retry.
#[job(queue = "media", retries = 3)]
pub async fn make_thumbnail(ctx: JobContext, path: String, width: u32) -> anyhow::Result<()> {
    if ctx.attempt() == 1 {
        anyhow::bail!("image service unavailable (attempt {})", ctx.attempt());
    }
    println!(
        "    [media] {path} resized to {width}px on attempt {}",
        ctx.attempt()
    );
    Ok(())
}

/// Charges a card. A card number that is not all digits is refused every
/// time, so the job ends `discarded` with its error history.
#[job(queue = "billing", retries = 1)]
pub async fn charge_card(card: String, cents: i64) -> Result<(), PaymentError> {
    if !card.chars().all(|c| c.is_ascii_digit()) {
        return Err(PaymentError(format!("card {card:?} is not a card number")));
    }
    println!(
        "    [billing] charged {cents} cents to card ending {}",
        &card[card.len().saturating_sub(4)..]
    );
    Ok(())
}

/// Runs at the top of every hour, once across all workers that run the
/// `default` queue.
#[job(cron = "0 * * * *")]
pub async fn hourly_digest(ctx: JobContext) -> anyhow::Result<()> {
    println!("    [digest] hourly digest, job {}", ctx.id());
    Ok(())
}

/// The application's own table of users, as its migrations would create it.
pub const USERS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS demo_users (id bigserial PRIMARY KEY, email text NOT NULL)";

/// A sign-up, as a request handler does it: the user's row and the welcome
/// email, both in the caller's transaction, so that neither exists without
/// the other. Returns the user's id.
pub async fn sign_up(tx: &mut PgConnection, email: &str, name: &str) -> anyhow::Result<i64> {
    let id: i64 = sqlx::query_scalar("INSERT INTO demo_users (email) VALUES ($1) RETURNING id")
        .bind(email)
        .fetch_one(&mut *tx)
        .await?;
    send_welcome_email::enqueue(
        &mut *tx,
        send_welcome_email::Args {
            to: email.into(),
            name: name.into(),
        },
    )
    .await?;
    Ok(id)
}
