//! A crate that denies missing docs: a documented `pub` job is enough, the
//! generated module and its items carry their own docs.

#![deny(missing_docs)]

/// Jobs of this crate.
pub mod jobs {
    /// The state the worker gives to [`welcome`].
    pub struct Mailer;

    /// Sends the weekly digest.
    #[jobq::job(queue = "email", cron = "0 9 * * 1")]
    pub async fn weekly_digest(mailer: jobq::State<Mailer>) -> Result<(), std::io::Error> {
        let _ = &*mailer;
        Ok(())
    }

    /// Sends the welcome message.
    #[jobq::job(queue = "email")]
    pub async fn welcome(
        mailer: jobq::State<Mailer>,
        user_id: i64,
        #[serde(default)] locale: String,
    ) -> Result<(), std::io::Error> {
        let _ = (&*mailer, user_id, locale);
        Ok(())
    }
}

/// Documented crate-root job.
#[jobq::job]
pub async fn root_job(n: u8) -> anyhow::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {
    let _ = jobs::welcome::Args {
        user_id: 1,
        locale: String::new(),
    };
    let _ = root_job::Args { n: 1 };
}
