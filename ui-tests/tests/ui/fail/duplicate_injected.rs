// The worker injects one `JobContext` and one `State<T>` per type: a second
// one of either is a mistake.

use jobq::{JobContext, State};

struct Mailer;

#[jobq::job]
async fn twice_context(ctx: JobContext, again: jobq::JobContext) -> Result<(), std::io::Error> {
    let _ = (ctx, again);
    Ok(())
}

#[jobq::job]
async fn twice_state(
    mailer: State<Mailer>,
    to: String,
    other: jobq::State<Mailer>,
) -> Result<(), std::io::Error> {
    let _ = (mailer, to, other);
    Ok(())
}

fn main() {}
